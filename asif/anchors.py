"""``AnchorSet``: the paired image and text embeddings that define the axes of an ASIF space.

Anchor ``i`` is one image-caption pair: row ``i`` of ``image_embeddings`` and of ``text_embeddings``,
caption ``captions[i]`` and a stable integer id ``ids[i]``. This module holds and checks them, and
saves and loads them (see :meth:`AnchorSet.save`); it never runs an encoder.

On disk an anchor set is a folder::

    manifest.json            format, format_version, n, image_dim, text_dim, dtype, encoder names,
                             and {"sha256", "bytes"} of every other file
    image_embeddings.npy     (N, d_image) float32 or float16, memory-mapped on load
    text_embeddings.npy      (N, d_text)
    ids.jsonl                one integer id per line
    captions.jsonl           one JSON string per line (only if the set has captions)
    image_paths.jsonl        likewise (only if the set has image paths)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asif import storage
from asif.relative import normalize_rows

__all__ = ["AnchorSet", "RowSource"]

FORMAT = "asif-anchors"
FORMAT_VERSION = 1
_DTYPES = ("float32", "float16")
_CHUNK_ROWS = 1 << 16


@runtime_checkable
class RowSource(Protocol):
    """Anchor rows held elsewhere (e.g. an :class:`asif.index.AnchorIndex`), read on demand.

    ``AnchorSet`` takes one in place of an embedding array without copying or checking it: its
    rows are trusted to be unit vectors. ``vectors()`` gives all rows as one array (built once,
    on first access); ``iter_vectors()`` gives them block by block.
    """

    n: int
    d: int

    def vectors(self) -> np.ndarray: ...

    def iter_vectors(self) -> Iterator[np.ndarray]: ...


class AnchorSet:
    """Paired, L2-normalised image and text embeddings of N anchor pairs.

    Args:
        image_embeddings: (N, d_image) array; rows are normalised on the way in. A
            :class:`RowSource` (an index that keeps its vectors) is taken as it is.
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
        images, n, d_image = _rows_of(image_embeddings, "image_embeddings")
        texts, n_texts, d_text = _rows_of(text_embeddings, "text_embeddings")
        if n_texts != n:
            raise ValueError(
                f"image_embeddings has {n} rows but text_embeddings has {n_texts}: "
                "each anchor is one image-caption pair, so both need the same N."
            )
        self._setup(
            images,
            texts,
            (d_image, d_text),
            ids=_check_ids(ids, n),
            captions=_optional_strings(captions, n, "captions"),
            image_paths=_optional_strings(image_paths, n, "image_paths"),
            image_encoder=image_encoder,
            text_encoder=text_encoder,
        )

    def _setup(
        self,
        images: np.ndarray | RowSource,
        texts: np.ndarray | RowSource,
        dims: tuple[int, int],
        *,
        ids: np.ndarray,
        captions: list[str] | None,
        image_paths: list[str] | None,
        image_encoder: str | None,
        text_encoder: str | None,
    ) -> None:
        self._rows: dict[str, np.ndarray | RowSource] = {"image": images, "text": texts}
        self._dims = dims
        self._lock = threading.Lock()
        self._id_order: np.ndarray | None = None
        self.ids = ids
        self.captions = captions
        self.image_paths = image_paths
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder

    @classmethod
    def _trusted(
        cls,
        images: np.ndarray | RowSource,
        texts: np.ndarray | RowSource,
        dims: tuple[int, int],
        **metadata: Any,
    ) -> AnchorSet:
        """An AnchorSet from parts already checked (no copy, no normalisation): for loaders."""
        anchors = object.__new__(cls)
        anchors._setup(images, texts, dims, **metadata)
        return anchors

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __repr__(self) -> str:
        return (
            f"AnchorSet(n={len(self)}, image_dim={self.image_dim}, text_dim={self.text_dim}, "
            f"image_encoder={self.image_encoder!r}, text_encoder={self.text_encoder!r})"
        )

    @property
    def image_embeddings(self) -> np.ndarray:
        """(N, d_image) unit rows: float32, or float16 when loaded from a float16 save."""
        return self._materialize("image")

    @property
    def text_embeddings(self) -> np.ndarray:
        """(N, d_text) unit rows, row i describing the same pair as image row i."""
        return self._materialize("text")

    @property
    def image_dim(self) -> int:
        """Dimension of the image embeddings."""
        return self._dims[0]

    @property
    def text_dim(self) -> int:
        """Dimension of the text embeddings."""
        return self._dims[1]

    @property
    def dtype(self) -> np.dtype:
        """The dtype the embeddings are held in (float32, or float16 from a float16 save)."""
        rows = self._rows["image"]
        return rows.dtype if isinstance(rows, np.ndarray) else np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of both embedding arrays, as held."""
        return len(self) * (self.image_dim + self.text_dim) * self.dtype.itemsize

    def _materialize(self, side: str) -> np.ndarray:
        rows = self._rows[side]
        if isinstance(rows, np.ndarray):
            return rows
        with self._lock:  # after add/remove: gathered from the index once, on first access
            rows = self._rows[side]
            if not isinstance(rows, np.ndarray):
                rows = self._rows[side] = rows.vectors()
            return rows

    def blocks(self, modality: str) -> list[np.ndarray]:
        """One modality's embeddings as row blocks, read in place (no copy of an array).

        Example:
            >>> [b.shape for b in AnchorSet(np.eye(3), np.eye(3)).blocks("image")]
            [(3, 3)]
        """
        if modality not in self._rows:
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
        rows = self._rows[modality]
        if isinstance(rows, np.ndarray):
            return [rows]
        with self._lock:
            rows = self._rows[modality]
        return [rows] if isinstance(rows, np.ndarray) else list(rows.iter_vectors())

    def _iter_rows(self, side: str) -> Iterator[np.ndarray]:
        for block in self.blocks(side):
            for start in range(0, block.shape[0], _CHUNK_ROWS):
                yield block[start : start + _CHUNK_ROWS]

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
        """Write this set to the folder ``path`` atomically; returns the path.

        The folder is written beside ``path`` and renamed into place only once every file is on
        disk, so an exception or a crash mid-save leaves a previous set at ``path`` unchanged.
        Memory stays at one chunk of rows, whatever N.

        Args:
            path: the folder (created, or replaced if it holds a saved asif anchor set).
            dtype: ``"float32"``, or ``"float16"`` to halve the files and the memory of a
                loaded set (search still computes in float32; cosines change by ~1e-3).

        Example:
            >>> import tempfile
            >>> a = AnchorSet(np.eye(3), np.eye(3), captions=["x", "y", "z"])
            >>> folder = a.save(Path(tempfile.mkdtemp()) / "anchors")
            >>> b = AnchorSet.load(folder)
            >>> b.captions, bool((b.image_embeddings == a.image_embeddings).all())
            (['x', 'y', 'z'], True)
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
        n = len(self)
        with storage.atomic_folder(path) as tmp:
            files = {
                "image_embeddings.npy": storage.write_npy(
                    tmp / "image_embeddings.npy",
                    (n, self.image_dim),
                    dtype,
                    self._iter_rows("image"),
                ),
                "text_embeddings.npy": storage.write_npy(
                    tmp / "text_embeddings.npy", (n, self.text_dim), dtype, self._iter_rows("text")
                ),
                "ids.jsonl": storage.write_jsonl(tmp / "ids.jsonl", self.ids.tolist()),
            }
            for name, column in (("captions", self.captions), ("image_paths", self.image_paths)):
                if column is not None:
                    files[f"{name}.jsonl"] = storage.write_jsonl(tmp / f"{name}.jsonl", column)
            storage.write_json(tmp / storage.MANIFEST, self._manifest(dtype, files))
        return Path(path)

    def _manifest(self, dtype: str, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n": len(self),
            "image_dim": self.image_dim,
            "text_dim": self.text_dim,
            "dtype": dtype,
            "image_encoder": self.image_encoder,
            "text_encoder": self.text_encoder,
            "files": files,
        }

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool | None = None
    ) -> AnchorSet:
        """Load a set written by :meth:`save`, checking it against its manifest.

        Args:
            path: the folder.
            mmap: memory-map the embeddings (read-only, paged in on use) instead of reading them.
            verify: check every file's sha256. ``None`` (default) verifies sets of at most 1 GiB
                of files; hashing reads every byte once (about 1-2 s per GB on one core, e.g.
                ~7 s for a million 1280 + 384-d float32 anchors), so it is off by default for
                large sets, where missing or truncated files are still detected (sizes are always
                checked).

        Raises:
            FileNotFoundError: ``path`` is not a saved anchor set.
            asif.storage.AnchorFileError: a file is missing, truncated or altered.
        """
        folder = Path(path)
        manifest = storage.read_manifest(folder, FORMAT, FORMAT_VERSION)
        try:
            n, dims, dtype = (
                manifest["n"],
                (manifest["image_dim"], manifest["text_dim"]),
                manifest["dtype"],
            )
            files = manifest["files"]
            encoders = manifest["image_encoder"], manifest["text_encoder"]
        except KeyError as error:
            raise storage.AnchorFileError(f"{folder / storage.MANIFEST} lacks {error}.") from error
        if dtype not in _DTYPES:
            raise storage.AnchorFileError(f"{folder} has unsupported dtype {dtype!r}.")
        storage.check_files(folder, files, verify)
        images = storage.load_npy(folder / "image_embeddings.npy", (n, dims[0]), dtype, mmap=mmap)
        texts = storage.load_npy(folder / "text_embeddings.npy", (n, dims[1]), dtype, mmap=mmap)
        ids = np.asarray(storage.read_jsonl(folder / "ids.jsonl", n), dtype=np.int64)
        columns = {
            name: storage.read_jsonl(folder / f"{name}.jsonl", n)
            if f"{name}.jsonl" in files
            else None
            for name in ("captions", "image_paths")
        }
        return cls._trusted(
            images,
            texts,
            dims,
            ids=ids,
            image_encoder=encoders[0],
            text_encoder=encoders[1],
            **columns,
        )

    def positions(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of the given anchor ids; an unknown id is a ``KeyError`` naming it.

        Example:
            >>> a = AnchorSet(np.eye(3), np.eye(3), ids=[10, 20, 30])
            >>> a.positions([30, 10]).tolist()
            [2, 0]
        """
        wanted = np.asarray(ids)
        if wanted.size and not np.issubdtype(wanted.dtype, np.integer):
            raise KeyError(f"anchor ids are integers, got {wanted.dtype} values.")
        wanted = wanted.astype(np.int64).reshape(-1)
        if self._id_order is None:
            self._id_order = np.argsort(self.ids, kind="stable")
        order = self._id_order
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
        if rows.size == 0:
            raise ValueError("select needs at least one row: an anchor set cannot be empty.")
        ids = self.ids[rows]
        if np.unique(ids).size != ids.size:
            raise ValueError("select got a row more than once: ids must stay unique.")
        images, texts = self.image_embeddings[rows], self.text_embeddings[rows]
        return AnchorSet._trusted(  # rows are already unit vectors: copy, do not renormalise
            images,
            texts,
            self._dims,
            ids=ids,
            captions=None if self.captions is None else [self.captions[i] for i in rows],
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
        from asif.encoders import canonical_encoder_name

        for modality in ("image", "text"):
            mine, theirs = (
                getattr(self, f"{modality}_encoder"),
                getattr(other, f"{modality}_encoder"),
            )
            if (
                mine
                and theirs
                and canonical_encoder_name(mine, modality)
                != canonical_encoder_name(theirs, modality)
            ):
                raise ValueError(
                    f"cannot concatenate anchors made by {modality} encoders {mine!r} and "
                    f"{theirs!r}: queries and anchors must come from one encoder."
                )
        ids = _check_ids(np.concatenate([self.ids, other.ids]), len(self) + len(other))
        dtype = np.result_type(self.dtype, other.dtype)
        return AnchorSet._trusted(  # both are already unit vectors: copy, do not renormalise
            np.concatenate([self.image_embeddings, other.image_embeddings]).astype(
                dtype, copy=False
            ),
            np.concatenate([self.text_embeddings, other.text_embeddings]).astype(dtype, copy=False),
            self._dims,
            ids=ids,
            captions=_concat_optional(self.captions, other.captions, len(self), len(other)),
            image_paths=_concat_optional(
                self.image_paths, other.image_paths, len(self), len(other)
            ),
            image_encoder=self.image_encoder or other.image_encoder,
            text_encoder=self.text_encoder or other.text_encoder,
        )


def _rows_of(embeddings: Any, what: str) -> tuple[np.ndarray | RowSource, int, int]:
    """(rows, N, d): an array normalised on the way in, or a RowSource taken as it is."""
    if isinstance(embeddings, RowSource) and not isinstance(embeddings, np.ndarray):
        return embeddings, int(embeddings.n), int(embeddings.d)
    rows = normalize_rows(embeddings, what=what)
    return rows, rows.shape[0], rows.shape[1]


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
