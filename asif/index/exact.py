"""``AnchorIndex``: exact (or FAISS) top-k inner-product search over L2-normalised anchor vectors.

This module knows vectors, not images or captions.

Exact search (``factory="Flat"``, the default, on the CPU) builds no FAISS index at all: the
anchor arrays *are* the index, searched where they lie (a memory-mapped ``.npy`` included), so
building an index costs nothing and a swap copies no anchors. The vectors are kept as a tuple of
read-only *segments* (blocks of rows). Below 65,536 anchors ``faiss.knn`` searches each segment
and the per-segment top-k are merged; from there on :func:`asif.topk.exact_topk` streams over
the segments with a running threshold (faster at large N and large k, measured in
``benchmarks/bench_relative.py``):

- ``with_added(vectors)`` appends one segment: its cost is the new rows only.
- ``without(positions)`` marks rows removed (a per-segment mask) that search skips, so results
  stay exact; a segment is rewritten without its removed rows once more than 1/8 of it is
  removed, so the cost of a removal is bounded by one segment (at most ``SEGMENT_ROWS`` rows)
  per touched segment.

Both return a new index and leave the old one untouched, so a search running in another thread
on the old index is never disturbed. Queries are searched in chunks so memory stays bounded.

Any other ``faiss.index_factory`` string (and ``gpu=True``/``"auto"`` where FAISS has GPUs) builds
a FAISS index over a copy of the vectors; ``with_added``/``without`` then rebuild that index.
Asking for a GPU that is not there is an error, never a silent fallback.

Anchor sets too large to hold as float32 (10M image anchors take 51 GB) go to
:class:`asif.index.CompressedIndex` instead, built block by block.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asif.index.factory import (
    auto_factory,
    build_faiss_index,
    concatenate_chunks,
    resolve_gpu,
)
from asif.topk import exact_topk, select_topk

__all__ = ["SEGMENT_ROWS", "AnchorIndex"]

DEFAULT_QUERY_BATCH = 4096
SEGMENT_ROWS = 1 << 16
"""Rows per segment: the unit of search, of removal bookkeeping and of compaction."""
_STREAM_MIN_ROWS = 1 << 16
"""From this many anchors on, exact search streams over the segments (asif.topk); below, FAISS
searches each segment (faster where the anchors fit in a few segments)."""
_SMALL_SEGMENTS = 8
"""More than this many segments under ``SEGMENT_ROWS / 2`` rows are merged after an add."""
_COMPACT_FRACTION = 8
"""A segment is rewritten without its removed rows once more than 1/8 of them are removed."""


def _exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of ``queries`` against ``vectors`` (both float32, C-order)."""
    import faiss

    return faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


@dataclass(frozen=True)
class _Segment:
    """A read-only block of anchor rows; ``ranks[row]`` is the row's rank among the alive rows."""

    vectors: np.ndarray
    ranks: np.ndarray | None = None  # None: no row removed, rank = row; else -1 marks removed
    n_removed: int = 0

    @property
    def n_alive(self) -> int:
        return self.vectors.shape[0] - self.n_removed

    def alive_vectors(self) -> np.ndarray:
        return self.vectors if self.ranks is None else self.vectors[self.ranks >= 0]

    def remove(self, local_positions: np.ndarray) -> _Segment | None:
        """This segment without the alive rows of the given ranks (None if nothing is left)."""
        if self.ranks is None:
            rows, alive = local_positions, np.ones(self.vectors.shape[0], bool)
        else:
            alive = self.ranks >= 0
            rows = np.flatnonzero(alive)[local_positions]
        alive[rows] = False
        n_removed = self.vectors.shape[0] - int(alive.sum())
        if n_removed == self.vectors.shape[0]:
            return None
        if n_removed * _COMPACT_FRACTION > self.vectors.shape[0]:
            return _Segment(_readonly(self.vectors[alive]))
        ranks = np.cumsum(alive, dtype=np.int64) - 1
        ranks[~alive] = -1
        return _Segment(self.vectors, ranks, n_removed)


class AnchorIndex:
    """Top-k inner-product search over one modality's anchors.

    Args:
        vectors: (N, d) anchor vectors, rows already L2-normalised, or a sequence of such row
            blocks (the shards of a saved set), searched as if concatenated. float32
            C-contiguous arrays (memory-mapped ones included) are used in place, without a
            copy, for exact search; other dtypes (float16) are converted to float32 once.
        factory: ``"Flat"`` for exact search, ``"auto"`` (``auto_factory``: exact up to 2M
            anchors, then IVF-HNSW with Flat, SQ8 or OPQ-PQ codes within a memory budget), or any
            ``faiss.index_factory`` string (e.g. ``"IVF1024,Flat"``, ``"HNSW32"``), optionally
            followed by ``";"`` and FAISS search parameters (``"IVF1024,Flat;nprobe=64"``,
            ``"HNSW32;efSearch=1024"``); approximate indexes are trained on ``vectors``
            and rebuilt by ``with_added`` / ``without``. The resolved string is ``factory_``.
        gpu: ``"auto"`` uses all GPUs when FAISS has them, ``True`` requires them, ``False`` never.
        query_batch: queries searched per chunk.

    Example:
        >>> x = np.eye(3, dtype=np.float32)
        >>> cos, idx = AnchorIndex(x).search(x[:1], k=2)
        >>> idx[0, 0], float(cos[0, 0])
        (np.int64(0), 1.0)
        >>> AnchorIndex(x).without([0]).with_added(x[:1]).search(x[:1], k=1)[1].tolist()
        [[2]]
    """

    def __init__(
        self,
        vectors: np.ndarray | Sequence[np.ndarray],
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        query_batch: int = DEFAULT_QUERY_BATCH,
    ) -> None:
        _, d = block_shape(vectors)
        blocks = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
        blocks = [_as_float32(b) for b in blocks if b.shape[0]]
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        self.factory = factory
        self.gpu = gpu
        self.query_batch = int(query_batch)
        self.on_gpu = resolve_gpu(gpu)
        segments = tuple(
            _Segment(block[start : start + SEGMENT_ROWS])
            for block in blocks
            for start in range(0, block.shape[0], SEGMENT_ROWS)
        )
        self._setup(segments, d, whole=blocks[0] if len(blocks) == 1 else None)

    def _setup(self, segments: tuple[_Segment, ...], d: int, whole: np.ndarray | None) -> None:
        self._segments = segments
        self._whole = whole  # the one array all segments are views of, while nothing changed
        alive = np.array([s.n_alive for s in segments], dtype=np.int64)
        self._ends = np.cumsum(alive)
        self.n, self.d = int(self._ends[-1]), d
        self._faiss: Any = None
        self.factory_ = auto_factory(self.n, d) if self.factory == "auto" else self.factory
        if self.factory_ != "Flat" or self.on_gpu:
            self._faiss = build_faiss_index(self.vectors(), self.factory_, self.on_gpu)

    def _derived(self, segments: tuple[_Segment, ...]) -> AnchorIndex:
        new = object.__new__(AnchorIndex)
        new.factory, new.gpu, new.query_batch, new.on_gpu = (
            self.factory,
            self.gpu,
            self.query_batch,
            self.on_gpu,
        )
        new._setup(segments, self.d, whole=None)
        return new

    def __repr__(self) -> str:
        where = "gpu" if self.on_gpu else "cpu"
        return (
            f"AnchorIndex(n={self.n}, d={self.d}, factory={self.factory!r}, {where}, "
            f"segments={len(self._segments)})"
        )

    # ----------------------------------------------------------------- lifecycle
    def with_added(self, vectors: np.ndarray) -> AnchorIndex:
        """A new index with ``vectors`` appended (positions ``n..n+m-1``); ``self`` is unchanged.

        Cost: the new rows only (plus, now and then, merging small segments); approximate or GPU
        indexes are rebuilt.
        """
        vectors = _as_float32(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.d:
            raise ValueError(f"added vectors must have shape (m, {self.d}), got {vectors.shape}.")
        if vectors.shape[0] == 0:
            return self
        added = tuple(
            _Segment(_readonly(vectors[start : start + SEGMENT_ROWS].copy()))
            for start in range(0, vectors.shape[0], SEGMENT_ROWS)
        )
        return self._derived(_merge_small(self._segments + added))

    def without(self, positions: np.ndarray | list[int]) -> AnchorIndex:
        """A new index without the rows at ``positions``; later rows move up; ``self`` unchanged.

        Cost: bookkeeping over the touched segments, plus rewriting a segment once more than 1/8
        of its rows are removed; approximate or GPU indexes are rebuilt.
        """
        positions = np.unique(np.asarray(positions, dtype=np.int64).reshape(-1))
        if positions.size and (positions[0] < 0 or positions[-1] >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n}), got {positions[[0, -1]]}.")
        if positions.size == self.n:
            raise ValueError("cannot remove every anchor: a space needs at least one.")
        if positions.size == 0:
            return self
        owner = np.searchsorted(self._ends, positions, side="right")
        starts = self._ends - np.array([s.n_alive for s in self._segments])
        segments: list[_Segment] = []
        for i, segment in enumerate(self._segments):
            lo, hi = np.searchsorted(owner, [i, i + 1])
            if lo == hi:
                segments.append(segment)
                continue
            kept = segment.remove(positions[lo:hi] - starts[i])
            if kept is not None:
                segments.append(kept)
        return self._derived(tuple(segments))

    def vectors(self) -> np.ndarray:
        """All (N, d) anchor vectors in position order (a copy unless nothing was added/removed)."""
        if self._whole is not None:
            return self._whole
        return np.concatenate([s.alive_vectors() for s in self._segments])

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The (len(positions), d) anchor vectors at these positions (float32 copies).

        Example:
            >>> AnchorIndex(np.eye(3, dtype=np.float32)).rows(np.array([2, 0])).tolist()
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        """
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((positions.size, self.d), np.float32)
        start = 0
        for segment in self._segments:
            n = segment.n_alive
            hit = np.flatnonzero((positions >= start) & (positions < start + n))
            if hit.size:
                local = positions[hit] - start
                if segment.ranks is not None:
                    local = np.flatnonzero(segment.ranks >= 0)[local]
                out[hit] = segment.vectors[local]
            start += n
        return out

    def iter_vectors(self) -> Iterator[np.ndarray]:
        """The anchor vectors in position order, one segment at a time (memory: one segment)."""
        for segment in self._segments:
            yield segment.alive_vectors()

    # ----------------------------------------------------------------- search
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
            if self._faiss is not None:
                yield self._faiss.search(chunk, k)
            else:
                yield self._search_segments(chunk, k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosines and anchor indices, each of shape (n, min(k, N)), best first."""
        return concatenate_chunks(self.iter_search(queries, k), min(int(k), self.n))

    def _search_segments(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.n_stored >= _STREAM_MIN_ROWS:
            return exact_topk(
                queries,
                [s.vectors for s in self._segments],
                k,
                positions=self._segment_positions(),
            )
        cosines, positions = [], []
        start = 0
        for segment in self._segments:
            m = segment.vectors.shape[0]
            cos, rows = _exact_search(segment.vectors, queries, min(k + segment.n_removed, m))
            if segment.ranks is None:
                pos = rows + start
            else:
                pos = segment.ranks[rows] + start
                dead = segment.ranks[rows] < 0
                cos[dead], pos[dead] = -np.inf, -1
            cosines.append(cos)
            positions.append(pos)
            start += segment.n_alive
        if len(cosines) == 1 and _segments_clean(self._segments):
            return cosines[0], positions[0]
        return select_topk(np.hstack(cosines), np.hstack(positions), k)

    @property
    def n_stored(self) -> int:
        """Rows held by the segments, removed ones included."""
        return sum(s.vectors.shape[0] for s in self._segments)

    def _segment_positions(self) -> list[np.ndarray | None]:
        """Per segment, each row's position among the alive anchors (-1: removed), or None
        where no row is removed and positions are consecutive."""
        out: list[np.ndarray | None] = []
        start = 0
        clean = True
        for segment in self._segments:
            if segment.ranks is None and clean:
                out.append(None)
            elif segment.ranks is None:
                out.append(np.arange(segment.vectors.shape[0], dtype=np.int64) + start)
            else:
                out.append(np.where(segment.ranks >= 0, segment.ranks + start, -1))
                clean = False
            start += segment.n_alive
        return out


def block_shape(vectors: np.ndarray | Sequence[np.ndarray]) -> tuple[int, int]:
    """(N, d) of an (N, d) array or of a sequence of (m_j, d) row blocks; checks the shapes.

    Example:
        >>> block_shape([np.zeros((2, 3)), np.zeros((4, 3))])
        (6, 3)
    """
    blocks = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
    shapes = [np.shape(b) for b in blocks]
    if not shapes or any(len(s) != 2 for s in shapes) or len({s[1] for s in shapes}) != 1:
        raise ValueError(
            "anchor vectors must be an (N, d) array or a sequence of (m, d) blocks of one d, "
            f"got shapes {shapes[:5]}."
        )
    n = sum(s[0] for s in shapes)
    if n == 0 or shapes[0][1] == 0:
        raise ValueError(f"anchor vectors must be non-empty, got shapes {shapes[:5]}.")
    return n, shapes[0][1]


def _segments_clean(segments: tuple[_Segment, ...]) -> bool:
    """True when no segment has removed rows."""
    return all(s.ranks is None for s in segments)


def _merge_small(segments: tuple[_Segment, ...]) -> tuple[_Segment, ...]:
    """Merge the small segments into full ones when there are too many of them."""
    small = [s for s in segments if s.n_alive < SEGMENT_ROWS // 2]
    if len(small) <= _SMALL_SEGMENTS:
        return segments
    # Order matters (positions): merge the trailing run of small segments only.
    tail = len(segments)
    while tail > 0 and segments[tail - 1].n_alive < SEGMENT_ROWS // 2:
        tail -= 1
    if len(segments) - tail <= 1:
        return segments
    rows = np.concatenate([s.alive_vectors() for s in segments[tail:]])
    merged = tuple(
        _Segment(_readonly(rows[start : start + SEGMENT_ROWS]))
        for start in range(0, rows.shape[0], SEGMENT_ROWS)
    )
    return segments[:tail] + merged


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    """float32 C-contiguous, in place when it already is; float16 is converted in chunks.

    Pages of a memory-mapped source are dropped from memory once converted (they are re-read from the file if ever needed), so a float16 set does not
    stay resident beside its float32 copy.
    """
    source = vectors
    vectors = np.asarray(vectors)
    if vectors.dtype == np.float32 and vectors.flags.c_contiguous:
        return vectors
    if vectors.ndim != 2:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.empty(vectors.shape, dtype=np.float32)
    release = _page_releaser(source)

    for start in range(0, vectors.shape[0], SEGMENT_ROWS):
        out[start : start + SEGMENT_ROWS] = vectors[start : start + SEGMENT_ROWS]
        release(vectors[start : start + SEGMENT_ROWS])
    return _readonly(out)


def _page_releaser(array: np.ndarray) -> Callable[[np.ndarray], None]:
    """A function that drops the pages of a view of ``array`` (a read-only memmap) from memory."""
    mapped = getattr(array, "_mmap", None)
    if not isinstance(mapped, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return lambda view: None
    base = np.frombuffer(mapped, dtype=np.uint8).__array_interface__["data"][0]
    page = mmap.PAGESIZE

    def release(view: np.ndarray) -> None:
        start = view.__array_interface__["data"][0] - base
        first, last = -(-start // page) * page, (start + view.nbytes) // page * page
        if last > first:
            mapped.madvise(mmap.MADV_DONTNEED, first, last - first)

    return release


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
