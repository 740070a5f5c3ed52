"""Retrieval in the shared space: top-k gallery items for each query, by sparse inner products.

Queries and gallery items are both sparse relative vectors over the same N anchors, so image→text,
text→image (and image→image, text→text) are one sparse product, computed in query chunks so that
memory stays at (chunk × gallery) however many queries there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["SearchResult", "top_k_search"]


@dataclass(frozen=True)
class SearchResult:
    """Best gallery items per query, best first."""

    scores: np.ndarray
    """(n_queries, top_k) float32 scores."""
    indices: np.ndarray
    """(n_queries, top_k) int64 gallery positions."""


def top_k_search(
    queries: sp.csr_array, gallery: sp.csr_array, top_k: int = 10, *, chunk: int = 1024
) -> SearchResult:
    """The ``top_k`` best gallery rows for each query row (ties: lower gallery position first).

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
    n, n_gallery = queries.shape[0], gallery.shape[0]
    top_k = min(int(top_k), n_gallery)
    gallery_t = sp.csc_array(sp.csr_array(gallery).T)
    queries = sp.csr_array(queries)
    scores = np.empty((n, top_k), dtype=np.float32)
    indices = np.empty((n, top_k), dtype=np.int64)
    for start in range(0, n, chunk):
        block = np.asarray((queries[start : start + chunk] @ gallery_t).toarray(), np.float32)
        best = _top_k_rows(block, top_k)
        scores[start : start + chunk] = np.take_along_axis(block, best, axis=1)
        indices[start : start + chunk] = best
    return SearchResult(scores=scores, indices=indices)


def _top_k_rows(block: np.ndarray, top_k: int) -> np.ndarray:
    """Column indices of each row's top_k values, best first, ties by lower column."""
    if top_k < block.shape[1]:
        part = np.argpartition(-block, top_k - 1, axis=1)[:, :top_k]
        # argpartition may cut a tie at the boundary arbitrarily: take every column tied with
        # the k-th value, then sort by (score desc, column asc).
        kth = np.take_along_axis(block, part, axis=1).min(axis=1, keepdims=True)
        candidates = [np.flatnonzero(row >= t) for row, t in zip(block, kth[:, 0], strict=True)]
        out = np.empty((block.shape[0], top_k), dtype=np.int64)
        for i, cols in enumerate(candidates):
            order = np.lexsort((cols, -block[i, cols]))[:top_k]
            out[i] = cols[order]
        return out
    return np.lexsort((np.broadcast_to(np.arange(block.shape[1]), block.shape), -block), axis=1)
