"""``AnchorIndex``: exact (or FAISS) top-k inner-product search over L2-normalised anchor vectors.

This module knows vectors, not images or captions.

Exact search (``factory="Flat"``, the default, on the CPU) builds no FAISS index at all: the
anchor arrays *are* the index, searched where they lie (a memory-mapped ``.npy`` included), so
building an index costs nothing and a swap copies no anchors. The vectors are kept as a tuple of
read-only *segments* (blocks of rows). Below 65,536 anchors ``faiss.knn`` searches each segment
and the per-segment top-k are merged; from there on :func:`asif.topk.exact_topk` streams over
the segments with a running threshold (faster at large N and large k, measured in
``benchmarks/bench_relative.py``). Both keep asif's one tie rule, equal scores to the lower
position (:func:`asif.topk.select_topk`): FAISS keeps an arbitrary part of the scores that tie
at its k-th place, so the queries where that happens are searched again in that segment by the
streamed kernel. ``kernel=`` fixes the choice (a sharded index gives each shard the kernel of
the whole set, so scores agree to the last bit):

- ``with_added(vectors)`` appends one segment: its cost is the new rows only.
- ``without(positions)`` marks rows removed (a per-segment mask) that search skips, so results
  stay exact; a segment is rewritten without its removed rows once more than 1/8 of it is
  removed, so the cost of a removal is bounded by one segment (at most ``SEGMENT_ROWS`` rows)
  per touched segment.

Both return a new index and leave the old one untouched, so a search running in another thread
on the old index is never disturbed. Queries are searched in chunks so memory stays bounded.

Any other ``faiss.index_factory`` string builds a FAISS index over a copy of the vectors;
``with_added``/``without`` then rebuild that index.

GPUs (``gpu=True``, or ``"auto"`` where there are some): exact search runs through torch
(:class:`asif.index.gpu.TorchExact`: the rows uploaded once from where they lie, no k limit,
the same tie rule); FAISS indexes are cloned onto FAISS's GPUs where FAISS has a GPU version of
them (:func:`asif.index.factory.gpu_placement`). ``placement`` says where an index searches.
Asking for a GPU that is not there, or for an index FAISS has no GPU version of, is an error,
never a silent fallback; ``"auto"`` keeps such an index on the CPU and says so.

Anchor sets too large to hold as float32 (10M image anchors take 51 GB) go to
:class:`asif.index.CompressedIndex` instead, built block by block.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from asif.index.factory import (
    GPU_MAX_K,
    auto_factory,
    build_faiss_index,
    concatenate_chunks,
)
from asif.index.gpu import GPU_DTYPES, TorchExact, fits_reason, resolve_devices
from asif.topk import exact_topk, select_topk

__all__ = ["SEGMENT_ROWS", "AnchorIndex", "Kernel", "exact_kernel"]

Kernel = Literal["auto", "faiss", "stream"]
"""The CPU kernel of exact search: FAISS per segment, or the streamed top-k of asif.topk."""

DEFAULT_QUERY_BATCH = 4096
SEGMENT_ROWS = 1 << 16
"""Rows per segment: the unit of search, of removal bookkeeping and of compaction."""
_STREAM_MIN_ROWS = 1 << 16
"""From this many anchors on, exact search streams over the segments (asif.topk); below, FAISS
searches each segment (faster where the anchors fit in a few segments)."""
_SMALL_SEGMENTS = 8
"""More than this many segments under ``SEGMENT_ROWS / 2`` rows are merged after an add."""
_TIE_MARGIN = 16
"""Results asked of FAISS beyond k, so that ties at the cut (5 captions share an image in COCO
or Flickr anchors) are settled without searching again."""
_COMPACT_FRACTION = 8
"""A segment is rewritten without its removed rows once more than 1/8 of them are removed."""
_TORCH_WORK_BYTES = 1 << 31
_log = logging.getLogger("asif")


def exact_kernel(n_stored: int) -> Literal["faiss", "stream"]:
    """The CPU kernel ``kernel="auto"`` picks for ``n_stored`` rows (removed ones included).

    A sharded index passes its total to every shard, so each shard scores its rows with the
    kernel the unsharded index would use, and scores agree to the last bit.

    Example:
        >>> exact_kernel(1000), exact_kernel(1_000_000)
        ('faiss', 'stream')
    """
    return "stream" if n_stored >= _STREAM_MIN_ROWS else "faiss"


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
        gpu: ``"auto"`` uses all GPUs when there are some (torch's for exact search, FAISS's for
            other indexes), ``True`` requires them, ``False`` never. An index FAISS has no GPU
            version of (``HNSW32``, flat ``SQ8``) is refused with ``True`` and kept on the CPU
            with ``"auto"``, as is exact search whose rows do not fit in GPU memory.
        query_batch: queries searched per chunk.
        kernel: the CPU kernel of exact search: ``"auto"`` (by size, :func:`exact_kernel`),
            ``"faiss"`` or ``"stream"``; the results are the same, to the last bit of the
            scores only with the same kernel.
        gpu_dtype: how GPUs hold the anchors: ``"float32"``, ``"float16"`` (half the memory;
            cosines rounded to about 1e-3) or, for exact search, ``"bfloat16"``.
        gpu_shard: several GPUs split a FAISS index's anchors (True) or each hold them all.

    Attributes:
        placement: where the index searches, e.g. ``"cpu"``, ``"gpu (torch cuda:0, float32)"``,
            ``"cpu (FAISS has no GPU version of IndexHNSWFlat)"``.
        on_gpu: whether it searches on GPUs.
        max_k: the largest k ``search`` takes (2,048 on FAISS GPUs), or None (no limit).

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
        kernel: Kernel = "auto",
        gpu_dtype: str = "float32",
        gpu_shard: bool = True,
    ) -> None:
        _, d = block_shape(vectors)
        blocks = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
        blocks = [_as_float32(b) for b in blocks if b.shape[0]]
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        if kernel not in ("auto", "faiss", "stream"):
            raise ValueError(f"kernel must be 'auto', 'faiss' or 'stream', got {kernel!r}.")
        if gpu_dtype not in GPU_DTYPES:
            raise ValueError(f"gpu_dtype must be one of {GPU_DTYPES}, got {gpu_dtype!r}.")
        self.factory = factory
        self.gpu = gpu
        self.query_batch = int(query_batch)
        self.kernel = kernel
        self.gpu_dtype = gpu_dtype
        self.gpu_shard = bool(gpu_shard)
        segments = tuple(
            _Segment(block[start : start + SEGMENT_ROWS])
            for block in blocks
            for start in range(0, block.shape[0], SEGMENT_ROWS)
        )
        self._setup(segments, d, whole=blocks[0] if len(blocks) == 1 else None)

    def _setup(self, segments: tuple[_Segment, ...], d: int, whole: np.ndarray | None) -> None:
        self._segments = segments
        self._whole = whole  # the one array all segments are views of, while nothing changed
        self._joined_segment: _Segment | None = None  # small segments joined, made on first search
        alive = np.array([s.n_alive for s in segments], dtype=np.int64)
        self._ends = np.cumsum(alive)
        self.n, self.d = int(self._ends[-1]), d
        self._faiss: Any = None
        self._torch: TorchExact | None = None
        self.max_k: int | None = None
        self.factory_ = auto_factory(self.n, d) if self.factory == "auto" else self.factory
        if self.factory_ == "Flat":
            self._setup_exact()
            return
        if self.gpu_dtype == "bfloat16":
            raise ValueError("FAISS GPU indexes store float32 or float16, not bfloat16.")
        self._faiss, placed = build_faiss_index(
            self.vectors(),
            self.factory_,
            self.gpu,
            shard=self.gpu_shard,
            float16=self.gpu_dtype == "float16",
        )
        self.on_gpu, self.placement = placed
        self.max_k = GPU_MAX_K if self.on_gpu else None

    def _setup_exact(self) -> None:
        """Exact search: on the CPU where the segments lie, or resident on torch's GPUs."""
        self.on_gpu, self.placement = False, "cpu"
        devices = resolve_devices(self.gpu)
        if not devices:
            return
        itemsize = np.dtype(np.float16 if self.gpu_dtype != "float32" else np.float32).itemsize
        bounds = [self.n * i // len(devices) for i in range(len(devices) + 1)]
        reason = fits_reason(devices, bounds, self.d, itemsize, _TORCH_WORK_BYTES)
        if reason is not None and self.gpu == "auto":
            _log.warning("exact search stays on the CPU: %s.", reason)
            self.placement = f"cpu ({reason})"
            return
        self._torch = TorchExact(
            [s.alive_vectors() for s in self._segments],
            devices,
            dtype=self.gpu_dtype,
            work_bytes=_TORCH_WORK_BYTES,
        )
        self.on_gpu, self.placement = True, self._torch.placement

    def _derived(self, segments: tuple[_Segment, ...]) -> AnchorIndex:
        new = object.__new__(AnchorIndex)
        for name in ("factory", "gpu", "query_batch", "kernel", "gpu_dtype", "gpu_shard"):
            setattr(new, name, getattr(self, name))
        new._setup(segments, self.d, whole=None)
        return new

    def __repr__(self) -> str:
        return (
            f"AnchorIndex(n={self.n}, d={self.d}, factory={self.factory!r}, {self.placement}, "
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
        if self.max_k is not None and k > self.max_k:
            raise ValueError(
                f"this index searches at most k = {self.max_k} ({self.placement}), got k = {k}: "
                "lower k, or build it with gpu=False."
            )
        for start in range(0, queries.shape[0], self.query_batch):
            chunk = np.ascontiguousarray(
                queries[start : start + self.query_batch], dtype=np.float32
            )
            if self._faiss is not None:
                yield self._faiss.search(chunk, k)
            elif self._torch is not None:
                yield self._torch.search(chunk, k)
            else:
                yield self._search_segments(chunk, k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosines and anchor indices, each of shape (n, min(k, N)), best first."""
        return concatenate_chunks(self.iter_search(queries, k), min(int(k), self.n))

    def _search_segments(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kernel = exact_kernel(self.n_stored) if self.kernel == "auto" else self.kernel
        if kernel == "stream":
            return exact_topk(
                queries,
                [s.vectors for s in self._segments],
                k,
                positions=self._segment_positions(),
            )
        segments = self._segments
        if len(segments) > 1 and self.n_stored <= SEGMENT_ROWS:
            # small blocks (the shards of a set on disk): k would be most of each block, and
            # FAISS selects slowly at such k; one search over them joined costs what one block
            # of N rows costs (36 shards of 985 rows, k = 1,600: 7x faster)
            segments = (self._joined(),)
        # merged segment by segment: memory holds two top-k lists, never one per segment
        # (exact: the order by cosine, then position, is total)
        best: tuple[np.ndarray, np.ndarray] | None = None
        start = 0
        for segment in segments:
            cos, pos = _segment_topk(segment, start, queries, k)
            start += segment.n_alive
            if best is not None:
                cos, pos = select_topk(np.hstack([best[0], cos]), np.hstack([best[1], pos]), k)
            best = cos, pos
        assert best is not None
        return best

    def _joined(self) -> _Segment:
        """The segments as one, copied once (the caller keeps this to at most SEGMENT_ROWS)."""
        if self._joined_segment is None:
            ranks, start = [], 0
            for segment in self._segments:
                rows = np.arange(segment.vectors.shape[0], dtype=np.int64)
                local = rows if segment.ranks is None else segment.ranks
                ranks.append(np.where(local >= 0, local + start, -1))
                start += segment.n_alive
            removed = sum(s.n_removed for s in self._segments)
            self._joined_segment = _Segment(
                _readonly(np.concatenate([s.vectors for s in self._segments])),
                np.concatenate(ranks) if removed else None,
                removed,
            )
        return self._joined_segment

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


def _segment_topk(
    segment: _Segment, start: int, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One segment's best ``min(k, alive)`` (cosines, positions) by FAISS, with asif's tie rule.

    FAISS lists equal scores in no set order and keeps an arbitrary part of those that tie at
    its last place. It is asked for ``_TIE_MARGIN`` more results than needed and the list is
    sorted by :func:`select_topk`: where the k-th score is above the last one returned, every
    score equal to it was returned, so the cut is exact. Only queries whose tie runs to the end
    of the list (more than ``_TIE_MARGIN`` equal scores, e.g. a group of identical images) are
    searched again in this segment by the streamed kernel (:func:`asif.topk.exact_topk`).
    """
    m = segment.vectors.shape[0]
    keep = min(k, segment.n_alive)
    asked = min(keep + segment.n_removed + _TIE_MARGIN, m)
    cos, rows = _exact_search(segment.vectors, queries, asked)
    last = cos.min(axis=1)  # FAISS's last returned score: nothing left out scores above it
    if segment.ranks is None:
        pos = rows + start
    else:
        pos = segment.ranks[rows] + start
        dead = segment.ranks[rows] < 0
        cos[dead], pos[dead] = -np.inf, -1
    cos, pos = select_topk(cos, pos, keep)
    if asked < m:
        tied = np.flatnonzero(cos[:, keep - 1] == last)
        if tied.size:
            local = None if segment.ranks is None else segment.ranks
            again = exact_topk(queries[tied], [segment.vectors], keep, positions=[local])
            cos[tied], pos[tied] = again[0], again[1] + start
    return cos, pos


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
