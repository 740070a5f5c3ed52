"""Fast exact top-k inner-product search: blocked sgemm + a running-threshold filter.

The relative layer needs, for every query, the k anchors of largest inner product (k = 800 in
the paper) out of N (up to millions). The obvious way, scoring all N then ``topk`` over each
row, spends as much time selecting as multiplying: a full selection reads and reorders every
one of the N scores. Here the anchors are scored block by block into one reused buffer, and
each query keeps a *threshold*, the k-th best score seen so far. After the first block, a score
only needs one comparison against it; the few that pass (about ``k * ln(N / k)`` per query over
the whole search, for anchors in random order) are appended to a small per-query candidate
buffer, which is compacted back to the best k when it fills. The matrix product is then almost
the whole cost.

Results are exact and deterministic: the best k by score, equal scores broken by the lower
anchor index, and the same whatever the query or anchor block sizes.

``precision="bf16"`` scores in bfloat16 (torch) and re-ranks in float32: with a bound on the
bfloat16 error, every candidate that can be in the exact top-k is kept and re-scored exactly, so
the indices equal the float32 search's. It only pays on CPUs with native bfloat16 matrix units
(AVX-512 BF16 / AMX) or on GPUs; elsewhere torch emulates bfloat16 and it is far slower.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BF16_UNIT_ROUNDOFF", "exact_topk", "max_row_norm"]

DEFAULT_QUERY_BATCH = 1024
DEFAULT_ANCHOR_BLOCK = 16384
BF16_UNIT_ROUNDOFF = 2.0**-8
"""Unit roundoff of bfloat16 (8 significant bits)."""
_CAPACITY_FACTOR = 4
"""The candidate buffer holds this many times k before it is compacted back to k."""


def exact_topk(
    queries: np.ndarray,
    anchors: np.ndarray | Sequence[np.ndarray],
    k: int,
    *,
    query_batch: int = DEFAULT_QUERY_BATCH,
    anchor_block: int = DEFAULT_ANCHOR_BLOCK,
    precision: str = "float32",
    exclude: Sequence[np.ndarray | None] | None = None,
    max_norm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest inner products of each query with the anchors, best first.

    Args:
        queries: (n, d) query vectors.
        anchors: (N, d) anchor vectors, or a sequence of (N_i, d) blocks searched as if
            concatenated (indices count across the blocks). float32 C-contiguous arrays,
            memory-mapped ones included, are read in place.
        k: results per query; capped at N.
        query_batch: queries scored together (memory: ``query_batch * anchor_block`` floats).
        anchor_block: anchors scored together.
        precision: ``"float32"``, or ``"bf16"`` to score in bfloat16 and re-rank the
            candidates in float32 (same indices; see the module notes for when it pays).
        exclude: optional boolean masks, one per block (``None``: none excluded), of rows
            that are never returned (removed anchors); indices still count them.
        max_norm: an upper bound on the anchors' L2 norms, used for the error bound; computed
            (one pass over the anchors) when ``None``.

    Returns:
        ``(scores, indices)``: float32 and int64 arrays of shape (n, min(k, N)), each row
        sorted by decreasing score, ties by increasing index.

    Example:
        >>> anchors = np.eye(4, dtype=np.float32)
        >>> scores, idx = exact_topk(np.array([[0.1, 0.9, 0.0, 0.5]], np.float32), anchors, 2)
        >>> idx.tolist(), [round(float(x), 2) for x in scores[0]]
        ([[1, 3]], [0.9, 0.5])
    """
    blocks = [anchors] if isinstance(anchors, np.ndarray) else list(anchors)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2:
        raise ValueError(f"queries must be a 2-D (n, d) array, got shape {queries.shape}.")
    d = queries.shape[1]
    blocks = [np.asarray(b) for b in blocks]
    if not blocks or any(b.ndim != 2 or b.shape[1] != d for b in blocks):
        raise ValueError(
            f"anchors must be (N, {d}) arrays to match the queries, got "
            f"{[b.shape for b in blocks]}."
        )
    masks = [None] * len(blocks) if exclude is None else list(exclude)
    if len(masks) != len(blocks) or any(
        m is not None and np.shape(m) != (b.shape[0],) for m, b in zip(masks, blocks, strict=True)
    ):
        raise ValueError("exclude must hold one boolean mask (or None) per anchor block.")
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    if query_batch < 1 or anchor_block < 1:
        raise ValueError(
            f"query_batch and anchor_block must be >= 1, got {query_batch}, {anchor_block}."
        )
    if precision not in ("float32", "bf16"):
        raise ValueError(f"precision must be 'float32' or 'bf16', got {precision!r}.")
    n_alive = sum(
        b.shape[0] - (0 if m is None else int(np.count_nonzero(m)))
        for b, m in zip(blocks, masks, strict=True)
    )
    if n_alive == 0:
        raise ValueError("no anchors to search: every block is empty or excluded.")
    k = min(int(k), n_alive)
    tiles = list(_tiles(blocks, masks, anchor_block))
    gather = _Gather(blocks)
    if max_norm is None:
        max_norm = max_row_norm(blocks)
    a_max = float(max_norm)
    n = queries.shape[0]
    out_s = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    for start in range(0, n, query_batch):
        chunk = queries[start : start + query_batch]
        if precision == "float32":
            score, u = _Float32Scorer(chunk, anchor_block), 0.0
        else:
            score, u = _Bf16Scorer(chunk), BF16_UNIT_ROUNDOFF
        # Every score is within eps of the exact inner product; keeping all candidates within
        # 2 eps of the approximate k-th best keeps every member of the exact top-k.
        eps = _error_bound(d, u) * float(np.linalg.norm(chunk, axis=1).max()) * a_max
        slack = 2 * eps * 1.01 + 2.0**-20 * float(np.linalg.norm(chunk, axis=1).max()) * a_max
        cand = _candidates(chunk, tiles, k, score, slack)
        s, i = _rerank(chunk, cand, gather, k)
        out_s[start : start + query_batch], out_i[start : start + query_batch] = s, i
    return out_s, out_i


def _error_bound(d: int, u: float) -> float:
    """Bound on |approximate - exact| inner product, relative to |q| |a|.

    Inputs rounded to unit roundoff ``u`` (2u + u^2), float32 accumulation over d terms in any
    order (gamma_d with u32 = 2^-24, on the products' absolute sum <= |q||a|), and an output
    rounded to ``u``.
    """
    u32 = 2.0**-24
    gamma = d * u32 / (1 - d * u32)
    return (2 * u + u * u) + gamma * (1 + u) ** 2 + u * (1 + 2 * u + gamma) + u32


def max_row_norm(blocks: Sequence[np.ndarray]) -> float:
    """The largest L2 norm of a row of the blocks (0.0 when they are empty).

    Example:
        >>> max_row_norm([np.array([[3.0, 4.0]]), np.zeros((0, 2))])
        5.0
    """
    best = 0.0
    for block in blocks:
        for start in range(0, block.shape[0], 65536):
            part = np.asarray(block[start : start + 65536])
            best = max(best, float(np.einsum("ij,ij->i", part, part, dtype=np.float64).max()))
    return float(np.sqrt(best))


def _tiles(blocks: list[np.ndarray], masks: list, size: int):
    """(offset, rows, excluded-or-None) pieces of at most ``size`` rows covering the blocks."""
    offset = 0
    for block, mask in zip(blocks, masks, strict=True):
        for start in range(0, block.shape[0], size):
            part = None if mask is None else np.asarray(mask[start : start + size], bool)
            if part is not None and not part.any():
                part = None
            yield offset + start, block[start : start + size], part
        offset += block.shape[0]


class _Float32Scorer:
    """Scores a query chunk against anchor tiles with sgemm into one reused buffer."""

    def __init__(self, chunk: np.ndarray, tile_rows: int) -> None:
        self.chunk = chunk
        self.buffer = np.empty((chunk.shape[0], tile_rows), np.float32)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        out = self.buffer[:, : tile.shape[0]]
        if tile.dtype != np.float32:
            tile = tile.astype(np.float32)
        np.matmul(self.chunk, tile.T, out=out)
        return out


def _candidates(chunk: np.ndarray, tiles: list, k: int, score, slack: float) -> np.ndarray:
    """Per row, the indices of every anchor scoring at least (k-th best - ``slack``).

    Streams over the tiles keeping a per-row threshold (the k-th best so far minus ``slack``);
    returns an (n, width) int64 array padded with -1, unsorted.
    """
    q = chunk.shape[0]
    cap = _CAPACITY_FACTOR * k
    vals = np.full((q, cap), -np.inf, np.float32)
    idxs = np.full((q, cap), -1, np.int64)
    fill = np.zeros(q, np.int64)
    thr = np.full(q, -np.inf, np.float32)  # k-th best so far - slack; -inf until k are seen
    for offset, tile, excluded in tiles:
        if excluded is not None and excluded.all():
            continue
        scores = score(tile)
        if excluded is not None:
            scores[:, excluded] = -np.inf
        m = tile.shape[0]
        if np.isneginf(thr).any() and m > k:
            # Filling: this tile's own k-th best bounds the global one from below.
            kth = np.partition(scores, m - k, axis=1)[:, m - k]
            rows, cols = np.nonzero(scores >= np.maximum(thr, kth - slack)[:, None])
        else:
            rows, cols = np.nonzero(scores >= thr[:, None])
        new_v = scores[rows, cols]
        if excluded is not None:
            live = ~np.isneginf(new_v)
            rows, cols, new_v = rows[live], cols[live], new_v[live]
        if rows.size == 0:
            continue
        counts = np.bincount(rows, minlength=q)
        if (fill + counts > vals.shape[1]).any():
            fill, thr = _compact(vals, idxs, k, slack)
            keep = new_v >= thr[rows]
            rows, cols, new_v = rows[keep], cols[keep], new_v[keep]
            counts = np.bincount(rows, minlength=q)
            need = max(int((fill + counts).max()), 2 * int(fill.max()))
            if need > vals.shape[1]:
                grow = need - vals.shape[1]
                vals = np.pad(vals, ((0, 0), (0, grow)), constant_values=-np.inf)
                idxs = np.pad(idxs, ((0, 0), (0, grow)), constant_values=-1)
        starts = np.cumsum(counts) - counts
        pos = fill[rows] + (np.arange(rows.size) - starts[rows])
        vals[rows, pos] = new_v
        idxs[rows, pos] = cols + offset
        fill += counts
        if np.isneginf(thr).any() and (fill >= k).all():
            fill, thr = _compact(vals, idxs, k, slack)
    return idxs[:, : int(fill.max())]


def _compact(
    vals: np.ndarray, idxs: np.ndarray, k: int, slack: float
) -> tuple[np.ndarray, np.ndarray]:
    """In place, keep each row's entries within ``slack`` of its k-th best, moved to the front.

    Returns the new fill counts and thresholds (k-th best - slack; -inf for rows holding fewer
    than k entries).
    """
    width = vals.shape[1]
    kth = np.partition(vals, width - k, axis=1)[:, width - k]
    thr = (kth - slack).astype(np.float32)
    keep = (vals >= thr[:, None]) & (idxs >= 0)
    fill = keep.sum(axis=1)
    order = np.argsort(~keep, axis=1, kind="stable")
    vals[:] = np.take_along_axis(vals, order, axis=1)
    idxs[:] = np.take_along_axis(idxs, order, axis=1)
    dead = np.arange(width)[None, :] >= fill[:, None]
    vals[dead], idxs[dead] = -np.inf, -1
    thr[np.isneginf(kth)] = -np.inf
    return fill.astype(np.int64), thr


def _sort_rows(vals: np.ndarray, idxs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by decreasing value, then increasing index."""
    order = np.lexsort((idxs, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idxs, order, axis=1)


class _Bf16Scorer:
    """Scores a query chunk against anchor tiles in bfloat16 with torch."""

    def __init__(self, chunk: np.ndarray) -> None:
        import torch

        self.torch = torch
        self.chunk = torch.from_numpy(chunk).to(torch.bfloat16)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        torch = self.torch
        t = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32)).to(torch.bfloat16)
        return (self.chunk @ t.T).float().numpy()


_RERANK_ROWS = 64


def _rerank(
    chunk: np.ndarray, cand: np.ndarray, gather: _Gather, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of the candidates (float64 sums of float32 products, rounded to float32),
    then each row's best k by (score desc, index asc): deterministic whatever the blocking."""
    vals = np.full(cand.shape, -np.inf, np.float32)
    for start in range(0, cand.shape[0], _RERANK_ROWS):
        c = cand[start : start + _RERANK_ROWS]
        rows = gather.rows(np.maximum(c, 0).reshape(-1)).reshape(*c.shape, -1)
        v = np.einsum("rkd,rd->rk", rows, chunk[start : start + _RERANK_ROWS], dtype=np.float64)
        vals[start : start + _RERANK_ROWS] = np.where(c >= 0, v, -np.inf)
    cand = np.where(cand >= 0, cand, np.iinfo(np.int64).max)
    vals, cand = _sort_rows(vals, cand)
    return vals[:, :k], cand[:, :k]


class _Gather:
    """Rows of the concatenated anchor blocks by global index."""

    def __init__(self, blocks: list[np.ndarray]) -> None:
        self.blocks = blocks
        self.offsets = np.cumsum([0] + [b.shape[0] for b in blocks[:-1]])

    def rows(self, index: np.ndarray) -> np.ndarray:
        if len(self.blocks) == 1:
            return self.blocks[0][index]
        owner = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((index.size, self.blocks[0].shape[1]), self.blocks[0].dtype)
        for b in np.unique(owner):
            sel = owner == b
            out[sel] = self.blocks[b][index[sel] - self.offsets[b]]
        return out
