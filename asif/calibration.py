"""Probabilities from zero-shot scores: a softmax temperature chosen on held-out labelled data.

A zero-shot class score is an inner product of relative vectors, in [0, 1]; ``softmax(scores /
T)`` turns scores into probabilities, and only ``T`` decides whether a probability of 0.8 means
"right four times in five". :func:`choose_temperature` picks the ``T`` with the lowest expected
calibration error (:func:`expected_calibration_error`) on labelled images the model did not see
while being built, to be reported on other images.

Example:
    >>> scores = np.array([[0.30, 0.10], [0.20, 0.25], [0.40, 0.10], [0.12, 0.10]])
    >>> labels = np.array([0, 1, 0, 1])
    >>> round(expected_calibration_error(softmax(scores, 0.01), labels), 3)
    0.222
    >>> t = choose_temperature(scores, labels)
    >>> expected_calibration_error(softmax(scores, t), labels) < 0.222
    True
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_TEMPERATURE",
    "TEMPERATURE_GRID",
    "choose_temperature",
    "expected_calibration_error",
    "softmax",
]

DEFAULT_TEMPERATURE = 0.01
"""The fixed temperature asif used before calibration: a space's default until one is chosen."""

TEMPERATURE_GRID = np.geomspace(1e-4, 1.0, 161)
"""Where :func:`choose_temperature` looks: 1e-4 to 1, 40 steps per decade."""


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise ``softmax(scores / temperature)`` in float64; rows sum to 1.

    Example:
        >>> softmax(np.array([[0.2, 0.1]]), 0.1).round(3)
        array([[0.731, 0.269]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    logits = np.asarray(scores, dtype=np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: ``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|`` over
    ``n_bins`` equal-width bins of the top probability (Guo et al. 2017).

    Args:
        proba: (n, C) probabilities.
        labels: (n,) true class indices.
        n_bins: confidence bins over [0, 1].

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
        0.35
    """
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(labels)
    if proba.ndim != 2 or labels.shape != (proba.shape[0],) or proba.shape[0] == 0:
        raise ValueError(
            f"need (n, C) probabilities and n labels, got {proba.shape} and {labels.shape}."
        )
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return round(float(np.abs(gap).sum() / len(labels)), 12)


def choose_temperature(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    n_bins: int = 15,
    grid: np.ndarray | None = None,
) -> float:
    """The temperature of ``grid`` (default :data:`TEMPERATURE_GRID`) whose softmax has the
    lowest expected calibration error on these labelled scores; ties go to the larger
    temperature (the less confident choice).

    Choose it on a tuning split and report the ECE on another: on the data it was chosen
    on, the ECE is optimistic.

    Args:
        scores: (n, C) zero-shot scores of labelled held-out images.
        labels: (n,) their true class indices.
        n_bins: ECE bins.
        grid: candidate temperatures.
    """
    grid = TEMPERATURE_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    errors = [expected_calibration_error(softmax(scores, t), labels, n_bins) for t in grid]
    best = np.flatnonzero(np.asarray(errors) == min(errors))
    return float(grid[best[-1]])
