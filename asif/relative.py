"""The relative-representation math of ASIF: top-k cosines to sparse vectors, and their scores.

Pure functions, no I/O: they know neither encoders nor FAISS.

A row of top-k cosines ``s`` (to the anchors of the input's own modality) becomes
``normalise(max(s, 0) ** p)``, stored as one row of a ``scipy.sparse.csr_array`` with one column
per anchor. Clamping before the power matters: the reference code does not clamp, and an even
``p`` would turn a strongly *dissimilar* anchor into a strongly similar one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "check_k",
    "check_p",
    "mean_of_row_groups",
    "normalize_rows",
    "normalize_sparse_rows",
    "relative_from_topk",
    "sparse_scores",
]


def check_k(k: int) -> int:
    """Validate the number of anchors kept per input.

    Example:
        >>> check_k(800)
        800
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (the anchors kept per input), got {k!r}.")
    return int(k)


def check_p(p: float) -> float:
    """Validate the exponent applied to the kept cosines.

    Example:
        >>> check_p(8)
        8.0
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not np.isfinite(p):
        raise ValueError(f"p must be a finite number > 0 (the exponent on cosines), got {p!r}.")
    if p <= 0:
        raise ValueError(f"p must be > 0 (the exponent on cosines), got {p!r}.")
    return float(p)


def normalize_rows(x: np.ndarray, *, what: str = "embeddings") -> np.ndarray:
    """Return ``x`` as C-contiguous float32 with unit-L2 rows; reject non-finite or zero rows.

    Example:
        >>> normalize_rows(np.array([[3.0, 4.0]]))
        array([[0.6, 0.8]], dtype=float32)
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {x.shape}).")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what} must hold real numbers, got dtype {x.dtype}.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"{what} has NaN or infinite values in rows {rows} (first 5 shown).")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        rows = np.flatnonzero(zero)[:5].tolist()
        raise ValueError(
            f"{what} has all-zero rows {rows} (first 5 shown); they have no direction."
        )
    return x / norms


def relative_from_topk(
    indices: np.ndarray, cosines: np.ndarray, n_anchors: int, p: float
) -> sp.csr_array:
    """Turn the top-k (anchor index, cosine) pairs of each input into sparse relative vectors.

    Each row becomes ``normalise(max(cosines, 0) ** p)`` over its anchor columns. Entries whose
    index is negative (FAISS pads with -1 when fewer than k anchors exist) or whose cosine is
    <= 0 are dropped, so a row holds at most k non-zeros; a row with no positive cosine is empty.

    Args:
        indices: (n, k) anchor indices, as returned by a top-k search.
        cosines: (n, k) cosines of those anchors.
        n_anchors: N, the number of columns.
        p: the exponent (> 0).

    Returns:
        ``scipy.sparse.csr_array`` of shape (n, N), float32, rows of unit norm (or empty).

    Example:
        >>> r = relative_from_topk(np.array([[2, 0]]), np.array([[0.6, -0.2]]), 3, p=1.0)
        >>> r.toarray()
        array([[0., 0., 1.]], dtype=float32)
    """
    p = check_p(p)
    indices = np.asarray(indices)
    cosines = np.asarray(cosines)
    if indices.shape != cosines.shape or indices.ndim != 2:
        raise ValueError(
            f"indices and cosines must be 2-D arrays of one shape, got {indices.shape} "
            f"and {cosines.shape}."
        )
    n = indices.shape[0]
    keep = (indices >= 0) & (cosines > 0)
    counts = keep.sum(axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    cols = indices[keep].astype(np.int32 if n_anchors < 2**31 else np.int64, copy=False)
    # Work in float64 from the row's largest cosine down: (s / s_max) ** p keeps its range for
    # any p, and the scale cancels in the normalisation.
    s = np.where(keep, cosines, 0.0).astype(np.float64)
    s_max = s.max(axis=1, keepdims=True)
    s_max[s_max == 0] = 1.0
    w = (s / s_max) ** p
    w /= np.maximum(np.sqrt((w * w).sum(axis=1, keepdims=True)), np.finfo(np.float64).tiny)
    data = w[keep].astype(np.float32)
    out = sp.csr_array((data, cols, indptr), shape=(n, int(n_anchors)))
    out.has_sorted_indices = False
    return out


def sparse_scores(a: sp.csr_array, b: sp.csr_array) -> np.ndarray:
    """Inner products of every row of ``a`` with every row of ``b``: a dense (n_a, n_b) array.

    Both must live on the same N anchor axes.

    Example:
        >>> a = relative_from_topk(np.array([[0, 1]]), np.array([[0.8, 0.6]]), 3, p=1.0)
        >>> b = relative_from_topk(np.array([[1]]), np.array([[0.5]]), 3, p=1.0)
        >>> sparse_scores(a, b).round(3)
        array([[0.6]], dtype=float32)
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"relative vectors live on different anchor sets: {a.shape[1]} vs {b.shape[1]} axes."
        )
    out = (sp.csr_array(a) @ sp.csr_array(b).T).toarray()
    return np.asarray(out, dtype=np.float32)


def mean_of_row_groups(rows: sp.csr_array, group: int) -> sp.csr_array:
    """Mean of each run of ``group`` consecutive rows: (n, N) -> (n // group, N).

    Example:
        >>> mean_of_row_groups(sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0]])), 2).toarray().tolist()
        [[0.5, 0.5]]
    """
    n_groups = rows.shape[0] // group
    averaging = sp.csr_array(
        (
            np.full(rows.shape[0], 1.0 / group, dtype=np.float32),
            (np.repeat(np.arange(n_groups), group), np.arange(rows.shape[0])),
        ),
        shape=(n_groups, rows.shape[0]),
    )
    return sp.csr_array(averaging @ rows)


def normalize_sparse_rows(rows: sp.csr_array) -> sp.csr_array:
    """Rows scaled to unit L2 norm; empty rows stay empty.

    Example:
        >>> normalize_sparse_rows(sp.csr_array(np.array([[3.0, 4.0]]))).toarray().round(3).tolist()
        [[0.6, 0.8]]
    """
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).reshape(-1))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_array(sp.diags_array(scale.astype(np.float32)) @ rows)
