"""A slow, obvious, dense numpy version of ASIF, for tests to compare against."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_relative(queries: np.ndarray, anchors: np.ndarray, k: int, p: float) -> np.ndarray:
    """(n, N) float64: normalise(max(top_k(cosines), 0) ** p), everything else 0."""
    cos = unit(queries) @ unit(anchors).T
    k = min(k, anchors.shape[0])
    out = np.zeros_like(cos)
    for row, c in enumerate(cos):
        top = np.argsort(-c, kind="stable")[:k]
        out[row, top] = np.maximum(c[top], 0.0) ** p
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def dense_topk_support(queries: np.ndarray, anchors: np.ndarray, k: int) -> list[set[int]]:
    """Per query, the columns a top-k relative vector may hold: top-k with a positive cosine."""
    cos = unit(queries) @ unit(anchors).T
    k = min(k, anchors.shape[0])
    supports = []
    for c in cos:
        top = np.argsort(-c, kind="stable")[:k]
        supports.append(set(top[c[top] > 0].tolist()))
    return supports


def dense_zero_shot_scores(
    image_rel: np.ndarray, prompt_rel: np.ndarray, n_classes: int, combine: str
) -> np.ndarray:
    """(n_images, n_classes) scores from dense relative vectors of images and of the prompts."""
    n_templates = prompt_rel.shape[0] // n_classes
    per_class = prompt_rel.reshape(n_classes, n_templates, -1)
    if combine == "max":
        return (image_rel @ prompt_rel.T).reshape(-1, n_classes, n_templates).max(axis=2)
    mean = per_class.mean(axis=1)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    mean = np.divide(mean, norms, out=np.zeros_like(mean), where=norms > 0)
    return image_rel @ mean.T


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))
