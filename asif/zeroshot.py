"""Zero-shot classification in a relative space: class names x prompt templates -> class vectors.

The prompts' text embeddings are kept, so when the space's anchors (or its k, p, hubness)
change the class vectors are rebuilt against the new snapshot on the next call: a classifier
never mixes two anchor sets.

Images are embedded by each call that is given raw images. To classify, score and explain the
same in-memory images, embed them once with :meth:`ZeroShotClassifier.encode` and pass the
embeddings to every call (an (n, d) array is always taken for embeddings):

Example:
    >>> from asif import AnchorSet, RelativeSpace
    >>> rng = np.random.default_rng(0)
    >>> space = RelativeSpace(k=5).set_anchors(AnchorSet(rng.normal(size=(20, 4)), np.eye(20)))
    >>> clf = space.zero_shot_classifier(["a", "b"], prompt_embeddings=np.eye(20)[:2, None, :])
    >>> x = clf.encode(rng.normal(size=(3, 4)))  # raw images would be encoded here, once
    >>> clf.predict(x).shape, clf.predict_proba(x).shape, clf.explain(x[0]).label in ("a", "b")
    ((3,), (3, 2), True)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from asif.calibration import DEFAULT_TEMPERATURE, choose_temperature, softmax
from asif.explain import Explanation, explain_vectors
from asif.relative import class_scores, class_vectors, normalize_rows, sparse_scores
from asif.snapshot import SpaceLike, SpaceSnapshot
from asif.templates import Template, format_prompts, get_templates

__all__ = ["ZeroShotClassifier", "format_prompts"]


class ZeroShotClassifier:
    """Predicts, for each image, the class whose prompts score best against it.

    Build it with ``RelativeSpace.zero_shot_classifier``. ``combine="mean"`` scores an image
    against the normalised mean of a class's prompt vectors; ``combine="max"`` takes the best
    score over the class's prompts (as the reference code does).

    ``predict_proba`` is ``softmax(scores / temperature)``. Without a ``temperature`` of its
    own the classifier uses its space's (``RelativeSpace(temperature=...)``, saved with the
    space; 0.01 when the space has none), read at every call; choose one on labelled held-out
    images with :meth:`choose_temperature`.

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
        space: SpaceLike,
        classnames: Sequence[str],
        templates: str | Sequence[Template] = ("a photo of a {}.",),
        *,
        combine: Literal["mean", "max"] = "max",
        prompt_embeddings: np.ndarray | None = None,
        temperature: float | None = None,
    ) -> None:
        if isinstance(classnames, str):
            raise ValueError("classnames must be a list of class names, not one string.")
        classnames = list(classnames)
        if not classnames:
            raise ValueError("classnames is empty: give at least one class name (a list of str).")
        bad = [c for c in classnames if not isinstance(c, str)]
        if bad:
            raise TypeError(f"class names must be strings, got {type(bad[0]).__name__} {bad[0]!r}.")
        if len(set(classnames)) != len(classnames):
            raise ValueError("classnames has duplicates: each class needs a distinct name.")
        if combine not in ("mean", "max"):
            raise ValueError(f"combine must be 'mean' or 'max', got {combine!r}.")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        if prompt_embeddings is None:
            templates = get_templates(templates)
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
        self._temperature = None if temperature is None else float(temperature)
        self.n_templates = n_templates
        self.prompt_embeddings_ = prompts
        self._lock = threading.Lock()
        self._cached: tuple[Any, sp.csr_array] | None = None
        self.class_vectors(space.snapshot())  # fail now, not at the first predict

    def __repr__(self) -> str:
        return (
            f"ZeroShotClassifier(n_classes={len(self.classes_)}, n_templates={self.n_templates}, "
            f"combine={self.combine!r})"
        )

    @property
    def temperature(self) -> float:
        """The softmax temperature of :meth:`predict_proba`: the classifier's own, else the
        space's, else 0.01."""
        if self._temperature is not None:
            return self._temperature
        return float(getattr(self.space, "temperature", None) or DEFAULT_TEMPERATURE)

    @temperature.setter
    def temperature(self, value: float | None) -> None:
        if value is not None and not value > 0:
            raise ValueError(f"temperature must be > 0, got {value!r}.")
        self._temperature = None if value is None else float(value)

    def encode(self, images: Any, **options: Any) -> np.ndarray:
        """The images' (n, d) embeddings (``space.encode_images``), to pass to several calls.

        ``options`` (``batch_size``, ``show_progress_bar``, ``device``) go to the encoder.
        """
        return self.space.encode_images(images, **options)

    def decision_function(self, images: Any) -> np.ndarray:
        """Scores (n_images, n_classes): higher means more likely that class."""
        snap = self.space.snapshot()
        image_vectors = snap.transform(self.space.encode_images(images), "image")
        return self._class_scores(sparse_scores(image_vectors, self.class_vectors(snap)))

    def predict(self, images: Any) -> np.ndarray:
        """The best-scoring class name of each image."""
        return self.classes_[np.argmax(self.decision_function(images), axis=1)]

    def predict_proba(self, images: Any) -> np.ndarray:
        """Softmax of the scores divided by ``temperature``: (n_images, n_classes), rows sum to 1."""
        return softmax(self.decision_function(images), self.temperature)

    def choose_temperature(
        self, images: Any, labels: Sequence[str] | np.ndarray, *, n_bins: int = 15
    ) -> float:
        """The temperature with the lowest expected calibration error on these labelled
        held-out images (:func:`asif.calibration.choose_temperature`); changes nothing.

        Set it where it should live: ``space.temperature = t`` (saved with the space, used by
        its classifiers without a temperature of their own) or ``clf.temperature = t``.

        Args:
            images: held-out images (not the ones you will report on), or their embeddings.
            labels: their class names, or indices into ``classes_``.
            n_bins: confidence bins of the ECE.
        """
        return choose_temperature(
            self.decision_function(images), self.label_indices(labels), n_bins=n_bins
        )

    def label_indices(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Class indices of labels given as class names (indices are returned as they are)."""
        labels = np.asarray(labels)
        if labels.dtype.kind in "iu":
            if labels.size and not (labels.min() >= 0 and labels.max() < len(self.classes_)):
                raise ValueError(f"label indices must be in [0, {len(self.classes_)}).")
            return labels.astype(np.int64)
        return np.array([self._class_position(str(name)) for name in labels], dtype=np.int64)

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
        if isinstance(image, np.ndarray) and image.dtype != object and image.dtype != np.uint8:
            image = image.reshape(1, -1) if image.ndim == 1 else image
            if image.shape[0] != 1:
                raise ValueError(f"explain takes one image, got {image.shape[0]} embeddings.")
        else:
            image = [image]
        snap = self.space.snapshot()
        vector = snap.transform(self.space.encode_images(image), "image")
        scores = sparse_scores(vector, self.class_vectors(snap))
        predicted = int(np.argmax(self._class_scores(scores)[0]))
        target = self._vector_of(snap, scores, predicted)
        if against is not None:
            other = self._class_position(against)
            target = sp.csr_array(target - self._vector_of(snap, scores, other))
        return explain_vectors(
            vector,
            target,
            snap.anchors,
            top=top,
            label=str(self.classes_[predicted]),
            against=against,
        )

    def class_vectors(self, snapshot: SpaceSnapshot) -> sp.csr_array:
        """The vectors images are scored against on ``snapshot``'s anchors: one per prompt
        (``"max"``) or one per class (``"mean"``); cached per snapshot key."""
        with self._lock:
            if self._cached is not None and self._cached[0] == snapshot.key:
                return self._cached[1]
            prompt_vectors = snapshot.transform(self.prompt_embeddings_, "text")
            vectors = class_vectors(prompt_vectors, self.n_templates, self.combine)
            self._cached = (snapshot.key, vectors)
            return vectors

    def _class_scores(self, scores: np.ndarray) -> np.ndarray:
        return class_scores(scores, len(self.classes_), self.n_templates, self.combine)

    def _vector_of(self, snap: SpaceSnapshot, scores: np.ndarray, position: int) -> sp.csr_array:
        """The vector class ``position`` was scored with: its class vector, or its best prompt."""
        vectors = self.class_vectors(snap)
        if self.combine == "max":
            t = self.n_templates
            position = position * t + int(np.argmax(scores[0, position * t : (position + 1) * t]))
        return sp.csr_array(vectors[[position]])

    def _class_position(self, name: str) -> int:
        found = np.flatnonzero(self.classes_ == name)
        if found.size == 0:
            raise ValueError(f"unknown class {name!r}; the classes are {list(self.classes_)}.")
        return int(found[0])
