"""The label-transfer baseline: the same anchors and embeddings, no relative representation.

For an image x with its ``k`` nearest anchor images ``NN_k(x)`` (cosine of the image
embeddings, ties broken by anchor position):

- classification: each anchor pair j gets the label ``l_j = argmax_c cos(t_j, e_c)``, where
  ``t_j`` is its caption's embedding and ``e_c`` the normalised mean embedding of class c's
  prompts; then ``score(x, c) = sum_{j in NN_k(x), l_j = c} max(cos(x, i_j), 0)``: the nearest
  anchor images vote for the class their caption is closest to, weighted by their similarity.
- retrieval, image -> text: ``score(x, y) = sum_{j in NN_k(x)} max(cos(x, i_j), 0) cos(t_j, y)``
  (the neighbours' captions vouch for the text y); text -> image is the mirror image, with the
  ``k`` nearest anchor captions of the query text and ``cos(i_j, x)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from asif.anchors import AnchorSet
from asif.index import AnchorIndex
from asif.relative import check_k, normalize_rows

__all__ = ["check_prompts", "label_transfer_retrieval", "label_transfer_scores"]


def check_prompts(prompts: np.ndarray) -> tuple[int, int]:
    """(C, T) of a (C, T, d) prompt-embedding array; anything else is a ValueError.

    Example:
        >>> check_prompts(np.zeros((10, 18, 384)))
        (10, 18)
    """
    if np.ndim(prompts) != 3:
        raise ValueError(
            f"prompt embeddings must have shape (n_classes, n_templates, d), got "
            f"{np.shape(prompts)}."
        )
    return int(prompts.shape[0]), int(prompts.shape[1])


def label_transfer_scores(
    images: np.ndarray, prompts: np.ndarray, anchors: AnchorSet, k: int = 20
) -> np.ndarray:
    """The label-transfer baseline's class scores (n_images, C); see the module docstring.

    Args:
        images: (n, d_image) image embeddings.
        prompts: (C, T, d_text) prompt embeddings.
        anchors: the anchor pairs.
        k: nearest anchor images that vote (capped at N).

    Example:
        >>> anchors = AnchorSet(np.array([[1.0, 0], [0.8, 0.6], [0, 1]]), np.array([[1.0, 0], [0, 1], [0, 1]]))
        >>> prompts = np.array([[[1.0, 0]], [[0, 1.0]]])   # class 0 ~ caption 0, class 1 ~ 1
        >>> print(label_transfer_scores(np.array([[1.0, 0]]), prompts, anchors, k=2))
        [[1.  0.8]]
    """
    check_prompts(prompts)
    k = min(check_k(k), len(anchors))
    class_embeddings = normalize_rows(np.asarray(prompts, dtype=np.float32).mean(axis=1))
    captions = np.asarray(anchors.text_embeddings, dtype=np.float32)
    labels = np.argmax(captions @ class_embeddings.T, axis=1)
    cosines, indices = AnchorIndex(anchors.blocks("image"), gpu=False).search(
        normalize_rows(images, what="image embeddings"), k
    )
    weights = np.maximum(cosines, 0.0)
    scores = np.zeros((cosines.shape[0], class_embeddings.shape[0]), dtype=np.float64)
    rows = np.repeat(np.arange(cosines.shape[0]), k)
    valid = indices.reshape(-1) >= 0
    np.add.at(scores, (rows[valid], labels[indices.reshape(-1)[valid]]), weights.reshape(-1)[valid])
    return scores.astype(np.float32)


def label_transfer_retrieval(
    images: np.ndarray,
    texts: np.ndarray,
    anchors: AnchorSet,
    k: int = 20,
    direction: Literal["image_to_text", "text_to_image"] = "image_to_text",
) -> np.ndarray:
    """The baseline's retrieval scores, always shaped (n_images, n_texts); see the module docstring.

    Example:
        >>> anchors = AnchorSet(np.eye(2), np.eye(2))
        >>> label_transfer_retrieval(np.eye(2), np.eye(2), anchors, k=1).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    k = min(check_k(k), len(anchors))
    images = normalize_rows(images, what="image embeddings")
    texts = normalize_rows(texts, what="text embeddings")
    if direction == "image_to_text":
        queries, own, other, gallery = (
            images,
            anchors.image_embeddings,
            anchors.text_embeddings,
            texts,
        )
    elif direction == "text_to_image":
        queries, own, other, gallery = (
            texts,
            anchors.text_embeddings,
            anchors.image_embeddings,
            images,
        )
    else:
        raise ValueError(
            f"direction must be 'image_to_text' or 'text_to_image', got {direction!r}."
        )
    cosines, indices = AnchorIndex(own, gpu=False).search(queries, k)
    weights = np.maximum(cosines, 0.0).astype(np.float32)
    other = np.asarray(other, dtype=np.float32)
    scores = np.zeros((queries.shape[0], gallery.shape[0]), dtype=np.float32)
    for start in range(0, queries.shape[0], 256):  # memory: (256 * k, n_gallery) at most
        block = indices[start : start + 256]
        used, local = np.unique(np.maximum(block, 0), return_inverse=True)
        neighbour_scores = other[used] @ gallery.T  # (used, n_gallery)
        w = np.where(block >= 0, weights[start : start + 256], 0.0)
        rows = neighbour_scores[local.reshape(block.shape)]  # (chunk, k, n_gallery)
        scores[start : start + 256] = np.einsum("qk,qkg->qg", w, rows)
    return scores if direction == "image_to_text" else scores.T
