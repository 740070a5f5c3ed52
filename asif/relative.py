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
    "COMBINES",
    "check_k",
    "check_p",
    "class_scores",
    "class_vectors",
    "mean_of_row_groups",
    "normalize_rows",
    "normalize_sparse_rows",
    "relative_from_topk",
    "reweight_columns",
    "sparse_scores",
]

COMBINES = ("max", "mean")
"""How a class's prompts combine: ``"max"``, the best score over its prompts (the paper's
code); ``"mean"``, the normalised mean of its prompts' relative vectors (CLIP_benchmark's)."""


def check_k(k: int) -> int:
    """Validate the number of anchors kept per input.

    Example:
        >>> check_k(800)
        800
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
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
    # Scale each row by its largest magnitude before squaring: float32 squares overflow from
    # about 1.8e19, and tiny rows would underflow to a zero norm.
    scale = np.abs(x).max(axis=1, keepdims=True)
    zero = scale[:, 0] == 0
    if zero.any():
        rows = np.flatnonzero(zero)[:5].tolist()
        raise ValueError(
            f"{what} has all-zero rows {rows} (first 5 shown); they have no direction."
        )
    x = x / scale
    return x / np.linalg.norm(x, axis=1, keepdims=True)


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
    """Rows scaled to unit L2 norm (float32); empty rows stay empty.

    Example:
        >>> print(normalize_sparse_rows(sp.csr_array(np.array([[3.0, 4.0]]))).toarray())
        [[0.6 0.8]]
    """
    out = sp.csr_array(rows, dtype=np.float64, copy=True)
    lengths = np.diff(out.indptr)
    starts = out.indptr[:-1][lengths > 0]
    if out.data.size:
        # Scale each row by its largest magnitude first, so squares neither overflow nor
        # underflow; reduceat over the starts of the non-empty rows reduces row by row.
        peak = np.zeros(out.shape[0])
        peak[lengths > 0] = np.maximum.reduceat(np.abs(out.data), starts)
        out.data *= np.repeat(_inverse(peak), lengths)
        norms = np.zeros(out.shape[0])
        norms[lengths > 0] = np.sqrt(np.add.reduceat(out.data * out.data, starts))
        out.data *= np.repeat(_inverse(norms), lengths)
    return sp.csr_array(out, dtype=np.float32)


def _inverse(x: np.ndarray) -> np.ndarray:
    return np.divide(1.0, x, out=np.zeros_like(x), where=x > 0)


def reweight_columns(vectors: sp.csr_array, weights: np.ndarray) -> sp.csr_array:
    """Multiply column j of each row by ``weights[j]`` and renormalise the rows.

    Applied to ``normalise(s ** p)`` this gives ``normalise(weights * s ** p)``: per-anchor
    weights (the hub weights of :func:`asif.transforms.hub_weights`) act on the powered
    cosines. Computed in float64 with each row rescaled, so extreme weights give the limit,
    never NaN. Empty rows stay empty.

    Example:
        >>> v = sp.csr_array(np.array([[0.6, 0.8]], dtype=np.float32))
        >>> reweight_columns(v, np.array([2.0, 0.75])).toarray().round(3)
        array([[0.894, 0.447]], dtype=float32)
    """
    out = sp.csr_array(vectors, dtype=np.float64, copy=True)
    out.data *= np.asarray(weights, dtype=np.float64)[out.indices]
    return normalize_sparse_rows(out)


def class_vectors(prompt_vectors: sp.csr_array, n_templates: int, combine: str) -> sp.csr_array:
    """The vectors classes are scored against: the prompts' (``"max"``), or per class the
    normalised mean of its ``n_templates`` consecutive prompt vectors (``"mean"``).

    Example:
        >>> prompts = sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
        >>> print(class_vectors(prompts, 2, "mean").toarray().round(3))
        [[0.707 0.707]]
    """
    _check_combine(combine)
    if combine == "max":
        return sp.csr_array(prompt_vectors)
    return normalize_sparse_rows(mean_of_row_groups(prompt_vectors, n_templates))


def class_scores(scores: np.ndarray, n_classes: int, n_templates: int, combine: str) -> np.ndarray:
    """(n, n_classes) class scores from the scores against :func:`class_vectors`.

    ``"max"`` takes each class's best prompt; ``"mean"`` scores are already per class.

    Example:
        >>> class_scores(np.array([[0.1, 0.7, 0.3, 0.2]]), 2, 2, "max").tolist()
        [[0.7, 0.3]]
    """
    _check_combine(combine)
    if combine == "max":
        return scores.reshape(scores.shape[0], n_classes, n_templates).max(axis=2)
    return scores


def _check_combine(combine: str) -> None:
    if combine not in COMBINES:
        raise ValueError(f"combine must be 'max' or 'mean', got {combine!r}.")
