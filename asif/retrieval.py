"""Retrieval in the shared space: top-k gallery items for each query, by sparse inner products.

Queries and gallery items are both sparse relative vectors over the same N anchors, so image→text,
text→image (and image→image, text→text) are one sparse product, computed in query chunks so that
memory stays at (chunk × gallery) however many queries there are.

A :class:`Gallery` keeps the items' embeddings and their relative vectors: searching it again costs
one sparse product, and when the space's anchors change (hot swap) the relative vectors are rebuilt
from the kept embeddings on the next search, so a gallery never mixes two anchor sets.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from asif.snapshot import MODALITIES, Modality, SpaceLike, SpaceSnapshot
from asif.topk import top_k_columns

__all__ = ["Gallery", "SearchResult", "index_gallery", "search", "top_k_search"]
_BLOCK_ELEMENTS = 1 << 24  # dense scores held at once: 16M float32 = 64 MiB


@dataclass(frozen=True)
class SearchResult:
    """Best gallery items per query, best first."""

    scores: np.ndarray
    """(n_queries, top_k) float32 scores."""
    indices: np.ndarray
    """(n_queries, top_k) int64 gallery positions."""


def top_k_search(
    queries: sp.csr_array, gallery: sp.csr_array, top_k: int = 10, *, chunk: int | None = None
) -> SearchResult:
    """The ``top_k`` best gallery rows for each query row (ties: lower gallery position first).

    Args:
        queries: (n, N) sparse relative vectors.
        gallery: (m, N) sparse relative vectors.
        top_k: results per query (capped at m).
        chunk: queries scored at once; ``None`` keeps each dense (chunk, m) block near 64 MiB.

    Example:
        >>> g = sp.csr_array(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32))
        >>> q = sp.csr_array(np.array([[0.0, 1.0]], dtype=np.float32))
        >>> top_k_search(q, g, top_k=2).indices.tolist()
        [[2, 1]]
    """
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries and gallery live on different anchor sets: {queries.shape[1]} vs "
            f"{gallery.shape[1]} axes; rebuild the gallery on the current anchors."
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}.")
    return _search_transposed(sp.csr_array(queries), _transpose(gallery), top_k, chunk)


def _transpose(gallery: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """(N, m) CSR of the gallery: what ``queries @ gallery.T`` needs, converted once, not per chunk."""
    return sp.csr_array(sp.csr_array(gallery).T)


def _search_transposed(
    queries: sp.csr_array, gallery_t: sp.csr_array, top_k: int, chunk: int | None
) -> SearchResult:
    n, n_gallery = queries.shape[0], gallery_t.shape[1]
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}.")
    if n_gallery == 0:
        raise ValueError("the gallery is empty: nothing to search.")
    top_k = min(int(top_k), n_gallery)
    if chunk is None:
        chunk = max(1, min(4096, _BLOCK_ELEMENTS // n_gallery))
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}.")
    scores = np.empty((n, top_k), dtype=np.float32)
    indices = np.empty((n, top_k), dtype=np.int64)
    for start in range(0, n, chunk):
        block = np.asarray((queries[start : start + chunk] @ gallery_t).toarray(), np.float32)
        best = top_k_columns(block, top_k)
        scores[start : start + chunk] = np.take_along_axis(block, best, axis=1)
        indices[start : start + chunk] = best
    return SearchResult(scores=scores, indices=indices)


class Gallery:
    """Items to search (images or texts): their embeddings and relative vectors, kept together.

    Build one with :meth:`RelativeSpace.index_gallery <asif.RelativeSpace.index_gallery>` (or
    :func:`index_gallery`). The relative vectors belong to one anchor set; after a hot swap the
    next search rebuilds them from the kept embeddings (the encoders are not run again).

    Attributes:
        modality: ``"image"`` or ``"text"``.
        embeddings: (m, d) float32 unit-norm embeddings.
        items: the inputs when they were paths or texts (to show results), else ``None``.

    Example:
        >>> from asif import AnchorSet, RelativeSpace
        >>> rng = np.random.default_rng(0)
        >>> space = RelativeSpace(k=5).set_anchors(AnchorSet(rng.normal(size=(20, 4)), np.eye(20)))
        >>> gallery = space.index_gallery(np.eye(20)[:6], modality="text")
        >>> gallery
        Gallery(modality='text', n_items=6)
        >>> space.search(rng.normal(size=(2, 4)), gallery, top_k=3).indices.shape
        (2, 3)
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        modality: Modality,
        *,
        items: Sequence[str] | None = None,
    ) -> None:
        _check_modality(modality, "modality")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"gallery embeddings must be (m, d), got shape {embeddings.shape}.")
        if items is not None and len(items) != embeddings.shape[0]:
            raise ValueError(
                f"got {len(items)} items but {embeddings.shape[0]} embeddings; they must pair up."
            )
        self.modality: Modality = modality
        self.embeddings = embeddings
        self.items = None if items is None else [str(x) for x in items]
        self._lock = threading.Lock()
        self._cached: tuple[Any, sp.csr_array, sp.csr_array] | None = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def __repr__(self) -> str:
        return f"Gallery(modality={self.modality!r}, n_items={len(self)})"

    @property
    def vectors(self) -> sp.csr_array | None:
        """(m, N) relative vectors on the anchors of the last build or search (``None``: never built)."""
        cached = self._cached
        return None if cached is None else cached[1]

    def relative_vectors(self, snapshot: SpaceSnapshot) -> tuple[sp.csr_array, sp.csr_array]:
        """Relative vectors (m, N) on ``snapshot``'s anchors and their (N, m) transpose.

        Built from the kept embeddings once per snapshot key (anchors, k, p, hubness).
        """
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == snapshot.key:
                return cached[1], cached[2]
            vectors = snapshot.transform(self.embeddings, self.modality)
            self._cached = (snapshot.key, vectors, _transpose(vectors))
            return self._cached[1], self._cached[2]


def index_gallery(
    space: SpaceLike,
    items: Any,
    modality: Modality | None = None,
) -> Gallery:
    """Embed ``items`` once and keep their relative vectors on ``space``'s anchors.

    Args:
        space: a space with anchors.
        items: image paths or PIL images, texts, or an (m, d) embedding array.
        modality: ``"image"`` or ``"text"``; required for strings (a string may be an image path
            or a text) and for arrays whose width fits both encoders.

    Returns:
        A :class:`Gallery`.
    """
    snap = space.snapshot()
    items = _as_list(items)
    modality = _resolve_modality(items, modality, snap, "modality")
    if modality is None:
        raise TypeError("index_gallery needs raw inputs or embeddings, not relative vectors.")
    embeddings = _embed(space, items, modality)
    keep = isinstance(items, Sequence) and all(isinstance(x, (str, os.PathLike)) for x in items)
    gallery = Gallery(embeddings, modality, items=list(items) if keep else None)
    gallery.relative_vectors(snap)
    return gallery


def search(
    space: SpaceLike,
    queries: Any,
    gallery: Any,
    top_k: int = 10,
    *,
    query_modality: Modality | None = None,
    gallery_modality: Modality | None = None,
    chunk: int | None = None,
) -> SearchResult:
    """The ``top_k`` best gallery items for each query, scored in ``space``'s shared space.

    Any pair of modalities works: image→text, text→image, image→image, text→text.

    Args:
        space: a space with anchors.
        queries: a :class:`Gallery`, raw inputs (image paths, PIL images or texts), an (n, d)
            embedding array, or (n, N) sparse relative vectors.
        gallery: likewise; a :class:`Gallery` is not re-encoded, and is rebuilt from its
            embeddings only when the anchors have changed since it was last used.
        top_k: results per query, best first.
        query_modality: ``"image"`` or ``"text"``; required when the queries are strings or an
            array whose width fits both encoders. Never guessed.
        gallery_modality: the same for ``gallery``.
        chunk: queries scored at once (``None``: about 64 MiB of dense scores at a time).

    Returns:
        :class:`SearchResult` with (n, top_k) ``scores`` and ``indices`` into the gallery.

    Raises:
        ValueError: an ambiguous modality, or a modality that contradicts a Gallery's.
    """
    snap = space.snapshot()
    query_vectors = _relative(space, snap, queries, query_modality, "query_modality")
    if isinstance(gallery, Gallery):
        _resolve_modality(gallery, gallery_modality, snap, "gallery_modality")
        gallery_t = gallery.relative_vectors(snap)[1]
    else:
        gallery_t = _transpose(
            _relative(space, snap, gallery, gallery_modality, "gallery_modality")
        )
    if query_vectors.shape[1] != gallery_t.shape[0]:
        raise ValueError(
            f"queries and gallery live on different anchor sets: {query_vectors.shape[1]} vs "
            f"{gallery_t.shape[0]} axes; pass raw inputs, embeddings or a Gallery instead."
        )
    return _search_transposed(query_vectors, gallery_t, top_k, chunk)


def _relative(
    space: SpaceLike, snap: SpaceSnapshot, inputs: Any, modality: Modality | None, what: str
) -> sp.csr_array:
    """Relative vectors of a Gallery, raw inputs, embeddings, or given relative vectors."""
    if isinstance(inputs, Gallery):
        _resolve_modality(inputs, modality, snap, what)
        return inputs.relative_vectors(snap)[0]
    inputs = _as_list(inputs)
    resolved = _resolve_modality(inputs, modality, snap, what)
    if resolved is None:  # already relative vectors
        vectors = sp.csr_array(inputs)
        if vectors.shape[1] != snap.n_anchors:
            raise ValueError(
                f"relative vectors have {vectors.shape[1]} columns but the space has "
                f"{snap.n_anchors} anchors."
            )
        return vectors
    return snap.transform(_embed(space, inputs, resolved), resolved)


def _embed(space: SpaceLike, inputs: Any, modality: Modality) -> np.ndarray:
    if isinstance(inputs, (str, os.PathLike)):
        raise ValueError(
            f"got one {modality} input ({str(inputs)[:40]!r}); pass a list of them (e.g. [x])."
        )
    if modality == "image":
        return space.encode_images(inputs)
    return space.encode_texts(inputs)


def _as_list(inputs: Any) -> Any:
    """A generator or other one-pass iterable as a list (so its items can be looked at first)."""
    if (
        isinstance(inputs, (np.ndarray, Gallery, str, os.PathLike, Sequence))
        or sp.issparse(inputs)
        or not hasattr(inputs, "__iter__")
    ):
        return inputs
    return list(inputs)


def _check_modality(modality: Any, what: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"{what} must be 'image' or 'text', got {modality!r}.")


def _resolve_modality(
    inputs: Any, given: Modality | None, snap: SpaceSnapshot, what: str
) -> Modality | None:
    """The modality of ``inputs``: given, a Gallery's, or unambiguous from the inputs' type.

    ``None`` means sparse relative vectors (they have no modality). Strings are never guessed.
    """
    if given is not None:
        _check_modality(given, what)
    if isinstance(inputs, Gallery):
        if given is not None and given != inputs.modality:
            raise ValueError(f"{what}={given!r} but the Gallery holds {inputs.modality}s.")
        return inputs.modality
    if sp.issparse(inputs):
        return None
    if given is not None:
        return given
    if isinstance(inputs, np.ndarray) and inputs.dtype != object:
        width = inputs.shape[-1] if inputs.ndim else -1
        fits = [m for m in MODALITIES if snap.index(m).d == width]
        if len(fits) == 1:
            return fits[0]  # type: ignore[return-value]
        if not fits:
            raise ValueError(
                f"embeddings of width {width} fit neither the image anchors "
                f"({snap.image_index.d}) nor the text anchors ({snap.text_index.d})."
            )
        raise ValueError(
            f"embeddings of width {width} fit both the image and the text anchors: pass "
            f"{what}='image' or 'text'."
        )
    if isinstance(inputs, str) or (
        isinstance(inputs, Sequence) and any(isinstance(x, str) for x in inputs)
    ):
        raise ValueError(
            f"strings may be image paths or texts: pass {what}='image' or {what}='text'."
        )
    return "image"  # PIL images or os.PathLike paths
