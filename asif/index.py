"""FAISS top-k inner-product search over L2-normalised anchor vectors.

This module knows vectors, not images or captions. Exact search (``IndexFlatIP``) is the default;
any FAISS index-factory string can be given for large N. Queries are searched in chunks so memory
stays bounded for any number of queries. Where the installed FAISS has GPUs, the index is cloned
onto them (``gpu="auto"``); asking for a GPU that is not there is an error, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np

__all__ = ["AnchorIndex", "gpu_available"]

DEFAULT_QUERY_BATCH = 4096


def gpu_available() -> bool:
    """True when the installed FAISS was built with GPU support and sees at least one GPU."""
    return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


class AnchorIndex:
    """Top-k inner-product search over one modality's anchors.

    Args:
        vectors: (N, d) float32 anchor vectors, rows already L2-normalised.
        factory: ``"Flat"`` for exact search, or any ``faiss.index_factory`` string
            (e.g. ``"IVF1024,Flat"``, ``"HNSW32"``); approximate indexes are trained on ``vectors``.
        gpu: ``"auto"`` uses all GPUs when FAISS has them, ``True`` requires them, ``False`` never.
        query_batch: queries searched per chunk.

    Example:
        >>> x = np.eye(3, dtype=np.float32)
        >>> cos, idx = AnchorIndex(x).search(x[:1], k=2)
        >>> idx[0, 0], float(cos[0, 0])
        (np.int64(0), 1.0)
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        query_batch: int = DEFAULT_QUERY_BATCH,
    ) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(
                f"anchor vectors must be a non-empty (N, d) array, got {vectors.shape}."
            )
        if gpu not in ("auto", True, False):
            raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}.")
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        self.n, self.d = vectors.shape
        self.factory = factory
        self.query_batch = int(query_batch)
        index = _build_cpu_index(vectors, factory)
        self.on_gpu = False
        if gpu is True and not gpu_available():
            raise RuntimeError(
                "gpu=True but the installed FAISS sees no GPU. Install faiss-gpu on a machine with "
                "CUDA, or pass gpu='auto' / gpu=False to search on the CPU."
            )
        if gpu is not False and gpu_available():
            index = faiss.index_cpu_to_all_gpus(index)
            self.on_gpu = True
        self._index = index

    def __repr__(self) -> str:
        where = "gpu" if self.on_gpu else "cpu"
        return f"AnchorIndex(n={self.n}, d={self.d}, factory={self.factory!r}, {where})"

    def iter_search(self, queries: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(cosines, indices)`` for consecutive chunks of ``queries``; ``k = min(k, N)``."""
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.d:
            raise ValueError(
                f"queries must have shape (n, {self.d}) to match the anchors, got {queries.shape}."
            )
        k = min(int(k), self.n)
        for start in range(0, queries.shape[0], self.query_batch):
            chunk = np.ascontiguousarray(
                queries[start : start + self.query_batch], dtype=np.float32
            )
            cosines, indices = self._index.search(chunk, k)
            yield cosines, indices

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosines and anchor indices, each of shape (n, min(k, N)), best first."""
        parts = list(self.iter_search(queries, k))
        if not parts:
            k = min(int(k), self.n)
            return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
        return np.concatenate([c for c, _ in parts]), np.concatenate([i for _, i in parts])


def _build_cpu_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    d = vectors.shape[1]
    if factory == "Flat":
        index = faiss.IndexFlatIP(d)
    else:
        try:
            index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(f"FAISS cannot build index {factory!r}: {error}") from error
        if not index.is_trained:
            index.train(vectors)
    index.add(vectors)
    return index
