"""Exact top-k inner-product search for large k: sgemm per block, then a running threshold.

The relative layer needs, for every query, the k anchors of largest inner product (k = 800 in
the paper) out of N (up to millions). Scoring is a matrix product; the selection is what
usually costs at large N: a heap per query (FAISS) or a partial sort (``torch.topk``) over
every score. Here a chunk of queries is scored against one block of anchors at a time (sgemm
into one reused buffer) and each query keeps its best k so far:

1. in the first block, a strided sample of the scores (``SAMPLE`` of them) places a threshold
   that about 2k scores pass; a row where fewer than k pass is redone with no threshold;
2. in every later block, only scores >= the running k-th best can enter the top k, so one
   vectorised comparison keeps a few candidates per query, merged into the best k.

The result is exact for any data and any sample, and equal scores go to the lower position (:func:`select_topk`, the one rule used by every search and merge),
so it does not depend on the blocking or the chunking. Measured in ``benchmarks/bench_relative.py``:
at one million anchors the matrix product is almost all of the time, where FAISS's ``knn``
with k = 800 spends most of it selecting; at small N FAISS per block is faster, and
:class:`asif.index.AnchorIndex` uses each where it wins.

Example:
    >>> anchors = np.eye(4, dtype=np.float32)
    >>> scores, idx = exact_topk(np.array([[0.1, 0.9, 0.0, 0.5]], np.float32), [anchors], 2)
    >>> idx.tolist(), [round(float(x), 2) for x in scores[0]]
    ([[1, 3]], [0.9, 0.5])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["exact_topk", "select_topk", "top_k_columns"]

SAMPLE = 4096
"""Scores sampled per query in the first block to place its threshold."""
QUERY_CHUNK = 512
"""Queries scored together: large enough for sgemm to run near its peak."""


def exact_topk(
    queries: np.ndarray,
    blocks: Sequence[np.ndarray],
    k: int,
    *,
    positions: Sequence[np.ndarray | None] | None = None,
    query_chunk: int = QUERY_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest inner products of each query with the anchor blocks, best first.

    Args:
        queries: (n, d) float32 query vectors.
        blocks: (m_j, d) float32 anchor blocks, searched as if concatenated and read in place.
        k: results per query, 1 <= k <= number of live anchors.
        positions: per block, the position each row is reported as (int64, ``-1`` for rows
            never returned, e.g. removed anchors), or ``None`` for ``offset + row``.
        query_chunk: queries scored together (memory: ``query_chunk * max(m_j)`` floats).

    Returns:
        ``(scores, positions)``: float32 and int64 arrays of shape (n, k), each row sorted by
        decreasing score, equal scores by increasing position.
    """
    blocks = list(blocks)
    maps = _position_maps(blocks, positions)
    n = queries.shape[0]
    out_s = np.empty((n, k), np.float32)
    out_p = np.empty((n, k), np.int64)
    width = max((b.shape[0] for b in blocks), default=0)
    buffer = np.empty(min(query_chunk, n) * width, np.float32)
    for start in range(0, n, query_chunk):
        chunk = queries[start : start + query_chunk]
        s, p = _chunk_topk(chunk, blocks, maps, k, buffer)
        out_s[start : start + chunk.shape[0]], out_p[start : start + chunk.shape[0]] = s, p
    return out_s, out_p


def _position_maps(blocks: list[np.ndarray], positions) -> list[np.ndarray | int]:
    """Per block, an int64 position array (-1: skipped) or an int offset (identity map)."""
    maps: list[np.ndarray | int] = []
    offset = 0
    for j, block in enumerate(blocks):
        given = None if positions is None else positions[j]
        maps.append(offset if given is None else np.asarray(given, np.int64))
        offset += block.shape[0]
    return maps


def _chunk_topk(
    queries: np.ndarray, blocks: list[np.ndarray], maps: list, k: int, buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stream over the blocks keeping each query's best k so far and its k-th score.

    A score below the running k-th best can never enter the final top k, so every block after
    the first is filtered by one comparison; the first is filtered by a sampled threshold,
    checked afterwards (rows with fewer than k survivors are redone unfiltered).
    """
    q = queries.shape[0]
    best_v = np.full((q, 0), -np.inf, np.float32)
    best_p = np.full((q, 0), _NO_POSITION, np.int64)
    kth = None
    for block, m in zip(blocks, maps, strict=True):
        if block.shape[0] == 0:
            continue
        s = buffer[: q * block.shape[0]].reshape(q, block.shape[0])
        np.matmul(queries, block.T, out=s)
        if not isinstance(m, int):
            s[:, m < 0] = -np.inf
        if kth is None:
            threshold = _sampled_threshold(s, k)
            rows, cols = _passing(s, threshold)
            counts = np.bincount(rows, minlength=q)
            short = np.flatnonzero(counts < k)
            if short.size:  # the sample misled these rows: keep all their scores
                keep = counts[rows] >= k
                extra_r = np.repeat(short, s.shape[1])
                extra_c = np.tile(np.arange(s.shape[1]), short.size)
                rows = np.concatenate([rows[keep], extra_r])
                cols = np.concatenate([cols[keep], extra_c])
        else:
            rows, cols = _passing(s, kth)
        vals = s[rows, cols]
        pos = cols + m if isinstance(m, int) else m[cols]
        live = vals > -np.inf
        best_v, best_p = _merge(best_v, best_p, rows[live], vals[live], pos[live], k)
        # The running k-th best (-inf while a row holds fewer than k live scores).
        kth = best_v.min(axis=1) if best_v.shape[1] >= k else np.full(q, -np.inf, np.float32)
    return _sorted(best_v, best_p)


def select_topk(values: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest values and their positions, best first; ties: lower position.

    The one top-k rule of asif: exact search, the merging of per-segment or per-shard results
    and retrieval all select with it, so equal scores never depend on how the work was split.

    Args:
        values: (n, m) scores.
        positions: (n, m) integer positions of those scores (broadcastable views are fine).
        k: how many to keep per row (capped at m).

    Example:
        >>> v = np.array([[0.5, 0.75, 0.5, 0.25]], np.float32)
        >>> p = np.array([[7, 3, 2, 9]])
        >>> [x.tolist() for x in select_topk(v, p, 2)]
        [[[0.75, 0.5]], [[3, 2]]]
    """
    values = np.asarray(values)
    positions = np.broadcast_to(np.asarray(positions), values.shape)
    k = min(int(k), values.shape[1])
    if values.shape[1] > k:
        values, positions = _best_k(values, positions, k)
    return _sorted(values, positions)


def top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` best scores, best first; ties: lower column.

    Example:
        >>> top_k_columns(np.array([[0.2, 0.7, 0.7, 0.1]]), 2).tolist()
        [[1, 2]]
    """
    columns = np.broadcast_to(np.arange(scores.shape[1], dtype=np.int64), scores.shape)
    return select_topk(scores, columns, k)[1]


def _sorted(vals: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by decreasing value, equal values by increasing position."""
    order = np.lexsort((pos, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(pos, order, axis=1)


_NO_POSITION = np.iinfo(np.int64).max


def _passing(s: np.ndarray, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the scores >= their row's threshold, in row order."""
    flat = np.flatnonzero(s >= threshold[:, None])
    return flat // s.shape[1], flat % s.shape[1]


def _merge(best_v, best_p, rows, vals, pos, k):
    """Each row's best k of (its current best) + (new candidates), as (q, <=k) tables."""
    q = best_v.shape[0]
    counts = np.bincount(rows, minlength=q)
    width = best_v.shape[1] + int(counts.max(initial=0))
    table_v = np.full((q, width), -np.inf, np.float32)
    table_p = np.full((q, width), _NO_POSITION, np.int64)
    table_v[:, : best_v.shape[1]], table_p[:, : best_p.shape[1]] = best_v, best_p
    order = np.argsort(rows, kind="stable")
    rows, vals, pos = rows[order], vals[order], pos[order]
    slot = best_v.shape[1] + np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
    table_v[rows, slot], table_p[rows, slot] = vals, pos
    if width > k:
        table_v, table_p = _best_k(table_v, table_p, k)
    return table_v, table_p


def _best_k(vals: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (unordered); equal scores at the cut go to the lower positions."""
    part = np.argpartition(-vals, k - 1, axis=1)[:, :k]
    best_v = np.take_along_axis(vals, part, axis=1)
    best_p = np.take_along_axis(pos, part, axis=1)
    cut = best_v.min(axis=1, keepdims=True)
    # A row whose cut value is shared by a dropped entry needs the tie rule: redo it by sorting.
    tied = np.flatnonzero((vals == cut).sum(axis=1) != (best_v == cut).sum(axis=1))
    if tied.size:
        order = np.lexsort((pos[tied], -vals[tied]), axis=1)[:, :k]
        best_v[tied] = np.take_along_axis(vals[tied], order, axis=1)
        best_p[tied] = np.take_along_axis(pos[tied], order, axis=1)
    return best_v, best_p


def _sampled_threshold(s: np.ndarray, k: int) -> np.ndarray:
    """Per query, a score that about 2k of its scores exceed (-inf: keep everything)."""
    n = s.shape[1]
    stride = max(2, n // SAMPLE)
    if n <= 4 * k:
        return np.full(s.shape[0], -np.inf, np.float32)
    sample = s[:, ::stride]
    expected = k * sample.shape[1] / n  # sampled scores among the block's top k
    rank = int(np.ceil(expected + 4.0 * np.sqrt(expected) + 2.0))
    if rank >= sample.shape[1]:
        return np.full(s.shape[0], -np.inf, np.float32)
    return np.partition(sample, sample.shape[1] - rank, axis=1)[:, sample.shape[1] - rank]
