"""``RelativeSpace``: anchors + one FAISS index per modality + (k, p) = a multimodal model.

Images and texts are each compared with the anchors of their own modality; their top-k sparse
relative vectors then share the same N axes (one per anchor pair), where they can be compared.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from asif.anchors import AnchorSet
from asif.index import AnchorIndex
from asif.relative import check_k, check_p, normalize_rows, relative_from_topk, sparse_scores
from asif.zeroshot import ZeroShotClassifier

__all__ = ["RelativeSpace"]

Modality = Literal["image", "text"]
_versions = itertools.count(1)


@dataclass(frozen=True)
class _State:
    """Everything a query reads, swapped as one object so readers never see a mix."""

    anchors: AnchorSet
    image_index: AnchorIndex
    text_index: AnchorIndex
    version: int


class RelativeSpace:
    """A training-free image-text model: inputs become sparse vectors over N anchor pairs.

    Args:
        k: anchors kept per input (capped at N). The paper uses 800 for N = 1.6M.
        p: exponent on the kept cosines; larger p gives the closest anchors more weight.
        image_encoder: encoder name (``"default"``: offline EfficientNet-Lite0) or an object
            with ``encode(inputs, batch_size=..., show_progress_bar=...) -> (n, d) array``.
        text_encoder: likewise for captions (``"default"``: offline all-MiniLM-L6-v2).
        index: ``"Flat"`` for exact search, or a FAISS index-factory string.
        gpu: ``"auto"`` (GPUs when FAISS has them), ``True`` or ``False``.
        device: torch device for the encoders (``None``: cuda when present, else cpu).
        batch_size: encoder batch size.
        show_progress_bar: encoder progress bars (``None``: quiet unless logging at INFO).
        cache: embedding cache for image files and texts (``True``: ``~/.cache/asif``, or a
            folder); ``None`` encodes everything every time.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anchors = AnchorSet(rng.normal(size=(100, 16)), rng.normal(size=(100, 8)))
        >>> space = RelativeSpace(k=10, p=8).set_anchors(anchors)
        >>> space.transform_images(rng.normal(size=(3, 16))).shape
        (3, 100)
    """

    def __init__(
        self,
        k: int = 800,
        p: float = 8.0,
        *,
        image_encoder: str | Any = "default",
        text_encoder: str | Any = "default",
        index: str = "Flat",
        gpu: bool | str = "auto",
        device: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        cache: bool | str | None = None,
    ) -> None:
        self.k = k
        self.p = p
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.index = index
        self.gpu = gpu
        self.device = device
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.cache = cache
        self._state: _State | None = None
        self._encoders: dict[Modality, Any] = {}
        self._encoder_lock = threading.Lock()

    def __repr__(self) -> str:
        n = "unfitted" if self._state is None else f"n_anchors={len(self._state.anchors)}"
        return f"RelativeSpace(k={self.k}, p={self.p}, {n})"

    # ----------------------------------------------------------------- anchors
    def fit(
        self,
        images: Sequence[Any] | np.ndarray,
        captions: Sequence[str],
        *,
        ids: Sequence[int] | None = None,
    ) -> RelativeSpace:
        """Encode N image-caption pairs with the frozen encoders and use them as the anchors.

        Args:
            images: N image paths or PIL images (or an (N, d) array of image embeddings).
            captions: N captions, caption i describing image i.
            ids: optional N unique anchor ids.
        """
        captions = list(captions)
        image_embeddings = self._embed_unique(images)
        if image_embeddings.shape[0] != len(captions):
            raise ValueError(
                f"got {image_embeddings.shape[0]} images but {len(captions)} captions: "
                "anchors are pairs, caption i must describe image i."
            )
        anchors = AnchorSet(
            image_embeddings,
            self._embed(captions, "text"),
            captions=captions,
            ids=ids,
            image_paths=[str(x) for x in images] if _all_paths(images) else None,
            image_encoder=self._encoder_name("image"),
            text_encoder=self._encoder_name("text"),
        )
        return self.set_anchors(anchors)

    def set_anchors(self, anchors: AnchorSet) -> RelativeSpace:
        """Use ``anchors`` as the axes of the space; readers switch atomically to the new set."""
        check_k(self.k)
        check_p(self.p)
        if not isinstance(anchors, AnchorSet):
            raise TypeError(f"set_anchors expects an AnchorSet, got {type(anchors).__name__}.")
        self._state = _State(
            anchors=anchors,
            image_index=AnchorIndex(anchors.image_embeddings, factory=self.index, gpu=self.gpu),
            text_index=AnchorIndex(anchors.text_embeddings, factory=self.index, gpu=self.gpu),
            version=next(_versions),
        )
        return self

    @property
    def anchors_(self) -> AnchorSet:
        """The current anchor set."""
        return self._snapshot().anchors

    @property
    def n_anchors_(self) -> int:
        """N, the number of anchor pairs (= the number of axes)."""
        return len(self._snapshot().anchors)

    # ----------------------------------------------------------------- encoding
    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Embed raw images with the image encoder: (n, d) float32, L2-normalised."""
        return self._embed(images, "image")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with the text encoder: (n, d) float32, L2-normalised."""
        return self._embed(texts, "text")

    # ----------------------------------------------------------------- relative vectors
    def transform_images(self, images: Sequence[Any] | np.ndarray) -> sp.csr_array:
        """Sparse relative vectors (n, N) of images (raw inputs or an (n, d) embedding array)."""
        return self._transform(self._snapshot(), self._embed(images, "image"), "image")

    def transform_texts(self, texts: Sequence[str] | np.ndarray) -> sp.csr_array:
        """Sparse relative vectors (n, N) of texts (strings or an (n, d) embedding array)."""
        return self._transform(self._snapshot(), self._embed(texts, "text"), "text")

    def similarity(
        self, images: Sequence[Any] | np.ndarray, texts: Sequence[str] | np.ndarray
    ) -> np.ndarray:
        """Scores (n_images, n_texts) in [0, 1]: inner products of the relative vectors."""
        state = self._snapshot()
        image_vectors = self._transform(state, self._embed(images, "image"), "image")
        text_vectors = self._transform(state, self._embed(texts, "text"), "text")
        return sparse_scores(image_vectors, text_vectors)

    def zero_shot_classifier(
        self,
        classnames: Sequence[str],
        templates: Sequence[str | Callable[[str], str]] = ("a photo of a {}.",),
        *,
        combine: Literal["mean", "max"] = "mean",
        prompt_embeddings: np.ndarray | None = None,
    ) -> ZeroShotClassifier:
        """A zero-shot classifier: each class is described by its prompts in the shared space.

        Args:
            classnames: the C class names.
            templates: T ``str.format`` templates (``"a photo of a {}."``) or callables.
            combine: ``"mean"``: the normalised mean of a class's prompt vectors;
                ``"max"``: the best score over a class's prompts (the reference code).
            prompt_embeddings: (C, T, d) text embeddings of the prompts, to skip the text encoder.
        """
        return ZeroShotClassifier(
            self, classnames, templates, combine=combine, prompt_embeddings=prompt_embeddings
        )

    # ----------------------------------------------------------------- internals
    def _snapshot(self) -> _State:
        state = self._state
        if state is None:
            raise RuntimeError(
                "this RelativeSpace has no anchors yet: call fit(images, captions) or "
                "set_anchors(AnchorSet(...)) first."
            )
        return state

    def _transform(self, state: _State, embeddings: np.ndarray, modality: Modality) -> sp.csr_array:
        index = state.image_index if modality == "image" else state.text_index
        if embeddings.shape[1] != index.d:
            raise ValueError(
                f"{modality} embeddings have dimension {embeddings.shape[1]} but the anchors' "
                f"{modality} embeddings have {index.d}: encode queries with the encoder that made "
                "the anchors."
            )
        k = check_k(self.k)
        p = check_p(self.p)
        parts = [
            relative_from_topk(indices, cosines, index.n, p)
            for cosines, indices in index.iter_search(embeddings, k)
        ]
        return sp.csr_array(sp.vstack(parts, format="csr"))

    def _embed(self, inputs: Any, modality: Modality) -> np.ndarray:
        if isinstance(inputs, np.ndarray) and inputs.dtype != object:
            if inputs.ndim != 2:
                raise ValueError(
                    f"{modality} embeddings must be a 2-D array (n, d), got shape {inputs.shape}; "
                    "for one vector pass x[None, :]."
                )
            return normalize_rows(inputs, what=f"{modality} embeddings")
        if isinstance(inputs, str) and modality == "text":
            raise ValueError("texts must be a list of strings, not one string: wrap it in a list.")
        options = {} if self.cache is None else {"cache": self.cache}
        embeddings = self._get_encoder(modality).encode(
            inputs, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, **options
        )
        return normalize_rows(np.asarray(embeddings), what=f"{modality} embeddings")

    def _embed_unique(self, images: Any) -> np.ndarray:
        """Image embeddings, encoding each distinct path once (captioned images often repeat)."""
        if not _all_paths(images):
            return self._embed(images, "image")
        paths = [str(x) for x in images]
        unique, inverse = np.unique(np.array(paths, dtype=object), return_inverse=True)
        return self._embed(list(unique), "image")[inverse]

    def _get_encoder(self, modality: Modality) -> Any:
        with self._encoder_lock:
            if modality not in self._encoders:
                spec = self.image_encoder if modality == "image" else self.text_encoder
                self._encoders[modality] = _load_encoder(spec, modality, self.device)
            return self._encoders[modality]

    def _encoder_name(self, modality: Modality) -> str | None:
        spec = self.image_encoder if modality == "image" else self.text_encoder
        if modality in self._encoders:
            return getattr(self._encoders[modality], "name", None)
        return spec if isinstance(spec, str) else getattr(spec, "name", None)


def _load_encoder(spec: str | Any, modality: Modality, device: str | None) -> Any:
    if not isinstance(spec, str):
        if not hasattr(spec, "encode"):
            raise TypeError(f"{modality}_encoder must be a name or have an encode() method.")
        return spec
    from asif import encoders

    load = encoders.load_image_encoder if modality == "image" else encoders.load_text_encoder
    return load(spec, device=device)


def _all_paths(items: Any) -> bool:
    from os import PathLike

    return not isinstance(items, np.ndarray) and all(isinstance(x, (str, PathLike)) for x in items)
