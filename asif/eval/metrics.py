"""Classification and retrieval metrics on score matrices (pure numpy).

Ties are broken like ``argmax``: among equal scores the lower index ranks first, so a row of
all-equal scores is never counted as a free hit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "mean_per_class_accuracy",
    "most_confused",
    "rank_of",
    "recall_at_k",
    "top_k_accuracy",
]


def rank_of(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of column ``targets[i]`` in row ``i`` of ``scores`` (0 = what argmax picks).

    Example:
        >>> rank_of(np.array([[0.1, 0.9, 0.5], [0.2, 0.2, 0.2]]), np.array([2, 1])).tolist()
        [1, 1]
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    target_scores = scores[rows, targets][:, None]
    columns = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_scores) | ((scores == target_scores) & (columns < targets[:, None]))
    return ahead.sum(axis=1)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose true label is among the k best-scoring classes.

    Example:
        >>> top_k_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), k=1)
        0.5
    """
    return float(np.mean(rank_of(scores, labels) < k))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class.

    Example:
        >>> confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(labels), np.asarray(predictions)), 1)
    return out


def mean_per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> float:
    """Mean over the classes present in ``labels`` of each class's accuracy.

    Example:
        >>> mean_per_class_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
        0.5
    """
    confusion = confusion_matrix(labels, predictions, n_classes)
    support = confusion.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def most_confused(
    confusion: np.ndarray, classnames: Sequence[str], top: int = 5
) -> list[tuple[str, str, int]]:
    """The ``top`` largest off-diagonal cells as (true class, predicted class, count).

    Example:
        >>> most_confused(np.array([[5, 3], [1, 4]]), ["cat", "dog"], top=1)
        [('cat', 'dog', 3)]
    """
    off = np.array(confusion, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    cells = [np.unravel_index(i, off.shape) for i in order]
    return [(classnames[t], classnames[p], int(off[t, p])) for t, p in cells if off[t, p] > 0]


def recall_at_k(
    scores: np.ndarray,
    query_groups: np.ndarray,
    gallery_groups: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, float]:
    """Retrieval recall@k: the fraction of queries with a relevant item among their k best.

    Query ``i`` and gallery item ``j`` are relevant to each other when
    ``query_groups[i] == gallery_groups[j]`` (e.g. the image id a caption belongs to).

    Example:
        >>> s = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
        >>> recall_at_k(s, np.array([7, 8]), np.array([8, 7, 8]), ks=(1, 2))
        {1: 0.0, 2: 0.5}
    """
    scores = np.asarray(scores)
    query_groups = np.asarray(query_groups)
    gallery_groups = np.asarray(gallery_groups)
    relevant = query_groups[:, None] == gallery_groups[None, :]
    if not relevant.any(axis=1).all():
        raise ValueError("some queries have no relevant item in the gallery; recall is undefined.")
    # Best rank of a relevant item: count the items ranked ahead of the best relevant one.
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    first_best = np.argmax(relevant & (scores == best), axis=1)
    ranks = rank_of(scores, first_best)
    return {int(k): float(np.mean(ranks < k)) for k in ks}
