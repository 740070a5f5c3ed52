"""Zero-shot classification in a relative space: class names x prompt templates -> class vectors.

The prompts' text embeddings are kept, so when the space's anchors change the class vectors are
rebuilt against the new anchors on the next call: a classifier never mixes two anchor sets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from asif.explain import Explanation, explain_vectors
from asif.relative import (
    mean_of_row_groups,
    normalize_rows,
    normalize_sparse_rows,
    sparse_scores,
)

if TYPE_CHECKING:
    from asif.space import RelativeSpace, _State

__all__ = ["ZeroShotClassifier", "format_prompts"]

Template = str | Callable[[str], str]


def format_prompts(classnames: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """All prompts, class-major: class 0 with every template, then class 1, ...

    Example:
        >>> format_prompts(["cat", "dog"], ["a {}.", lambda c: f"my {c}"])
        ['a cat.', 'my cat', 'a dog.', 'my dog']
    """
    return [t(c) if callable(t) else t.format(c) for c in classnames for t in templates]


class ZeroShotClassifier:
    """Predicts, for each image, the class whose prompts score best against it.

    Build it with ``RelativeSpace.zero_shot_classifier``. ``combine="mean"`` scores an image
    against the normalised mean of a class's prompt vectors; ``combine="max"`` takes the best
    score over the class's prompts (as the reference code does).

    Example:
        >>> from asif import AnchorSet, RelativeSpace
        >>> rng = np.random.default_rng(0)
        >>> space = RelativeSpace(k=5).set_anchors(AnchorSet(rng.normal(size=(20, 4)), np.eye(20)))
        >>> clf = space.zero_shot_classifier(["a", "b"], prompt_embeddings=np.eye(20)[:2, None, :])
        >>> clf.predict(rng.normal(size=(3, 4))).shape
        (3,)
    """

    def __init__(
        self,
        space: RelativeSpace,
        classnames: Sequence[str],
        templates: Sequence[Template] = ("a photo of a {}.",),
        *,
        combine: Literal["mean", "max"] = "max",
        prompt_embeddings: np.ndarray | None = None,
        temperature: float = 0.01,
    ) -> None:
        classnames = [str(c) for c in classnames] if not isinstance(classnames, str) else []
        if not classnames:
            raise ValueError("classnames is empty: give at least one class name (a list of str).")
        if len(set(classnames)) != len(classnames):
            raise ValueError("classnames has duplicates: each class needs a distinct name.")
        if combine not in ("mean", "max"):
            raise ValueError(f"combine must be 'mean' or 'max', got {combine!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        if prompt_embeddings is None:
            templates = list(templates)
            if not templates:
                raise ValueError("templates is empty: give at least one, e.g. 'a photo of a {}.'.")
            prompts = space.encode_texts(format_prompts(classnames, templates))
            n_templates = len(templates)
        else:
            prompt_embeddings = np.asarray(prompt_embeddings)
            if prompt_embeddings.ndim != 3 or prompt_embeddings.shape[0] != len(classnames):
                raise ValueError(
                    "prompt_embeddings must have shape (n_classes, n_templates, d) = "
                    f"({len(classnames)}, T, d), got {prompt_embeddings.shape}."
                )
            n_templates = prompt_embeddings.shape[1]
            prompts = normalize_rows(
                prompt_embeddings.reshape(-1, prompt_embeddings.shape[2]), what="prompt_embeddings"
            )
        self.space = space
        self.classes_ = np.array(classnames)
        self.combine = combine
        self.temperature = float(temperature)
        self.n_templates = n_templates
        self.prompt_embeddings_ = prompts
        self._lock = threading.Lock()
        self._cached: tuple[int, sp.csr_array] | None = None
        self._class_vectors(space._snapshot())  # fail now, not at the first predict

    def __repr__(self) -> str:
        return (
            f"ZeroShotClassifier(n_classes={len(self.classes_)}, n_templates={self.n_templates}, "
            f"combine={self.combine!r})"
        )

    def decision_function(self, images: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Scores (n_images, n_classes): higher means more likely that class."""
        state = self.space._snapshot()
        image_vectors = self.space._transform(state, self.space._embed(images, "image"), "image")
        return self._combine(sparse_scores(image_vectors, self._class_vectors(state)))

    def predict(self, images: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The best-scoring class name of each image."""
        return self.classes_[np.argmax(self.decision_function(images), axis=1)]

    def predict_proba(self, images: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Softmax of the scores divided by ``temperature``: (n_images, n_classes), rows sum to 1."""
        logits = self.decision_function(images).astype(np.float64) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def explain(self, image: Any, top: int | None = 5, against: str | None = None) -> Explanation:
        """The anchor pairs behind one image's predicted class (or its margin over ``against``).

        Args:
            image: one image (a path or PIL image) or its (d,) / (1, d) embedding.
            top: how many anchors to list (``None``: all; their values then sum to the score).
            against: another class name: explain the margin ``score(predicted) - score(against)``
                instead, i.e. the anchors that separate the two classes.

        Returns:
            An :class:`~asif.explain.Explanation`; ``print()`` it for a table of captions.
        """
        if isinstance(image, np.ndarray) and image.dtype != object:
            image = image.reshape(1, -1) if image.ndim == 1 else image
            if image.shape[0] != 1:
                raise ValueError(f"explain takes one image, got {image.shape[0]} embeddings.")
        else:
            image = [image]
        state = self.space._snapshot()
        vector = self.space._transform(state, self.space._embed(image, "image"), "image")
        scores = sparse_scores(vector, self._class_vectors(state))
        predicted = int(np.argmax(self._combine(scores)[0]))
        target = self._vector_of(state, scores, predicted)
        if against is not None:
            other = self._class_position(against)
            target = sp.csr_array(target - self._vector_of(state, scores, other))
        return explain_vectors(
            vector,
            target,
            state.anchors,
            top=top,
            label=str(self.classes_[predicted]),
            against=against,
        )

    def _combine(self, scores: np.ndarray) -> np.ndarray:
        if self.combine == "max":
            return scores.reshape(scores.shape[0], len(self.classes_), self.n_templates).max(-1)
        return scores

    def _vector_of(self, state: _State, scores: np.ndarray, position: int) -> sp.csr_array:
        """The vector class ``position`` was scored with: its class vector, or its best prompt."""
        vectors = self._class_vectors(state)
        if self.combine == "max":
            best = np.argmax(
                scores[0, position * self.n_templates : (position + 1) * self.n_templates]
            )
            position = position * self.n_templates + int(best)
        return sp.csr_array(vectors[[position]])

    def _class_position(self, name: str) -> int:
        found = np.flatnonzero(self.classes_ == name)
        if found.size == 0:
            raise ValueError(f"unknown class {name!r}; the classes are {list(self.classes_)}.")
        return int(found[0])

    def _class_vectors(self, state: _State) -> sp.csr_array:
        """Prompt vectors ("max") or class vectors ("mean") against ``state``'s anchors."""
        with self._lock:
            if self._cached is not None and self._cached[0] == state.version:
                return self._cached[1]
            vectors = self.space._transform(state, self.prompt_embeddings_, "text")
            if self.combine == "mean":
                vectors = normalize_sparse_rows(mean_of_row_groups(vectors, self.n_templates))
            self._cached = (state.version, vectors)
            return vectors
