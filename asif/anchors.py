"""``AnchorSet``: the paired image and text embeddings that define the axes of an ASIF space.

Anchor ``i`` is one image-caption pair: row ``i`` of ``image_embeddings`` and of ``text_embeddings``,
caption ``captions[i]``, a stable integer id ``ids[i]`` and optionally an image path and a source
key. A set also carries ``provenance`` (a JSON object: sources, build settings, skipped samples,
encoder versions) and optional ``hub_statistics``. This module holds and checks them and defines
their format on disk (:meth:`AnchorSet.save`, :meth:`AnchorSet.load`); it never runs an encoder.

On disk an anchor set is a folder (format ``asif-anchors`` version 2; the same for 2,000 pairs and
for 100M)::

    manifest.json            format, format_version, n, image_dim, text_dim, dtype, encoder names,
                             columns, provenance, the shards (name, n, {"bytes", "checksum"} of
                             each file), the hub statistics, and a checksum of itself
    shards/000000/           rows 0 .. n_0 - 1; then shards/000001/, ... in row order
        shard.json           this shard's n, dims, dtype, columns and file records (sealed)
        image_embeddings.npy (n_0, d_image) float32 or float16 unit rows, memory-mapped on load
        text_embeddings.npy  (n_0, d_text)
        ids.jsonl            one integer id per line (unique over the whole set)
        captions.jsonl       one JSON string per line (only if the set has captions)
        image_paths.jsonl    likewise (only if the set has image paths)
        keys.jsonl           likewise: the pairs' keys in their sources (only if the set has them)
    hub_statistics/          optional: image-k800.npy, ... int64 (n,) k-occurrence counts

Format 1 (one folder holding the files of a single shard and a manifest without its own
checksum) is still read. Shards are written one at a time, each atomically, by
:func:`write_shard`, and a set is finished by :func:`write_manifest`: ``save`` does exactly that
inside an atomic folder, and a streaming builder does the same over a long time, resuming after
a crash from :func:`completed_shards`::

    for i, batch in enumerate(batches):             # in row order; the same i for the same rows
        if i not in done:                           # done = set(completed_shards(staging))
            write_shard(staging, i, image_embeddings=..., text_embeddings=..., ids=..., ...)
    write_manifest(staging, image_encoder=..., text_encoder=..., provenance={...})
    asif.storage.replace_folder(staging, "anchors/")  # atomically, over an older set only

Loading opens the folder once and every file through it (:func:`asif.storage.load_folder`), so it
sees one complete save even while another process saves over it. Checksums of the metadata are
checked on load; those of the embeddings (with a check that rows are finite and non-zero) on the
first read of a modality's rows (``verify=None``), at load (``True``) or never (``False``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asif import storage
from asif.relative import normalize_rows
from asif.storage import AnchorFileError

__all__ = [
    "SHARD_ROWS",
    "AnchorSet",
    "RowSource",
    "completed_shards",
    "default_hub_ks",
    "hub_statistics_of",
    "write_manifest",
    "write_shard",
]

FORMAT = "asif-anchors"
FORMAT_VERSION = 2
SHARD_FORMAT = "asif-anchor-shard"
SHARD_FILE = "shard.json"
SHARD_ROWS = 1 << 20
"""Rows per shard that ``save`` writes by default (so a set below a million rows is one shard)."""
COLUMNS = ("ids", "captions", "image_paths", "keys")
"""The per-row metadata columns, one JSONL file each; ``ids`` is always present."""
MODALITIES = ("image", "text")
_EMBEDDINGS = {"image": "image_embeddings.npy", "text": "text_embeddings.npy"}
_HUBS = "hub_statistics"
_DTYPES = ("float32", "float16")
_CHUNK_ROWS = 1 << 16
_CHECK_ROWS = 1 << 13
_UNIT_TOLERANCE = 1e-2
_SHARD_NAME = re.compile(r"\d{6}")
_INT64 = np.iinfo(np.int64)


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
        captions: optional N captions (strings, kept for explanations).
        ids: optional N unique integer ids (default ``0..N-1``); stable across add/remove.
        image_paths: optional N image file paths (strings or path objects).
        image_encoder: name of the encoder that made ``image_embeddings``, if known.
        text_encoder: name of the encoder that made ``text_embeddings``, if known.
        keys: optional N keys of the pairs in their sources (strings).
        provenance: a JSON object describing where the set comes from (sources, build
            settings, skipped samples, encoder versions); kept and saved as it is.
        hub_statistics: ``{(modality, k): counts}``, each anchor's k-occurrence (int, length N),
            as :func:`asif.transforms.anchor_k_occurrence` computes it; saved with the set,
            dropped by :meth:`select` and :meth:`concat` (they no longer apply).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anchors = AnchorSet(rng.normal(size=(4, 8)), rng.normal(size=(4, 3)), captions=list("abcd"))
        >>> len(anchors), anchors.image_dim, anchors.text_dim, anchors.provenance
        (4, 8, 3, {})
    """

    def __init__(
        self,
        image_embeddings: np.ndarray,
        text_embeddings: np.ndarray,
        captions: Sequence[str] | None = None,
        ids: Sequence[int] | np.ndarray | None = None,
        image_paths: Sequence[str | os.PathLike[str]] | None = None,
        image_encoder: str | None = None,
        text_encoder: str | None = None,
        *,
        keys: Sequence[str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        hub_statistics: Mapping[tuple[str, int], np.ndarray] | None = None,
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
            image_paths=_optional_strings(image_paths, n, "image_paths", paths=True),
            keys=_optional_strings(keys, n, "keys"),
            image_encoder=_optional_name(image_encoder, "image_encoder"),
            text_encoder=_optional_name(text_encoder, "text_encoder"),
            provenance=_check_provenance(provenance),
            hub_statistics=_check_hub_statistics(hub_statistics, n),
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
        keys: list[str] | None = None,
        provenance: dict[str, Any] | None = None,
        hub_statistics: dict[tuple[str, int], np.ndarray] | None = None,
    ) -> None:
        self._rows: dict[str, np.ndarray | RowSource] = {"image": images, "text": texts}
        self._joined: dict[str, np.ndarray] = {}
        self._dims = dims
        self._lock = threading.Lock()
        self._id_order: np.ndarray | None = None
        self.ids = ids
        self.captions = captions
        self.image_paths = image_paths
        self.keys = keys
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.provenance: dict[str, Any] = {} if provenance is None else provenance
        self.hub_statistics: dict[tuple[str, int], np.ndarray] = (
            {} if hub_statistics is None else hub_statistics
        )

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
        """(N, d_image) unit rows: float32, or float16 when loaded from a float16 save.

        A set loaded from several shards joins them into one array on first access (a copy);
        :meth:`blocks` gives them without one.
        """
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
        if isinstance(rows, (np.ndarray, _ShardRows)):
            return np.dtype(rows.dtype)
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of both embedding arrays, as held."""
        return len(self) * (self.image_dim + self.text_dim) * self.dtype.itemsize

    def _materialize(self, side: str) -> np.ndarray:
        rows = self._rows[side]
        if isinstance(rows, np.ndarray):
            return rows
        with self._lock:  # shards, or an index after add/remove: joined once, on first access
            joined = self._joined.get(side)
            if joined is None:
                joined = self._joined[side] = rows.vectors()
            return joined

    def blocks(self, modality: str) -> list[np.ndarray]:
        """One modality's embeddings as row blocks, read in place (no copy of an array).

        A loaded set gives one block per shard, memory-mapped.

        Example:
            >>> [b.shape for b in AnchorSet(np.eye(3), np.eye(3)).blocks("image")]
            [(3, 3)]
        """
        if modality not in self._rows:
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
        rows = self._rows[modality]
        if isinstance(rows, np.ndarray):
            return [rows]
        if isinstance(rows, _ShardRows):
            return rows.arrays()
        with self._lock:
            joined = self._joined.get(modality)
        return [joined] if joined is not None else list(rows.iter_vectors())

    def _row_chunks(self, side: str) -> Iterator[np.ndarray]:
        """All rows of one modality in order, in chunks of at most ``_CHUNK_ROWS`` rows, read
        once (a row source's blocks are made one at a time, never all held)."""
        rows = self._rows[side]
        blocks: Iterable[np.ndarray]
        if isinstance(rows, np.ndarray):
            blocks = [rows]
        elif isinstance(rows, _ShardRows) or side in self._joined:
            blocks = self.blocks(side)
        else:
            blocks = rows.iter_vectors()
        for block in blocks:
            for start in range(0, block.shape[0], _CHUNK_ROWS):
                yield block[start : start + _CHUNK_ROWS]

    def _gather(self, side: str, rows: np.ndarray) -> np.ndarray:
        """The rows at these positions (a copy), read from each block in place."""
        blocks = self.blocks(side)
        if len(blocks) == 1:
            return np.asarray(blocks[0][rows])
        sizes = np.array([b.shape[0] for b in blocks])
        ends = np.cumsum(sizes)
        owner = np.searchsorted(ends, rows, side="right")
        out = np.empty((rows.size, blocks[0].shape[1]), np.result_type(*blocks))
        for b in np.unique(owner):
            hit = owner == b
            out[hit] = blocks[b][rows[hit] - (ends[b] - sizes[b])]
        return out

    # ----------------------------------------------------------------- files
    def save(
        self,
        path: str | os.PathLike[str],
        *,
        dtype: str = "float32",
        shard_size: int = SHARD_ROWS,
        hub_ks: Sequence[int] | str | None = None,
    ) -> Path:
        """Write this set to the folder ``path`` atomically; returns the path.

        The folder is written beside ``path`` and put in its place only once every file is on
        disk, so an exception or a crash mid-save leaves a previous set at ``path`` unchanged, and
        a process loading ``path`` meanwhile gets the old set or the new one. Memory stays at
        one chunk of rows, whatever N.

        Args:
            path: the folder (created, or replaced if it holds a saved asif folder; anything
                else there is refused with ``FileExistsError``).
            dtype: ``"float32"``, or ``"float16"`` to halve the files and the memory of a
                loaded set (search still computes in float32; cosines change by ~1e-3).
            shard_size: rows per shard (the last one may hold fewer).
            hub_ks: also compute and store the hub statistics for these k
                (:meth:`compute_hub_statistics`; ``"default"``: :func:`default_hub_ks`), so
                that a space that loads the set needs no search to weight its hubs. ``None``
                stores the ones the set has.

        Example:
            >>> import tempfile
            >>> a = AnchorSet(np.eye(3), np.eye(3), captions=["x", "y", "z"])
            >>> folder = a.save(Path(tempfile.mkdtemp()) / "anchors", shard_size=2)
            >>> b = AnchorSet.load(folder)
            >>> b.captions, [x.shape[0] for x in b.blocks("image")]
            (['x', 'y', 'z'], [2, 1])
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
        if type(shard_size) is not int or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
        n = len(self)
        hubs = self.hub_statistics
        if hub_ks is not None:
            hubs = {**hubs, **self.compute_hub_statistics(hub_ks)}
        streams = {m: _RowStream(self._row_chunks(m)) for m in MODALITIES}
        with storage.atomic_folder(path) as tmp:
            for index, start in enumerate(range(0, n, shard_size)):
                stop = min(n, start + shard_size)
                columns = {
                    name: None if values is None else values[start:stop]
                    for name, values in self._columns().items()
                }
                write_shard(
                    tmp,
                    index,
                    image_embeddings=streams["image"].take(stop - start),
                    text_embeddings=streams["text"].take(stop - start),
                    ids=self.ids[start:stop],
                    dtype=dtype,
                    **columns,
                )
            write_manifest(
                tmp,
                image_encoder=self.image_encoder,
                text_encoder=self.text_encoder,
                provenance=self.provenance,
                hub_statistics=hubs,
            )
        return Path(path)

    def compute_hub_statistics(
        self, ks: Sequence[int] | str = "default"
    ) -> dict[tuple[str, int], np.ndarray]:
        """Each anchor's k-occurrence per modality for the given k (:func:`hub_statistics_of`).

        The counts are what :class:`asif.RelativeSpace` computes on its first query with hub
        weights; give them to the set (``anchors.hub_statistics.update(...)``, or
        ``save(hub_ks=...)``) and a space built on it searches nothing to weight its hubs.

        Args:
            ks: list lengths, or ``"default"`` (:func:`default_hub_ks`: the k of asif's
                default setting and the paper's 800, both capped at N).

        Example:
            >>> a = AnchorSet(np.eye(3), np.eye(3))
            >>> sorted(a.compute_hub_statistics([2]))
            [('image', 2), ('text', 2)]
        """
        if isinstance(ks, str):
            if ks != "default":
                raise ValueError(f"hub ks must be integers or 'default', got {ks!r}.")
            ks = default_hub_ks(len(self))
        return hub_statistics_of({m: self.blocks(m) for m in MODALITIES}, ks)

    def _columns(self) -> dict[str, list[str] | None]:
        return {"captions": self.captions, "image_paths": self.image_paths, "keys": self.keys}

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | storage.Folder,
        *,
        mmap: bool = True,
        verify: bool | None = None,
    ) -> AnchorSet:
        """Load a set written by :meth:`save` (or :func:`write_manifest`), checked on the way.

        Args:
            path: the folder (or an opened :class:`asif.storage.Folder`).
            mmap: memory-map the embeddings (read-only, paged in on use; zero copy) instead of
                reading them into memory.
            verify: when to check the embeddings' checksums and that their rows are finite and
                non-zero: ``None`` (default) on the first read of a modality's rows (its
                ``blocks``, its ``*_embeddings``, or a space built on it), ``True`` now, ``False``
                never. Checking runs at about 6 GB/s on a page-cached file
                (``benchmarks/bench_load.py``). Sizes, headers and the manifest's own checksum
                are always checked, and the metadata files' checksums unless ``verify=False``.

        Raises:
            FileNotFoundError: ``path`` is not a saved anchor set.
            asif.storage.AnchorFileError: a file is missing, truncated, altered or malformed
                (it names the file and the problem).
            MemoryError: ``mmap=False`` and the embeddings do not fit in the memory available.
        """
        return storage.load_folder(path, lambda folder: _read_set(folder, mmap, verify))

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

        Hub statistics are dropped (they describe the whole set); provenance is kept.

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
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"select takes integer row positions or a mask, got {rows.dtype}.")
        if rows.ndim > 1:
            raise ValueError(f"select takes a 1-D list of rows, got shape {rows.shape}.")
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        if rows.size == 0:
            raise ValueError("select needs at least one row: an anchor set cannot be empty.")
        if rows.min() < 0 or rows.max() >= len(self):
            raise ValueError(
                f"select got rows outside [0, {len(self)}): {int(rows.min())}..{int(rows.max())}."
            )
        ids = self.ids[rows]
        if np.unique(ids).size != ids.size:
            raise ValueError("select got a row more than once: ids must stay unique.")
        columns = {
            name: None if values is None else [values[i] for i in rows]
            for name, values in self._columns().items()
        }
        return AnchorSet._trusted(  # rows are already unit vectors: copy, do not renormalise
            self._gather("image", rows),
            self._gather("text", rows),
            self._dims,
            ids=ids,
            image_encoder=self.image_encoder,
            text_encoder=self.text_encoder,
            provenance=json.loads(json.dumps(self.provenance)),
            **columns,
        )

    def concat(self, other: AnchorSet) -> AnchorSet:
        """Append ``other``'s anchors; ids must not collide and both must come from one encoder pair.

        Hub statistics are dropped; differing provenances become ``{"concat": [mine, theirs]}``.

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

        for modality in MODALITIES:
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
        provenance = (
            self.provenance
            if self.provenance == other.provenance
            else {"concat": [self.provenance, other.provenance]}
        )
        theirs = other._columns()
        columns = {
            name: _concat_optional(values, theirs[name], len(self), len(other))
            for name, values in self._columns().items()
        }
        return AnchorSet._trusted(  # both are already unit vectors: copy, do not renormalise
            np.concatenate([self.image_embeddings, other.image_embeddings]).astype(
                dtype, copy=False
            ),
            np.concatenate([self.text_embeddings, other.text_embeddings]).astype(dtype, copy=False),
            self._dims,
            ids=ids,
            image_encoder=self.image_encoder or other.image_encoder,
            text_encoder=self.text_encoder or other.text_encoder,
            provenance=json.loads(json.dumps(provenance)),
            **columns,
        )


class _RowStream:
    """Row chunks of one modality in order, handed out ``n`` rows at a time (one per shard)."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self._chunks = chunks
        self._rest: np.ndarray | None = None

    def take(self, n: int) -> Iterator[np.ndarray]:
        """The next ``n`` rows, as chunks (a chunk that crosses the boundary is split)."""
        while n > 0:
            chunk = self._rest if self._rest is not None else next(self._chunks)
            self._rest = chunk[n:] if chunk.shape[0] > n else None
            chunk = chunk[:n]
            n -= chunk.shape[0]
            yield chunk


class _ShardRows:
    """One modality's rows of a loaded set, one array per shard, verified on first use."""

    def __init__(self, files: list[storage.NpyFile], verify: bool) -> None:
        self._files = files
        self._pending = verify
        self._lock = threading.Lock()
        self.n = sum(f.array.shape[0] for f in files)
        self.d = files[0].array.shape[1]
        self.dtype = files[0].array.dtype

    def arrays(self) -> list[np.ndarray]:
        """The shards' arrays, after checking their checksums and rows (once)."""
        if self._pending:
            with self._lock:
                if self._pending:
                    for f in self._files:
                        f.verify()
                        _check_unit_rows(f.array, str(f.file.path), stored=True)
                    self._pending = False
        return [f.array for f in self._files]

    def iter_vectors(self) -> Iterator[np.ndarray]:
        return iter(self.arrays())

    def vectors(self) -> np.ndarray:
        arrays = self.arrays()
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# --------------------------------------------------------------------------- hub statistics
def default_hub_ks(n: int) -> list[int]:
    """The k a space uses with ``n`` anchors: asif's default (``k="auto"``) and the paper's 800.

    Example:
        >>> default_hub_ks(2_195), default_hub_ks(35_455), default_hub_ks(300)
        ([110, 800], [800, 1600], [15, 300])
    """
    from asif.settings import DEFAULT, PAPER

    return sorted({DEFAULT.resolve_k(n), PAPER.resolve_k(n)})


def hub_statistics_of(
    blocks: Mapping[str, Sequence[np.ndarray]], ks: Sequence[int]
) -> dict[tuple[str, int], np.ndarray]:
    """``{(modality, k): counts}`` over anchor row blocks (e.g. the shards of a set on disk).

    Each modality's rows are searched exactly in place (:class:`asif.index.AnchorIndex`, on the
    CPU), with the sample and the rule of :func:`asif.transforms.anchor_k_occurrence`, once
    for all ``ks`` (:func:`asif.transforms.anchor_k_occurrences`): the counts equal those a
    :class:`asif.RelativeSpace` with exact search computes on its first query. Cost: one
    search of up to 4,096 anchors over N per modality (26 s at N = 150,000, d = 1280, here).

    Example:
        >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
        >>> hub_statistics_of({"image": [x]}, [2])[("image", 2)].tolist()
        [1, 3, 2]
    """
    from asif.index import build_index
    from asif.transforms import anchor_k_occurrences

    out: dict[tuple[str, int], np.ndarray] = {}
    for modality, rows in blocks.items():
        if modality not in MODALITIES:
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
        rows = list(rows)
        index = build_index("Flat", rows[0] if len(rows) == 1 else rows, gpu=False)
        for k, counts in anchor_k_occurrences(index, ks).items():
            out[(modality, k)] = counts.astype(np.int64)
    return out


# --------------------------------------------------------------------------- writing the format
def write_shard(
    folder: str | os.PathLike[str],
    index: int,
    *,
    image_embeddings: np.ndarray | Iterable[np.ndarray],
    text_embeddings: np.ndarray | Iterable[np.ndarray],
    ids: Sequence[int] | np.ndarray,
    captions: Sequence[str] | None = None,
    image_paths: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Write shard ``index`` of an anchor set at ``folder/shards/<index:06d>/``, atomically.

    The shard is written into a temporary folder beside it, flushed to disk, then renamed into
    place, with a sealed ``shard.json`` recording its counts and checksums; a shard that exists
    already is never replaced (two builds never write the same shard). Temporaries of dead
    writers of this shard are removed first.

    Args:
        folder: the anchor set's folder (created if needed); finish it with
            :func:`write_manifest`.
        index: the shard's position (shards hold consecutive rows, in index order).
        image_embeddings: (n, d_image) L2-normalised rows, as one array or as row chunks.
        text_embeddings: (n, d_text) L2-normalised rows.
        ids: n integer ids, unique over the whole set.
        captions, image_paths, keys: optional n strings each; every shard of a set has the same
            columns.
        dtype: ``"float32"`` or ``"float16"``, as stored.

    Returns:
        The shard's record (its ``shard.json``).

    Raises:
        FileExistsError: the shard was written already (delete it first if it is damaged).
        ValueError: rows are not unit vectors, ids repeat, a column is not n strings.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "set"
        >>> x = np.eye(2, dtype=np.float32)
        >>> write_shard(folder, 0, image_embeddings=x, text_embeddings=x, ids=[4, 5])["n"]
        2
        >>> completed_shards(folder)
        [0]
    """
    if type(index) is not int or not 0 <= index < 10**6:
        raise ValueError(f"shard index must be an integer in [0, 999999], got {index!r}.")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"ids must be a 1-D sequence of at least one id, got shape {ids.shape}.")
    n = ids.shape[0]
    ids = _check_ids(ids, n)
    columns: dict[str, list[str] | None] = {
        "captions": _optional_strings(captions, n, "captions"),
        "image_paths": _optional_strings(image_paths, n, "image_paths", paths=True),
        "keys": _optional_strings(keys, n, "keys"),
    }
    shards = Path(folder) / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    name = f"{index:06d}"
    target = shards / name
    if target.exists() or target.is_symlink():
        raise FileExistsError(
            f"shard {target} exists already: another build wrote it. If it is damaged, delete it "
            "and run again."
        )
    storage.remove_stale(shards, name)
    tmp = storage.temp_path(shards, name)
    tmp.mkdir()
    try:
        files, dims = {}, []
        for modality, rows in (("image", image_embeddings), ("text", text_embeddings)):
            d, chunks = _chunks(rows, f"{modality}_embeddings")
            dims.append(d)
            files[_EMBEDDINGS[modality]] = storage.write_npy(
                tmp / _EMBEDDINGS[modality], (n, d), dtype, chunks
            )
        files["ids.jsonl"] = storage.write_jsonl(tmp / "ids.jsonl", ids.tolist())
        for column, values in columns.items():
            if values is not None:
                files[f"{column}.jsonl"] = storage.write_jsonl(tmp / f"{column}.jsonl", values)
        document = storage.write_json(
            tmp / SHARD_FILE,
            {
                "format": SHARD_FORMAT,
                "format_version": FORMAT_VERSION,
                "index": index,
                "n": n,
                "image_dim": dims[0],
                "text_dim": dims[1],
                "dtype": dtype,
                "columns": ["ids", *(c for c, v in columns.items() if v is not None)],
                "files": files,
            },
        )
        storage.fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError as error:
            raise FileExistsError(
                f"shard {target} was written by another build meanwhile: {error}"
            ) from None
        storage.fsync_dir(shards)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return document


def completed_shards(folder: str | os.PathLike[str]) -> list[int]:
    """Indexes of the shards under ``folder/shards/`` that were written completely, sorted.

    A resumed build writes the others. A shard folder whose ``shard.json`` is damaged is left
    out, with a warning naming it.
    """
    shards = Path(folder) / "shards"
    if not shards.is_dir():
        return []
    done = []
    with storage.Folder.open(shards) as opened:
        for name in sorted(n for n in opened.names() if _SHARD_NAME.fullmatch(n)):
            try:
                with opened.folder(name) as shard:
                    _read_shard_document(shard, int(name))
            except (AnchorFileError, FileNotFoundError) as error:
                storage.logger.warning("shard %s is damaged and left out: %s", shards / name, error)
                continue
            done.append(int(name))
    return done


def write_manifest(
    folder: str | os.PathLike[str],
    *,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    hub_statistics: Mapping[tuple[str, int], np.ndarray] | None = None,
    shards: int | None = None,
) -> dict[str, Any]:
    """Finish the anchor set in ``folder`` from its shards: write its ``manifest.json``.

    Shards ``000000`` to ``S-1`` must all be complete (exactly ``shards`` of them, when given),
    with the same dims, dtype and columns, and ids unique across them (each shard's ids are read
    and checked). The hub statistics are written under ``hub_statistics/`` and the manifest
    last, atomically: until then the folder does not load as a set.

    Returns:
        The manifest written.

    Raises:
        FileExistsError: the set is finished already (it has a manifest).
        ValueError: a shard is missing or damaged, shards disagree, ids repeat, or the
            provenance or hub statistics are malformed.
    """
    folder = Path(folder)
    if (folder / storage.MANIFEST).exists():
        raise FileExistsError(f"{folder} has a {storage.MANIFEST} already: it is finished.")
    provenance = _check_provenance(provenance)
    entries: list[dict[str, Any]] = []
    shapes: set[tuple[Any, ...]] = set()
    all_ids = []
    with storage.Folder.open(folder) as root, root.folder("shards") as shard_root:
        names = sorted(n for n in shard_root.names() if _SHARD_NAME.fullmatch(n))
        count = len(names) if shards is None else shards
        missing = sorted({f"{i:06d}" for i in range(count)} - set(names))
        if shards is not None and len(names) > shards:
            raise ValueError(
                f"{folder} holds {len(names)} shards, more than the {shards} expected."
            )
        if not names or missing:
            raise ValueError(
                f"{folder} lacks shards {missing[:10] or ['000000']}: write them before "
                "finishing the set."
            )
        for index, name in enumerate(names):
            with shard_root.folder(name) as shard:
                document = _read_shard_document(shard, index)
                shapes.add(
                    (
                        document["image_dim"],
                        document["text_dim"],
                        document["dtype"],
                        tuple(document["columns"]),
                    )
                )
                with shard.file("ids.jsonl", document["files"]["ids.jsonl"]) as f:
                    all_ids.append(_ids_from_file(f.read_jsonl(document["n"], verify=True), f.path))
            entries.append({"name": name, "n": document["n"], "files": document["files"]})
    if len(shapes) > 1:
        raise ValueError(
            f"the shards of {folder} disagree on dims, dtype or columns: {sorted(shapes)}."
        )
    ((image_dim, text_dim, dtype, columns),) = shapes
    ids = np.concatenate(all_ids)
    _check_unique(ids, f"the shards of {folder}")
    n = int(ids.size)
    hubs = []
    for (modality, k), counts in sorted(_check_hub_statistics(hub_statistics, n).items()):
        hub_folder = folder / _HUBS
        hub_folder.mkdir(exist_ok=True)
        name = f"{modality}-k{k}.npy"
        tmp = storage.temp_path(hub_folder, name)
        try:
            record = storage.write_npy(tmp, (n,), "int64", [counts])
            os.replace(tmp, hub_folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        hubs.append({"modality": modality, "k": k, **record})
    if hubs:
        storage.fsync_tree(folder / _HUBS)
    return storage.write_json(
        folder / storage.MANIFEST,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n": n,
            "image_dim": image_dim,
            "text_dim": text_dim,
            "dtype": dtype,
            "image_encoder": _optional_name(image_encoder, "image_encoder"),
            "text_encoder": _optional_name(text_encoder, "text_encoder"),
            "columns": list(columns),
            "shards": entries,
            "hub_statistics": hubs,
            "provenance": provenance,
        },
    )


def _chunks(rows: Any, what: str) -> tuple[int, Iterator[np.ndarray]]:
    """(d, checked chunks) of rows given as one array or as an iterable of row chunks."""
    if isinstance(rows, np.ndarray) or hasattr(rows, "__array__"):
        array = np.asarray(rows)
        if array.ndim != 2:
            raise ValueError(f"{what} must be a 2-D array (n, d), got shape {array.shape}.")
        parts: Iterator[np.ndarray] = (
            array[s : s + _CHUNK_ROWS] for s in range(0, array.shape[0], _CHUNK_ROWS)
        )
        d = array.shape[1]
    else:
        iterator = iter(rows)
        first = next(iterator, None)
        if first is None:
            raise ValueError(f"{what} has no rows.")
        first = np.asarray(first)
        if first.ndim != 2:
            raise ValueError(f"{what} chunks must be 2-D (m, d), got shape {first.shape}.")
        d = first.shape[1]
        parts = (np.asarray(c) for c in _prepend(first, iterator))

    def checked() -> Iterator[np.ndarray]:
        for chunk in parts:
            _check_unit_rows(chunk, what, stored=False)
            yield chunk

    return d, checked()


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _check_unit_rows(block: np.ndarray, where: str, *, stored: bool) -> None:
    """Refuse rows that are not unit vectors (float16: rows with NaN/inf, or all zero)."""
    for start in range(0, block.shape[0], _CHECK_ROWS):
        chunk = block[start : start + _CHECK_ROWS]
        if chunk.dtype == np.float16:  # float16 -> float32 is slow here: check the bits
            bits = (chunk.view(np.uint16) & np.uint16(0x7FFF)).max(axis=1)
            bad = (bits == 0) | (bits >= 0x7C00)
        else:
            if not np.issubdtype(chunk.dtype, np.floating):
                chunk = chunk.astype(np.float32)
            squares = np.einsum("ij,ij->i", chunk, chunk)
            bad = ~(np.abs(squares - 1) <= _UNIT_TOLERANCE)
        if bad.any():
            rows = (start + np.flatnonzero(bad)[:5]).tolist()
            if stored:
                raise AnchorFileError(
                    f"{where} has rows {rows} (first 5 shown) that are not unit vectors (NaN, "
                    "infinite or zero): the file is damaged or was not written by asif."
                )
            raise ValueError(
                f"{where} has rows {rows} (first 5 shown) that are not L2-normalised, finite "
                "vectors: normalise them first (asif.relative.normalize_rows)."
            )


# --------------------------------------------------------------------------- reading the format
def _read_set(folder: storage.Folder, mmap: bool, verify: bool | None) -> AnchorSet:
    try:
        manifest = storage.read_manifest(folder, FORMAT, FORMAT_VERSION, unsealed=(1,))
    except FileNotFoundError:
        if _has_entry(folder, "shards") or SHARD_FILE in folder.names():
            raise FileNotFoundError(
                f"{folder.path} has shards but no {storage.MANIFEST}: its build did not finish "
                "(run the build again to resume it), or this is one shard of a set."
            ) from None
        raise
    where = str(folder.path / storage.MANIFEST)
    n = _int_field(manifest, "n", where)
    dims = (_int_field(manifest, "image_dim", where), _int_field(manifest, "text_dim", where))
    dtype = manifest.get("dtype")
    if dtype not in _DTYPES:
        raise AnchorFileError(f"{where} has dtype {dtype!r}; asif stores {_DTYPES}.")
    encoders = [_name_field(manifest, f"{m}_encoder", where) for m in MODALITIES]
    if manifest["format_version"] == 1:
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise AnchorFileError(f"{where} has no 'files' object.")
        columns = ["ids", *(c for c in COLUMNS[1:3] if f"{c}.jsonl" in files)]
        shards = [(None, {"name": ".", "n": n, "files": files})]
        provenance: dict[str, Any] = {}
        hub_entries: list[Any] = []
    else:
        columns = _columns_field(manifest, where)
        entries = manifest.get("shards")
        if not isinstance(entries, list) or not entries:
            raise AnchorFileError(f"{where} has no 'shards' list.")
        for index, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if name != f"{index:06d}":
                raise AnchorFileError(f"{where}: shard {index} must be named {index:06d}.")
        shards = [("shards", entry) for entry in entries]
        provenance = manifest.get("provenance", {})
        if not isinstance(provenance, dict):
            raise AnchorFileError(f"{where}: 'provenance' is not a JSON object.")
        hub_entries = manifest.get("hub_statistics", [])
        if not isinstance(hub_entries, list):
            raise AnchorFileError(f"{where}: 'hub_statistics' is not a list.")
    parts = []
    for parent, entry in shards:
        if parent is None:  # format 1: the files lie in the folder itself
            part = _read_shard(folder, entry, dims, dtype, columns, where, mmap=mmap, verify=verify)
        else:
            with folder.folder(parent) as shard_root, shard_root.folder(entry["name"]) as shard:
                part = _read_shard(
                    shard, entry, dims, dtype, columns, where, mmap=mmap, verify=verify
                )
        parts.append(part)
    total = sum(len(p["ids"]) for p in parts)
    if total != n:
        raise AnchorFileError(f"{where} says n = {n} but its shards hold {total} rows.")
    ids = np.concatenate([p["ids"] for p in parts])
    _check_unique(ids, where, error=AnchorFileError)
    rows = {m: _ShardRows([p[m] for p in parts], verify is not False) for m in MODALITIES}
    if verify:
        for r in rows.values():
            r.arrays()
    metadata = {c: None for c in COLUMNS[1:]}
    for column in columns[1:]:
        metadata[column] = (
            parts[0][column] if len(parts) == 1 else [v for p in parts for v in p[column]]
        )
    hubs = _read_hubs(folder, hub_entries, n, where, verify=verify is not False)
    return AnchorSet._trusted(
        rows["image"],
        rows["text"],
        dims,
        ids=ids,
        image_encoder=encoders[0],
        text_encoder=encoders[1],
        provenance=provenance,
        hub_statistics=hubs,
        **metadata,
    )


def _has_entry(folder: storage.Folder, name: str) -> bool:
    try:
        folder.folder(name).close()
    except AnchorFileError:
        return False
    return True


def _read_shard(
    shard: storage.Folder,
    entry: Any,
    dims: tuple[int, int],
    dtype: str,
    columns: list[str],
    where: str,
    *,
    mmap: bool,
    verify: bool | None,
) -> dict[str, Any]:
    """One shard's mapped embeddings and checked columns, all read through ``shard``."""
    if not isinstance(entry, dict):
        raise AnchorFileError(f"{where}: a shard entry is not a JSON object.")
    n = _int_field(entry, "n", f"{where} (shard {entry.get('name')})")
    files = _files_field(entry, columns, f"{where} (shard {entry.get('name')})")
    part: dict[str, Any] = {}
    for modality, d in zip(MODALITIES, dims, strict=True):
        with shard.file(_EMBEDDINGS[modality], files[_EMBEDDINGS[modality]]) as f:
            part[modality] = f.npy((n, d), dtype, mmap=mmap)
    for column in columns:
        with shard.file(f"{column}.jsonl", files[f"{column}.jsonl"]) as f:
            values = f.read_jsonl(n, verify=verify is not False)
            part[column] = (
                _ids_from_file(values, f.path)
                if column == "ids"
                else _strings_from_file(values, f.path)
            )
    return part


def _read_shard_document(shard: storage.Folder, index: int) -> dict[str, Any]:
    """A shard's sealed ``shard.json``, checked (for :func:`write_manifest` and resuming)."""
    document = storage.read_manifest(shard, SHARD_FORMAT, FORMAT_VERSION, name=SHARD_FILE)
    where = str(shard.path / SHARD_FILE)
    if document.get("index") != index:
        raise AnchorFileError(f"{where} says index {document.get('index')!r}, not {index}.")
    for key in ("n", "image_dim", "text_dim"):
        _int_field(document, key, where)
    if document.get("dtype") not in _DTYPES:
        raise AnchorFileError(f"{where} has dtype {document.get('dtype')!r}.")
    _files_field(document, _columns_field(document, where), where)
    return document


def _read_hubs(
    folder: storage.Folder, entries: list[Any], n: int, where: str, *, verify: bool
) -> dict[tuple[str, int], np.ndarray]:
    hubs: dict[tuple[str, int], np.ndarray] = {}
    if not entries:
        return hubs
    with folder.folder(_HUBS) as hub_folder:
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("modality") not in MODALITIES:
                raise AnchorFileError(f"{where}: a hub_statistics entry has no valid modality.")
            k = _int_field(entry, "k", where)
            key = (entry["modality"], k)
            if key in hubs:
                raise AnchorFileError(f"{where}: hub statistics {key} are listed twice.")
            with hub_folder.file(f"{key[0]}-k{k}.npy", entry) as f:
                loaded = f.npy((n,), "int64", mmap=False)
                if verify:
                    loaded.verify()
                if (loaded.array < 0).any():
                    raise AnchorFileError(f"{f.path} has negative counts.")
            hubs[key] = loaded.array
    return hubs


def _int_field(document: dict[str, Any], key: str, where: str) -> int:
    value = document.get(key)
    if type(value) is not int or value < 1:
        raise AnchorFileError(f"{where}: {key!r} must be a positive integer, got {value!r}.")
    return value


def _name_field(document: dict[str, Any], key: str, where: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise AnchorFileError(f"{where}: {key!r} must be a string or null, got {value!r}.")
    return value


def _columns_field(document: dict[str, Any], where: str) -> list[str]:
    columns = document.get("columns")
    if (
        not isinstance(columns, list)
        or not columns
        or columns[0] != "ids"
        or any(c not in COLUMNS for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise AnchorFileError(
            f"{where}: 'columns' must list 'ids' then any of {COLUMNS[1:]}, got {columns!r}."
        )
    return columns


def _files_field(document: dict[str, Any], columns: list[str], where: str) -> dict[str, Any]:
    """The ``files`` records, which must name exactly the files the format defines."""
    files = document.get("files")
    expected = {*_EMBEDDINGS.values(), *(f"{c}.jsonl" for c in columns)}
    if not isinstance(files, dict) or set(files) != expected:
        found = sorted(files) if isinstance(files, dict) else files
        raise AnchorFileError(
            f"{where}: 'files' must list exactly {sorted(expected)}, got {found!r}."
        )
    return files


def _first_not(values: list[Any], kind: type) -> int | None:
    """The position of the first value whose type is not exactly ``kind`` (C-speed when none)."""
    if set(map(type, values)) <= {kind}:
        return None
    return next(i for i, v in enumerate(values) if type(v) is not kind)


def _ids_from_file(values: list[Any], where: Any) -> np.ndarray:
    bad = _first_not(values, int)
    if bad is not None:
        raise AnchorFileError(f"{where}: ids must be integers, line {bad + 1} is {values[bad]!r}.")
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise AnchorFileError(f"{where}: an id is outside the int64 range.") from None


def _strings_from_file(values: list[Any], where: Any) -> list[str]:
    bad = _first_not(values, str)
    if bad is not None:
        raise AnchorFileError(
            f"{where}: every value must be a string, line {bad + 1} is {values[bad]!r}."
        )
    return values


# --------------------------------------------------------------------------- checking inputs
def _rows_of(embeddings: Any, what: str) -> tuple[np.ndarray | RowSource, int, int]:
    """(rows, N, d): an array normalised on the way in, or a RowSource taken as it is."""
    if isinstance(embeddings, RowSource) and not isinstance(embeddings, np.ndarray):
        return embeddings, int(embeddings.n), int(embeddings.d)
    rows = normalize_rows(embeddings, what=what)
    return rows, rows.shape[0], rows.shape[1]


def _optional_strings(
    values: Sequence[Any] | None, n: int, what: str, *, paths: bool = False
) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of N strings, not one string.")
    values = [os.fspath(v) if paths and isinstance(v, os.PathLike) else v for v in values]
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise TypeError(
            f"{what} must be strings; item {bad} is a {type(values[bad]).__name__}: convert "
            "them yourself if that is what you mean."
        )
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries but there are {n} anchors.")
    return [str.__str__(v) for v in values]


def _optional_name(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be a name (a string) or None, got {type(value).__name__}.")
    return value


def _check_ids(ids: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise ValueError(f"ids must have shape ({n},), got {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}.")
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger) and arr.max() > _INT64.max:
        raise ValueError(f"ids must fit in int64; {int(arr.max())} does not.")
    arr = arr.astype(np.int64)
    _check_unique(arr, "ids")
    return arr


def _check_unique(ids: np.ndarray, where: str, *, error: type[Exception] = ValueError) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != ids.size:
        repeated = unique[counts > 1][:5].tolist()
        raise error(
            f"{where}: ids must be unique (each anchor needs its own id); {repeated} repeat "
            "(first 5 shown)."
        )


def _check_provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON copy of ``provenance`` (a JSON object), or ``{}``."""
    if provenance is None:
        return {}
    if not isinstance(provenance, Mapping):
        raise TypeError(
            f"provenance must be a dict (a JSON object), got {type(provenance).__name__}."
        )
    try:
        copy = json.loads(json.dumps(dict(provenance), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"provenance must hold only JSON values: {error}") from None
    return copy


def _check_hub_statistics(
    stats: Mapping[tuple[str, int], Any] | None, n: int
) -> dict[tuple[str, int], np.ndarray]:
    """``{(modality, k): int64 counts of length n}``, checked."""
    checked: dict[tuple[str, int], np.ndarray] = {}
    for key, counts in (stats or {}).items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or key[0] not in MODALITIES
            or type(key[1]) is not int
            or key[1] < 1
        ):
            raise ValueError(f"hub_statistics keys are (modality, k) with k >= 1, got {key!r}.")
        array = np.asarray(counts)
        if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
            raise ValueError(
                f"hub_statistics[{key!r}] must be {n} non-negative integer counts, got "
                f"{array.dtype} {array.shape}."
            )
        checked[key] = array.astype(np.int64)
    return checked


def _concat_optional(
    a: list[str] | None, b: list[str] | None, na: int, nb: int
) -> list[str] | None:
    if a is None and b is None:
        return None
    return (a if a is not None else [""] * na) + (b if b is not None else [""] * nb)
