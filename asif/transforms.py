"""Switchable improvements over the paper's algorithm, as small functions on embedding arrays.

Each one is off by default in the functions of :mod:`asif.relative`; switched off, the relative
vectors are exactly the paper's (``tests/test_improvements.py`` checks this against the dense
reference). They were measured on held-out data (``benchmarks/bench_zeroshot.py``):

- :func:`adaptive_k`: the number of anchors kept per input as a function of N,
  ``k = min(1600, ceil(N / 20))``. The paper's k = 800 was made for N = 1.6M; with a few thousand
  anchors it keeps a third of them and blurs every input into the same broad neighbourhood.
- :class:`Centering`: subtract the anchors' mean embedding (per modality) before normalising.
  Pooled CNN features are all non-negative, so raw cosines crowd into a narrow band.
- :func:`hub_weights`: down-weight *hub* anchors, the ones that appear in many top-k lists, by
  a power of their k-occurrence among the anchors' own top-k lists (:func:`anchor_k_occurrence`).

:class:`asif.RelativeSpace` switches them with its ``k``, ``center`` and ``hubness`` options and
applies the weights with :func:`asif.relative.reweight_columns`.

Example:
    >>> adaptive_k(2_000), adaptive_k(35_455), adaptive_k(1_600_000)
    (100, 1600, 1600)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from asif.relative import check_k, normalize_rows

__all__ = [
    "HUB_DRIFT",
    "Centering",
    "adaptive_k",
    "anchor_k_occurrence",
    "anchor_k_occurrences",
    "check_hubness",
    "hub_weights",
    "k_occurrence",
    "resolve_k",
    "update_hub_counts",
]

_K_FRACTION = 20
_K_MAX = 1600
_HUB_SAMPLE = 4096
_HUB_SAMPLE_FLOPS = 2e12


def adaptive_k(n_anchors: int, *, fraction: int = _K_FRACTION, k_max: int = _K_MAX) -> int:
    """Anchors kept per input for N anchors: ``min(k_max, ceil(N / fraction))``, at least 1.

    One anchor in twenty, up to 1,600 (reached at N = 32,000). Chosen on held-out data (the even
    half of each CIFAR-10 class, texture-shape edges, flickr8k dev retrieval) with flickr8k
    anchors, together with p = 3.5 and hub weights (``asif.evaluate.DEFAULT``). At N = 35,455,
    k = 1,600 was best or within 0.1 points of the best of 800 ... 2,400 at p = 3, 3.5 and 4.
    On random subsets (p = 3, hub weights), N / 20 was best at N = 5,000 and 10,000, N / 10 at
    N <= 2,000 (by up to 1.1 points) and N / 25 at 20,000 (by 0.5): N / 20 is the compromise
    (``benchmarks/bench_zeroshot.py`` reports the curve on the other half).

    Example:
        >>> adaptive_k(100), adaptive_k(2_195), adaptive_k(35_455)
        (5, 110, 1600)
    """
    if n_anchors < 1:
        raise ValueError(f"n_anchors must be >= 1, got {n_anchors}.")
    return int(max(1, min(k_max, -(-int(n_anchors) // int(fraction)))))


def resolve_k(k: int | str, n_anchors: int) -> int:
    """The k used with N anchors: ``k`` capped at N, or :func:`adaptive_k` for ``"auto"``.

    Example:
        >>> resolve_k(800, 300), resolve_k("auto", 3_000)
        (300, 150)
    """
    if isinstance(k, str) or k is None:
        if k != "auto":
            raise ValueError(f"k must be an integer >= 1 or 'auto', got {k!r}.")
        return min(adaptive_k(n_anchors), n_anchors)
    return min(check_k(k), n_anchors)


class Centering:
    """Subtract the anchors' mean embedding, then renormalise: ``x -> normalise(x - mean)``.

    Fit it on one modality's anchor embeddings and apply it to those anchors *and* to every
    query of that modality, so that both live in the same centred space.

    Example:
        >>> c = Centering().fit(np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> c.transform(np.array([[1.0, 0.0]])).round(3)
        array([[ 0.707, -0.707]], dtype=float32)
    """

    def fit(self, anchor_embeddings: np.ndarray) -> Centering:
        """Store the mean of the (normalised) anchor embeddings as ``mean_``."""
        self.mean_ = normalize_rows(anchor_embeddings, what="anchor embeddings").mean(axis=0)
        return self

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Normalised ``x - mean_`` for each row of ``embeddings`` (normalised first)."""
        x = normalize_rows(embeddings, what="embeddings")
        return normalize_rows(x - self.mean_[None, :], what="centred embeddings")


def k_occurrence(indices: np.ndarray, n_anchors: int) -> np.ndarray:
    """How many top-k lists each anchor appears in: ``(N,)`` counts from ``(n, k)`` indices.

    Negative indices (FAISS padding) are ignored.

    Example:
        >>> k_occurrence(np.array([[0, 1], [0, 2], [0, -1]]), 4).tolist()
        [3, 1, 1, 0]
    """
    indices = np.asarray(indices).reshape(-1)
    return np.bincount(indices[indices >= 0], minlength=n_anchors)[:n_anchors]


def anchor_k_occurrence(
    index: Any,
    k: int,
    *,
    rows: Callable[[np.ndarray], np.ndarray] | None = None,
    sample: int | None = None,
) -> np.ndarray:
    """k-occurrence of each anchor among the top-k lists of (a random sample of) the anchors.

    The sample holds ``min(N, 4096)`` anchors (seed 0), fewer where N is so large that its
    search would cost more than about 2e12 flops (at least 256): the counts only need to
    rank anchors by how hub-like they are.

    Args:
        index: an index over one modality's anchors (:class:`asif.index.AnchorSearch`).
        k: list length (as used for the relative vectors).
        rows: ``rows(positions) -> (m, d)`` anchor vectors as the index holds them; default
            ``index.rows``.
        sample: anchors searched; ``None``: the rule above.

    Example:
        >>> from asif.index import AnchorIndex
        >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
        >>> anchor_k_occurrence(AnchorIndex(x), k=2).tolist()
        [1, 3, 2]
    """
    counts = anchor_k_occurrences(index, [k], rows=rows, sample=sample)
    return counts[min(int(k), index.n)]


def anchor_k_occurrences(
    index: Any,
    ks: Sequence[int],
    *,
    rows: Callable[[np.ndarray], np.ndarray] | None = None,
    sample: int | None = None,
) -> dict[int, np.ndarray]:
    """:func:`anchor_k_occurrence` for several list lengths at the cost of one search.

    The sample's anchors are searched once at the largest k; the top-k list for each smaller
    k is a prefix of it (search results are ordered by decreasing cosine, equal cosines by
    increasing position, so the prefix is exactly what a search at that k returns). Returns
    ``{k: counts}``, with each k capped at N.

    Example:
        >>> from asif.index import AnchorIndex
        >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
        >>> {k: c.tolist() for k, c in anchor_k_occurrences(AnchorIndex(x), [1, 2]).items()}
        {1: [1, 1, 1], 2: [1, 3, 2]}
    """
    n = index.n
    wanted = sorted({min(check_k(int(k)), n) for k in ks})
    if not wanted:
        raise ValueError("anchor_k_occurrences needs at least one k.")
    if sample is None:
        sample = max(256, min(_HUB_SAMPLE, int(_HUB_SAMPLE_FLOPS / (2 * n * index.d))))
    positions = np.arange(n)
    if n > sample:
        positions = np.sort(np.random.default_rng(0).choice(n, sample, replace=False))
    _, indices = index.search((rows or index.rows)(positions), wanted[-1])
    return {k: k_occurrence(indices[:, :k], n) for k in wanted}


HUB_DRIFT = 0.1
"""Fraction of the anchors that may change (added or removed) before hub counts updated by
:func:`update_hub_counts` are dropped and counted again."""


def update_hub_counts(
    counts: dict[tuple[str, int], np.ndarray],
    n: int,
    *,
    keep: np.ndarray | None = None,
    added: int = 0,
    drift: int = 0,
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """Hub counts after anchors are removed (``keep``: the mask of survivors) or ``added``.

    An approximation, not a recount (a recount searches up to 4,096 anchors over all N):
    survivors keep their counts (a list that held a removed anchor would take in its next
    neighbour, and the sample would be drawn again); added anchors get the median count of
    the others (a neutral weight; their true count is unknown without a search). Old anchors
    keep theirs. ``drift`` counts the anchors changed since the counts were exact; once it
    exceeds :data:`HUB_DRIFT` of N the counts are dropped (``{}``, drift 0), so the next query
    counts again, exactly. Entries for a k above the new N are dropped too (they no longer
    apply).

    Args:
        counts: ``{(modality, k): counts}`` of the ``n`` anchors before the change.
        n: the number of anchors before the change.
        keep: boolean mask of length ``n``, for a removal.
        added: anchors appended, for an addition.
        drift: anchors changed since the counts were last exact.

    Returns:
        (the updated counts, the new drift).

    Example:
        >>> counts = {("image", 2): np.arange(20)}
        >>> new, drift = update_hub_counts(counts, 20, keep=np.arange(20) != 3)
        >>> new[("image", 2)][:5].tolist(), drift
        ([0, 1, 2, 4, 5], 1)
        >>> new, drift = update_hub_counts(new, 19, added=1, drift=drift)
        >>> int(new[("image", 2)][-1]), drift  # the new anchor: the median of the others
        (10, 2)
        >>> update_hub_counts(new, 20, added=5, drift=drift)  # 7 of 25 changed: count again
        ({}, 0)
    """
    removed = 0 if keep is None else n - int(np.count_nonzero(keep))
    changed, size = drift + added + removed, n + added - removed
    if not counts or changed > HUB_DRIFT * size:
        return {}, 0
    out = {}
    for key, values in counts.items():
        if key[1] > size:
            continue
        values = np.asarray(values, dtype=np.int64)
        if keep is not None:
            values = values[keep]
        if added:
            median = int(np.median(values)) if values.size else 0
            values = np.concatenate([values, np.full(added, median, np.int64)])
        out[key] = values
    return out, changed


def check_hubness(alpha: float) -> float:
    """Validate a hub-weight exponent: a finite number >= 0 (0 turns hub weights off).

    Example:
        >>> check_hubness(0.5)
        0.5
    """
    if (
        isinstance(alpha, (bool, np.bool_))
        or not isinstance(alpha, (int, float, np.number))
        or not np.isfinite(alpha)
        or alpha < 0
    ):
        raise ValueError(
            f"hubness must be a finite number >= 0 (0 turns hub weights off), got {alpha!r}."
        )
    return float(alpha)


def hub_weights(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Per-anchor weights proportional to ``(count + 1) ** -alpha``, the largest one being 1.

    Only ratios matter (relative vectors are renormalised after weighting), so the weights are
    computed in log space and scaled to a maximum of 1: any ``alpha`` gives finite weights in
    (0, 1] (or underflows towards 0 for extreme ones), never NaN. alpha = 0 gives ones.

    Example:
        >>> [round(float(w), 3) for w in hub_weights(np.array([0, 0, 2]), 1.0)]
        [1.0, 1.0, 0.333]
    """
    alpha = check_hubness(alpha)
    log_c = np.log(np.asarray(counts, dtype=np.float64) + 1.0)
    return np.exp(-alpha * (log_c - log_c.min()))
