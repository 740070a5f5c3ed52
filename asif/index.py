"""FAISS top-k inner-product search over L2-normalised anchor vectors.

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
:class:`asif.compressed.CompressedIndex` instead, built block by block.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from asif.topk import exact_topk

__all__ = ["SEGMENT_ROWS", "AnchorIndex", "auto_factory", "gpu_available"]

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


def gpu_available() -> bool:
    """True when the installed FAISS was built with GPU support and sees at least one GPU."""
    return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


def _exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of ``queries`` against ``vectors`` (both float32, C-order)."""
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
        vectors: (N, d) anchor vectors, rows already L2-normalised. float32 C-contiguous arrays
            (memory-mapped ones included) are used in place, without a copy, for exact search;
            other dtypes (float16) are converted to float32 once.
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
        vectors: np.ndarray,
        *,
        factory: str = "Flat",
        gpu: bool | str = "auto",
        query_batch: int = DEFAULT_QUERY_BATCH,
    ) -> None:
        vectors = _as_float32(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(
                f"anchor vectors must be a non-empty (N, d) array, got {vectors.shape}."
            )
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}.")
        self.factory = factory
        self.gpu = gpu
        self.query_batch = int(query_batch)
        self.on_gpu = resolve_gpu(gpu)
        segments = tuple(
            _Segment(vectors[start : start + SEGMENT_ROWS])
            for start in range(0, vectors.shape[0], SEGMENT_ROWS)
        )
        self._setup(segments, vectors.shape[1], whole=vectors)

    def _setup(self, segments: tuple[_Segment, ...], d: int, whole: np.ndarray | None) -> None:
        self._segments = segments
        self._whole = whole  # the one array all segments are views of, while nothing changed
        alive = np.array([s.n_alive for s in segments], dtype=np.int64)
        self._ends = np.cumsum(alive)
        self.n, self.d = int(self._ends[-1]), d
        self._faiss: faiss.Index | None = None
        self.factory_ = auto_factory(self.n, d) if self.factory == "auto" else self.factory
        if self.factory_ != "Flat" or self.on_gpu:
            self._faiss = _build_faiss_index(self.vectors(), self.factory_, self.on_gpu)

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
        return _merge_topk(np.hstack(cosines), np.hstack(positions), k)

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


def _segments_clean(segments: tuple[_Segment, ...]) -> bool:
    """True when no segment has removed rows."""
    return all(s.ranks is None for s in segments)


def _merge_topk(
    cosines: np.ndarray, positions: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row's candidates, best first (equal cosines: lower position first)."""
    if cosines.shape[1] > k:
        part = np.argpartition(-cosines, k - 1, axis=1)[:, :k]
        cosines = np.take_along_axis(cosines, part, axis=1)
        positions = np.take_along_axis(positions, part, axis=1)
    order = np.lexsort((positions, -cosines), axis=1)
    return np.take_along_axis(cosines, order, axis=1), np.take_along_axis(positions, order, axis=1)


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


def auto_factory(n: int, d: int, memory_budget: float | None = None) -> str:
    """The index ``factory="auto"`` builds for ``n`` anchors of dimension ``d``.

    Exact search (``"Flat"``) while ``n <= 2M`` and the float32 vectors fit the budget. Then an
    inverted file of about ``sqrt(n)`` lists whose coarse quantiser is an HNSW graph (assigning
    an anchor to its list costs a graph walk, not ``nlist * d`` flops), over float32 codes
    (``Flat``), 1 byte per dimension (``SQ8``) or ``n * m`` bytes of product-quantised codes
    (``OPQ``/``PQ``), whichever is the first to fit; ``nprobe`` visits 1/16 of the lists.

    ``benchmarks/bench_10m.py`` measured the ``SQ8`` choice's family at 10M anchors
    (``IVF4096_HNSW32,SQ8``, through :class:`asif.compressed.CompressedIndex`): at k = 800
    recall is far from exact search, so pass an explicit string, or an exact index, where
    recall matters more than memory.

    Args:
        n: number of anchors.
        d: their dimension.
        memory_budget: bytes the index may use; default: half of this machine's memory.

    Example:
        >>> auto_factory(100_000, 384)
        'Flat'
        >>> auto_factory(10_000_000, 384, memory_budget=8e9)
        'IVF4096_HNSW32,SQ8;nprobe=256'
    """
    if memory_budget is None:
        memory_budget = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if n <= 2_000_000 and n * d * 4 <= memory_budget:
        return "Flat"
    nlist = int(min(16384, max(256, 2 ** round(np.log2(np.sqrt(n))))))
    coarse, probe = f"IVF{nlist}_HNSW32", f";nprobe={nlist // 16}"
    if n * (d * 4 + 8) <= memory_budget:
        return f"{coarse},Flat{probe}"
    if n * (d + 8) <= memory_budget:
        return f"{coarse},SQ8{probe}"
    fitting = [
        m for m in (128, 96, 64, 48, 32, 16, 8) if d % m == 0 and n * (m + 8) <= memory_budget
    ]
    if not fitting:
        raise ValueError(
            f"no index of {n} anchors of dimension {d} fits in {memory_budget / 2**30:.1f} GiB: "
            "raise memory_budget or pass an explicit factory string."
        )
    m = fitting[0]
    return f"OPQ{m},{coarse},PQ{m}{probe}"


def _build_faiss_index(vectors: np.ndarray, factory: str, on_gpu: bool) -> faiss.Index:
    d = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    spec, _, params = factory.partition(";")
    if spec == "Flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss_index(d, spec)
        if not index.is_trained:
            index.train(vectors)
    index.add(vectors)
    if on_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    set_search_params(index, params, on_gpu=on_gpu, factory=spec)
    return index


def resolve_gpu(gpu: bool | str) -> bool:
    """Check a ``gpu`` argument (``"auto"``, True, False); True when search runs on GPUs."""
    if gpu not in ("auto", True, False):
        raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}.")
    if gpu is True and not gpu_available():
        raise RuntimeError(
            "gpu=True but the installed FAISS sees no GPU. Install faiss-gpu on a machine with "
            "CUDA, or pass gpu='auto' / gpu=False to search on the CPU."
        )
    return gpu is not False and gpu_available()


def faiss_index(d: int, spec: str) -> faiss.Index:
    """``faiss.index_factory(d, spec)`` for inner products; a bad string is a ValueError."""
    try:
        return faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot build index {spec!r}: {error}") from error


def set_search_params(index: faiss.Index, params: str, *, on_gpu: bool, factory: str) -> None:
    """Apply FAISS search parameters (``"nprobe=64,efSearch=128"``); a bad one is a ValueError."""
    if not params:
        return
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    try:
        space.set_index_parameters(index, params)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot set {params!r} on {factory!r}: {error}") from error


def concatenate_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(cosines, indices)`` pair from the per-chunk pairs of an ``iter_search``."""
    parts = list(chunks)
    if not parts:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return np.concatenate([c for c, _ in parts]), np.concatenate([i for _, i in parts])
