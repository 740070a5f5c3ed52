"""``AnchorSet``: the paired image and text embeddings that define the axes of an ASIF space.

Anchor ``i`` is one image-caption pair: row ``i`` of ``image_embeddings`` and of ``text_embeddings``,
caption ``captions[i]`` and a stable integer id ``ids[i]``. This module holds and checks them; it never
runs an encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asif.relative import normalize_rows

__all__ = ["AnchorSet"]


class AnchorSet:
    """Paired, L2-normalised image and text embeddings of N anchor pairs.

    Args:
        image_embeddings: (N, d_image) array; rows are normalised on the way in.
        text_embeddings: (N, d_text) array, row i describing the same pair as image row i.
        captions: optional N captions (kept for explanations).
        ids: optional N unique integer ids (default ``0..N-1``); stable across add/remove.
        image_paths: optional N image file paths (kept for explanations).
        image_encoder: name of the encoder that made ``image_embeddings``, if known.
        text_encoder: name of the encoder that made ``text_embeddings``, if known.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anchors = AnchorSet(rng.normal(size=(4, 8)), rng.normal(size=(4, 3)), captions=list("abcd"))
        >>> len(anchors), anchors.image_dim, anchors.text_dim
        (4, 8, 3)
    """

    def __init__(
        self,
        image_embeddings: np.ndarray,
        text_embeddings: np.ndarray,
        captions: Sequence[str] | None = None,
        ids: Sequence[int] | np.ndarray | None = None,
        image_paths: Sequence[str] | None = None,
        image_encoder: str | None = None,
        text_encoder: str | None = None,
    ) -> None:
        images = normalize_rows(image_embeddings, what="image_embeddings")
        texts = normalize_rows(text_embeddings, what="text_embeddings")
        n = images.shape[0]
        if texts.shape[0] != n:
            raise ValueError(
                f"image_embeddings has {n} rows but text_embeddings has {texts.shape[0]}: "
                "each anchor is one image-caption pair, so both need the same N."
            )
        self.image_embeddings = images
        self.text_embeddings = texts
        self.captions = _optional_strings(captions, n, "captions")
        self.image_paths = _optional_strings(image_paths, n, "image_paths")
        self.ids = _check_ids(ids, n)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder

    def __len__(self) -> int:
        return self.image_embeddings.shape[0]

    def __repr__(self) -> str:
        return (
            f"AnchorSet(n={len(self)}, image_dim={self.image_dim}, text_dim={self.text_dim}, "
            f"image_encoder={self.image_encoder!r}, text_encoder={self.text_encoder!r})"
        )

    @property
    def image_dim(self) -> int:
        """Dimension of the image embeddings."""
        return self.image_embeddings.shape[1]

    @property
    def text_dim(self) -> int:
        """Dimension of the text embeddings."""
        return self.text_embeddings.shape[1]

    def positions(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of the given anchor ids; an unknown id is a ``KeyError`` naming it.

        Example:
            >>> a = AnchorSet(np.eye(3), np.eye(3), ids=[10, 20, 30])
            >>> a.positions([30, 10]).tolist()
            [2, 0]
        """
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self.ids, kind="stable")
        found = np.searchsorted(self.ids, wanted, sorter=order)
        found = np.minimum(found, len(self) - 1)
        pos = order[found]
        missing = self.ids[pos] != wanted
        if missing.any():
            raise KeyError(f"unknown anchor ids: {wanted[missing][:10].tolist()} (first 10 shown).")
        return pos

    def select(self, rows: Sequence[int] | np.ndarray) -> AnchorSet:
        """A new AnchorSet with the given row positions (or a boolean mask), ids kept.

        Example:
            >>> a = AnchorSet(np.eye(3), np.eye(3))
            >>> a.select([2, 0]).ids.tolist()
            [2, 0]
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {rows.shape}.")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        return AnchorSet(
            self.image_embeddings[rows],
            self.text_embeddings[rows],
            captions=None if self.captions is None else [self.captions[i] for i in rows],
            ids=self.ids[rows],
            image_paths=None if self.image_paths is None else [self.image_paths[i] for i in rows],
            image_encoder=self.image_encoder,
            text_encoder=self.text_encoder,
        )

    def concat(self, other: AnchorSet) -> AnchorSet:
        """Append ``other``'s anchors; ids must not collide and both must come from one encoder pair.

        Example:
            >>> a = AnchorSet(np.eye(2), np.eye(2))
            >>> b = AnchorSet(np.eye(2), np.eye(2), ids=[5, 6])
            >>> a.concat(b).ids.tolist()
            [0, 1, 5, 6]
        """
        if (self.image_dim, self.text_dim) != (other.image_dim, other.text_dim):
            raise ValueError(
                f"cannot concatenate anchor sets of dims {(self.image_dim, self.text_dim)} and "
                f"{(other.image_dim, other.text_dim)}: they come from different encoders."
            )
        for side in ("image_encoder", "text_encoder"):
            mine, theirs = getattr(self, side), getattr(other, side)
            if mine and theirs and mine != theirs:
                raise ValueError(
                    f"cannot concatenate anchors made by {side} {mine!r} and {theirs!r}."
                )
        return AnchorSet(
            np.concatenate([self.image_embeddings, other.image_embeddings]),
            np.concatenate([self.text_embeddings, other.text_embeddings]),
            captions=_concat_optional(self.captions, other.captions, len(self), len(other)),
            ids=np.concatenate([self.ids, other.ids]),
            image_paths=_concat_optional(
                self.image_paths, other.image_paths, len(self), len(other)
            ),
            image_encoder=self.image_encoder or other.image_encoder,
            text_encoder=self.text_encoder or other.text_encoder,
        )


def _optional_strings(values: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise ValueError(f"{what} must be a sequence of N strings, not one string.")
    values = [str(v) for v in values]
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries but there are {n} anchors.")
    return values


def _check_ids(ids: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise ValueError(f"ids must have shape ({n},), got {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if np.unique(arr).size != n:
        raise ValueError("ids must be unique: each anchor needs its own id.")
    return arr


def _concat_optional(
    a: list[str] | None, b: list[str] | None, na: int, nb: int
) -> list[str] | None:
    if a is None and b is None:
        return None
    return (a if a is not None else [""] * na) + (b if b is not None else [""] * nb)
