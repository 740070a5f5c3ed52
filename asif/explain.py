"""Explanations: which anchor pairs make a score.

Every axis of an ASIF space is one anchor pair, and a score is the inner product of two sparse
relative vectors, so it splits exactly into one contribution per anchor: ``a[j] * b[j]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from asif.anchors import AnchorSet

if TYPE_CHECKING:  # a space is only called, never imported: explain sits below it
    from asif.snapshot import SpaceLike

__all__ = [
    "Contribution",
    "Explanation",
    "anchor_contributions",
    "explain_similarity",
    "explain_vectors",
]


@dataclass(frozen=True)
class Contribution:
    """One anchor pair's part of a score."""

    anchor_id: int
    caption: str | None
    image_path: str | None
    value: float
    """This anchor's term of the score (they sum to the score)."""
    share: float
    """``value / score`` (0 where the score is 0)."""


@dataclass(frozen=True)
class Explanation:
    """A score and the anchor pairs behind it, largest contribution first."""

    score: float
    contributions: list[Contribution] = field(default_factory=list)
    label: str | None = None
    against: str | None = None

    def __str__(self) -> str:
        head = f"score {self.score:.4f}"
        if self.label is not None:
            head = f"{self.label!r}: {head}"
            if self.against is not None:
                head += f" (margin over {self.against!r})"
        lines = [head]
        for c in self.contributions:
            caption = c.caption if c.caption is not None else ""
            lines.append(f"  {c.share:7.1%}  anchor {c.anchor_id:>7}  {caption}")
        return "\n".join(lines)


def anchor_contributions(a: sp.csr_array, b: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of ``a[0] * b[0]`` where both are non-zero.

    Example:
        >>> a = sp.csr_array(np.array([[0.6, 0.8, 0.0]]))
        >>> b = sp.csr_array(np.array([[1.0, 0.0, 0.0]]))
        >>> pos, val = anchor_contributions(a, b)
        >>> pos.tolist(), val.round(2).tolist()
        ([0], [0.6])
    """
    product = sp.csr_array(a[[0]]).multiply(sp.csr_array(b[[0]])).tocsr()
    product.eliminate_zeros()
    return product.indices.astype(np.int64), product.data.astype(np.float64)


def explain_vectors(
    a: sp.csr_array,
    b: sp.csr_array,
    anchors: AnchorSet,
    *,
    top: int | None = 5,
    label: str | None = None,
    against: str | None = None,
) -> Explanation:
    """Explain ``a[0] · b[0]`` by the anchors it is made of (``b`` may hold a difference of vectors).

    Args:
        a: (1, N) relative vector of the query.
        b: (1, N) vector it is scored against.
        anchors: the anchor set both live on (for ids, captions and image paths).
        top: how many contributions to keep (``None``: all of them, which sum to the score).
        label: what the score is of (a class name), for printing.
        against: the class the score is a margin over, for printing.
    """
    positions, values = anchor_contributions(a, b)
    score = float(values.sum())
    order = np.argsort(-values, kind="stable")
    if top is not None:
        order = order[:top]
    contributions = [
        Contribution(
            anchor_id=int(anchors.ids[positions[i]]),
            caption=None if anchors.captions is None else anchors.captions[positions[i]],
            image_path=None if anchors.image_paths is None else anchors.image_paths[positions[i]],
            value=float(values[i]),
            share=float(values[i] / score) if score != 0 else 0.0,
        )
        for i in order
    ]
    return Explanation(score=score, contributions=contributions, label=label, against=against)


def explain_similarity(
    space: SpaceLike, image: Any, text: Any, *, top: int | None = 5
) -> Explanation:
    """Explain ``space.similarity([image], [text])`` by the anchor pairs it is made of.

    The score is the inner product of the image's relative vector (its nearest anchor *images*)
    and the text's (its nearest anchor *captions*): an anchor pair contributes when its image
    looks like the image and its caption reads like the text.

    Args:
        space: a space with anchors.
        image: one image (a path or PIL image) or its (d,) / (1, d) embedding.
        text: one text or its (d,) / (1, d) embedding.
        top: how many contributions to keep (``None``: all; they then sum to the score).

    Returns:
        An :class:`Explanation` labelled with the text (when it is a string).

    Example:
        >>> from asif import RelativeSpace
        >>> anchors = AnchorSet(np.eye(3), np.eye(3), captions=["a cat", "a dog", "a car"])
        >>> space = RelativeSpace(k=1, p=1).set_anchors(anchors)
        >>> e = space.explain_similarity(np.array([1.0, 0.1, 0.0]), np.array([0.9, 0.0, 0.1]))
        >>> e.contributions[0].caption, round(e.score, 3)
        ('a cat', 1.0)
    """
    snap = space.snapshot()
    image_vector = snap.transform(space.encode_images(_one(image, "image")), "image")
    text_vector = snap.transform(space.encode_texts(_one(text, "text")), "text")
    label = text if isinstance(text, str) else None
    return explain_vectors(image_vector, text_vector, snap.anchors, top=top, label=label)


def _one(x: Any, modality: str) -> Any:
    """One input as a batch of one: a (1, d) array or a one-item list."""
    if isinstance(x, np.ndarray) and x.dtype != object and x.dtype != np.uint8:
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[0] != 1:
            raise ValueError(f"expected one {modality} embedding, got shape {x.shape}.")
        return x
    if isinstance(x, (list, tuple)):
        raise ValueError(f"expected one {modality}, got a {type(x).__name__}: pass one item.")
    if isinstance(x, os.PathLike):
        return [os.fspath(x)]
    return [x]
