"""An on-disk cache of embeddings that re-encodes rather than return a wrong row.

A row is keyed by (the encoder's ``fingerprint`` and output size, the sha256 of an image file's
bytes or of a text's UTF-8). Layout under the cache root (default ``~/.cache/asif/embeddings``, or
``$ASIF_CACHE/embeddings``)::

    file-hashes.json          {absolute path: [size, mtime_ns, ctime_ns, inode, device, sha256]}
    encoder-fingerprints.json {encoder identity: {"fingerprint", "dim", "name", ...}}: what each
                              encoder (its weights files, by stamp, and the code running them)
                              was when last loaded, so cached rows are found without loading it
    <name>-<key>/             one folder per (fingerprint, dim); <key>: 16 hex digits of their sha256
        shards/<stem>.npy     float32 (rows, dim): the rows of one ``put``, never rewritten
        new/<stem>.json       its record, until merged: the shard's name, sha256, rows and dim, the
                              fingerprint, and the keys in row order
        index.json            the merged records: {"format", "fingerprint", "dim", "records"}

``<stem>`` is ``<time_ns>-<16 random hex digits>``. Every ``.json`` file but the memo is
``{"sha256":"<64 hex>","body":<JSON>}``, the digest taken over the exact body bytes, so a damaged
record or index is detected before it is parsed. A shard is checked against its record's sha256
each time it is read. Whatever fails a check (missing, zero-byte, truncated, flipped, of another
shape) is logged as a warning on ``logging.getLogger("asif")`` and its rows are encoded again; no
pickle is ever loaded.

Writers never rewrite a shared file: each ``put`` writes its own shard, then its own record (each a
temporary file renamed into place), so concurrent processes lose nothing. Once ``_COMPACT_AT``
records are pending, a writer that gets ``fcntl.flock`` on the folder (without waiting) merges
them into ``index.json`` and deletes them, along with damaged records and, after ``_STALE_NS``,
shards and temporaries left by writers that died. Readers list the pending records, then read the
index, then the records, and start again if one was merged away in between.

Only encoders with a ``fingerprint`` (a string that changes whenever the rows it would give change)
and an integer ``dim`` use the cache; for any other object ``get`` finds nothing and ``put`` stores
nothing, with one warning. :class:`~asif.encoders.ImageEncoder` and
:class:`~asif.encoders.TextEncoder` derive theirs from their weights (:func:`weights_digest`), their
architecture, output size and preprocessing; a custom encoder that wants the cache sets its own.

Measured on a shared 2-core AMD EPYC (load average 7; ``pytest -m slow -s -k cost
tests/encoders/test_cache.py``): ``get`` of 7,091 cached rows of 1,280 floats (36 MB, one shard)
takes 155-230 ms, of which the sha256 check is about 100 ms (sha256 runs at 1.2 GB/s on an idle
core) and reading and parsing the shard 75-85 ms; format 1's unverified memory-mapped read took
18 ms. Next to encoding those images (minutes), so shards are verified on every read.

The hash memo (``file-hashes.json``) lets unchanged files skip re-reading: hashing the 7,091
flickr8k JPEGs (107 MB) took 0.6-1.2 s from the page cache and 1.0-2.1 s cold (file reads, not
sha256, are the cost), a memo hit 115-125 ms (25 ms of it the stats). So the memo stays, keyed
on (path, size, mtime_ns, ctime_ns, inode, device): ``cp -p`` and ``rsync -t`` restore mtime but
cannot set ctime, and rsync's rename gives a new inode. A file changed less than ``_RACY_NS``
before it was hashed is not memoised, so a rewrite within one timestamp tick cannot go unseen.

Example:
    >>> cache = EmbeddingCache("/tmp/asif-cache")  # doctest: +SKIP
    >>> enc.encode(paths, cache=cache)  # first run encodes and stores  # doctest: +SKIP
    >>> enc.encode(paths, cache=cache)  # second run reads the stored rows  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import numbers
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._offline import cache_dir

try:
    import fcntl
except ImportError:  # not POSIX: records are never compacted, which costs only speed
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger("asif")

_FORMAT = 2
_MEMO = "file-hashes.json"
_ENCODERS = "encoder-fingerprints.json"
_ENCODER_ENTRIES = 64  # identities remembered (weights files x versions x precisions)
_INDEX = "index.json"
_SHARDS = "shards"
_PENDING = "new"
_COMPACT_AT = 32  # record files in a folder before a writer merges them into index.json
_STALE_NS = 3600 * 10**9  # an unrecorded shard or a temporary this old belongs to a dead writer
_RACY_NS = 2 * 10**9  # files changed this recently are not memoised (timestamp granularity)
_STEM = r"[0-9]{19}-[0-9a-f]{16}"
_RECORD_NAME = re.compile(_STEM + r"\.json")
_SHARD_NAME = re.compile(_STEM + r"\.npy")
_HEAD, _MID = b'{"sha256":"', b'","body":'
_warned: set[str] = set()
_index_memo: dict[str, _Index] = {}
_memo_lock = threading.Lock()


class EmbeddingCache:
    """Embeddings on disk, keyed by (encoder fingerprint and dim, sha256 of a file or a text).

    ``get`` and ``put`` take the encoder itself: anything with a ``fingerprint`` string and an
    integer ``dim`` (and, for a readable folder name, a ``name``). See the module docstring for
    the layout and the checks.

    Args:
        root: the cache folder; None uses ``cache_dir() / "embeddings"``.

    Example:
        >>> import tempfile, types
        >>> enc = types.SimpleNamespace(name="toy", dim=2, fingerprint="toy-v1")
        >>> folder = tempfile.TemporaryDirectory()
        >>> cache = EmbeddingCache(folder.name)
        >>> cache.put(enc, ["k1"], np.array([[0.6, 0.8]], dtype=np.float32))
        >>> cache.get(enc, ["k1", "k2"])
        {'k1': array([0.6, 0.8], dtype=float32)}
        >>> cache.get(types.SimpleNamespace(name="toy", dim=2, fingerprint="toy-v2"), ["k1"])
        {}
        >>> folder.cleanup()
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def hash_files(self, paths: list[str], *, missing_ok: bool = False) -> list[str | None]:
        """Return the sha256 hex digest of each file's content.

        Files whose (path, size, mtime, ctime, inode, device) are in the memo are not read again.

        Args:
            paths: the files.
            missing_ok: give None for a missing file instead of raising ``FileNotFoundError``.
        """
        memo_path = self.root / _MEMO
        memo = _read_json(memo_path, default={})
        if not isinstance(memo, dict):
            memo = {}
        out: list[str | None] = [None] * len(paths)
        stale: list[tuple[int, str, list[int]]] = []
        now = time.time_ns()
        for i, path in enumerate(paths):
            full = os.path.abspath(path)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                if missing_ok:
                    continue
                raise FileNotFoundError(f"image file not found: {path}") from None
            stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
            entry = memo.get(full)
            if isinstance(entry, list) and entry[:-1] == stamp and isinstance(entry[-1], str):
                out[i] = entry[-1]
            else:
                stale.append((i, full, stamp))
        if not stale:
            return out
        with ThreadPoolExecutor(max_workers=min(8, len(stale))) as pool:
            digests = list(pool.map(_sha256_file, [full for _, full, _ in stale]))
        changed = False
        for (i, full, stamp), digest in zip(stale, digests, strict=True):
            if digest is None and not missing_ok:
                raise FileNotFoundError(f"image file not found: {paths[i]}")
            out[i] = digest
            if digest is not None and now - max(stamp[1], stamp[2]) > _RACY_NS:
                memo[full] = [*stamp, digest]
                changed = True
            elif memo.pop(full, None) is not None:
                changed = True
        if changed:
            _write_atomic(memo_path, json.dumps(memo, separators=(",", ":")).encode())
        return out

    def get(self, encoder: Any, keys: list[str]) -> dict[str, np.ndarray]:
        """Return the cached embedding of each key that has a verified one (float32 rows).

        An encoder without a ``fingerprint`` gets nothing. Damaged shards or records are logged
        and skipped (another record of the same key is tried), so their keys come back missing.
        """
        ident = _identity(encoder)
        if ident is None or not keys:
            return {}
        fingerprint, dim, name = ident
        folder = self._folder(fingerprint, dim, name)
        if not folder.is_dir():
            return {}
        index, pending = _load_view(folder, fingerprint, dim)
        wanted = set(keys)
        recent = _places(pending, wanted)
        shards: dict[str, np.ndarray | None] = {}
        found: dict[str, np.ndarray] = {}
        for key in wanted:
            for record, row in itertools.chain(recent.get(key, ()), index.places.get(key, ())):
                shard = record["shard"]  # newest first: a fresh copy wins over a damaged one
                if shard not in shards:
                    shards[shard] = _read_shard(folder, record)
                rows = shards[shard]
                if rows is not None:
                    found[key] = rows[row]
                    break
        return found

    def put(self, encoder: Any, keys: list[str], embeddings: np.ndarray) -> None:
        """Store embeddings (one row per key) for an encoder; one without a fingerprint stores none.

        A cache that cannot be written (read-only, disk full) is logged, not raised.
        """
        ident = _identity(encoder)
        if ident is None or not keys:
            return
        fingerprint, dim, name = ident
        embeddings = np.asarray(embeddings)
        if embeddings.shape != (len(keys), dim):
            raise ValueError(
                f"expected {len(keys)} rows of {dim} values, got an array of shape {embeddings.shape}"
            )
        unique = dict(zip(keys, range(len(keys)), strict=True))  # last row wins for repeated keys
        rows = np.ascontiguousarray(embeddings[list(unique.values())], dtype=np.float32)
        folder = self._folder(fingerprint, dim, name)
        stem = f"{time.time_ns():019d}-{secrets.token_hex(8)}"
        buffer = io.BytesIO()
        np.save(buffer, rows, allow_pickle=False)
        data = buffer.getvalue()
        record = {
            "format": _FORMAT,
            "encoder": name,
            "fingerprint": fingerprint,
            "dim": dim,
            "rows": len(rows),
            "shard": f"{stem}.npy",
            "sha256": hashlib.sha256(data).hexdigest(),
            "keys": list(unique),
        }
        try:
            _write_atomic(folder / _SHARDS / record["shard"], data)  # before the record naming it
            _write_atomic(folder / _PENDING / f"{stem}.json", _checked_json(record))
            if len(_record_names(folder)) >= _COMPACT_AT:
                _compact(folder, fingerprint, dim)
        except OSError as e:
            logger.warning("embedding cache %s not written (%s)", folder, e)

    def recall_encoder(self, identity: str) -> dict[str, Any] | None:
        """What was recorded for an encoder the last time one of this ``identity`` was loaded.

        ``identity`` names an encoder's weights files and the code that runs them
        (:func:`asif.encoders.deferred.encoder_identity`); the record holds at least its
        ``fingerprint`` (a string) and ``dim``, so rows can be looked up without loading the
        model. None when nothing (valid) is recorded.
        """
        entry = self._encoder_records().get(identity)
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("fingerprint"), str)
            and isinstance(entry.get("dim"), int)
        ):
            return entry
        return None

    def remember_encoder(self, identity: str, record: dict[str, Any]) -> None:
        """Record what a freshly loaded encoder of this ``identity`` is (see
        :meth:`recall_encoder`); the newest :data:`_ENCODER_ENTRIES` identities are kept."""
        records = self._encoder_records()
        records.pop(identity, None)
        records[identity] = record
        while len(records) > _ENCODER_ENTRIES:
            del records[next(iter(records))]
        try:
            _write_atomic(self.root / _ENCODERS, _checked_json(records))
        except OSError as e:
            logger.warning("embedding cache %s not written (%s)", self.root / _ENCODERS, e)

    def _encoder_records(self) -> dict[str, Any]:
        try:
            records = _read_checked(self.root / _ENCODERS)
        except FileNotFoundError:
            return {}
        except (_Damaged, OSError) as e:
            logger.warning("encoder memo %s unusable (%s); ignoring it", self.root / _ENCODERS, e)
            return {}
        return records if isinstance(records, dict) else {}

    def _folder(self, fingerprint: str, dim: int, name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "encoder"
        key = hashlib.sha256(f"{fingerprint}\n{dim}".encode()).hexdigest()[:16]
        return self.root / f"{slug}-{key}"


def resolve_cache(
    cache: bool | str | os.PathLike[str] | EmbeddingCache | None,
) -> EmbeddingCache | None:
    """Turn an ``encode(..., cache=...)`` argument into a cache (or None for no cache)."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return EmbeddingCache()
    if isinstance(cache, EmbeddingCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return EmbeddingCache(cache)
    raise TypeError(
        f"cache must be a bool, a path or an EmbeddingCache, got {type(cache).__name__}"
    )


def file_stamps(paths: list[Path]) -> list[list[Any]] | None:
    """(path, size, mtime_ns, ctime_ns, inode, device) of each file: what says it is unchanged.

    None when a file is missing or was changed within the last two seconds (a rewrite within
    one timestamp tick could go unseen), as for the hash memo.

    Example:
        >>> file_stamps([Path("/no/such/file")]) is None
        True
    """
    now = time.time_ns()
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if now - max(st.st_mtime_ns, st.st_ctime_ns) <= _RACY_NS:
            return None
        stamps.append([str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    return stamps


def text_key(text: str) -> str:
    """The cache key of a text: the sha256 hex digest of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- fingerprints ------------------------------------------------------------------------------


def weights_digest(module: nn.Module) -> str:
    """sha256 over a torch module's ``state_dict``: every entry's name, dtype, shape and bytes.

    Entries are taken in name order and in standard (contiguous) layout, so a copy of the same
    weights elsewhere in memory, or in channels-last format, has the same digest. Hashing runs at
    about 750 MB/s here: 15 ms for EfficientNet-Lite0 (13 MB), 120 ms for all-MiniLM-L6-v2 (91 MB).

    Example:
        >>> import copy, torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> weights_digest(layer) == weights_digest(copy.deepcopy(layer))
        True
    """
    import torch

    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        if not isinstance(value, torch.Tensor):  # a module's extra state
            h.update(f"{name}\0{value!r}\0".encode())
            continue
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        try:
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        except (RuntimeError, TypeError):  # quantized or other unusual tensors
            h.update(repr(t.tolist()).encode())
    return h.hexdigest()


def weights_state(module: nn.Module) -> tuple[Any, ...] | None:
    """A cheap stand-in for a module's weights and structure (about 1 ms for Lite0): every
    submodule, and each tensor's version counter, storage, dtype, device and shape.

    It changes when a submodule is replaced, or a tensor is changed in place
    (``load_state_dict``, ``p.mul_()`` under ``no_grad``), replaced, moved or cast; not when a
    tensor is changed through ``.data`` (which has its own version counter) or a submodule's
    settings are changed in place. None when it cannot be taken (inference tensors have no version
    counter).
    """
    parts: list[Any] = []
    try:
        for m in module.modules():
            parts.append(m)
            # the registries themselves: 3x faster than parameters(recurse=False) and buffers()
            for t in itertools.chain(m._parameters.values(), m._buffers.values()):
                if t is not None:
                    parts.append((t._version, t.data_ptr(), t.dtype, t.device, t.shape))
    except RuntimeError:
        return None
    return tuple(parts)


def tokenizer_digest(tokenizer: Any) -> str:
    """sha256 of a Hugging Face tokenizer: its class and its vocabulary and rules.

    A fast tokenizer gives its backend's JSON without the truncation and padding state (which
    every call sets), about 100 ms for BERT's; another gives its sorted vocabulary.
    """
    h = hashlib.sha256(type(tokenizer).__qualname__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        rules = type(backend).from_str(backend.to_str())
        rules.no_truncation()
        rules.no_padding()
        h.update(rules.to_str().encode())
    elif hasattr(tokenizer, "get_vocab"):
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    else:
        h.update(repr(tokenizer).encode())
    return h.hexdigest()


def remembered(
    owner: Any, slot: str, state: tuple[Any, ...] | None, compute: Callable[[], str]
) -> str:
    """``compute()``, remembered on ``owner`` until ``state`` changes (None: always compute).

    Example:
        >>> class Owner: pass
        >>> owner, calls = Owner(), []
        >>> [remembered(owner, "x", (1,), lambda: calls.append(1) or "a") for _ in range(3)]
        ['a', 'a', 'a']
        >>> len(calls)
        1
    """
    memo = owner.__dict__.setdefault("_fingerprint_memo", {})
    hit = memo.get(slot)
    if state is not None and hit is not None and hit[0] == state:
        return hit[1]
    value = compute()
    memo[slot] = (state, value)
    return value


def fingerprint_of(**parts: Any) -> str:
    """sha256 of named parts (JSON with sorted keys; other objects by ``repr``).

    Example:
        >>> fingerprint_of(weights="ab12", dim=3) == fingerprint_of(dim=3, weights="ab12")
        True
    """
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --- internals ---------------------------------------------------------------------------------


def _identity(encoder: Any) -> tuple[str, int, str] | None:
    """(fingerprint, dim, name) of an encoder, or None (warned once per type) if it has none."""
    fingerprint = getattr(encoder, "fingerprint", None)
    dim = getattr(encoder, "dim", None)
    name = getattr(encoder, "name", None)
    if isinstance(fingerprint, str) and fingerprint and isinstance(dim, numbers.Integral):
        return fingerprint, int(dim), name if isinstance(name, str) else type(encoder).__name__
    kind = type(encoder).__qualname__
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(
            "%s has no fingerprint (or no integer dim): the embedding cache is not used for it. "
            "Give it a `fingerprint` string that changes whenever its embeddings would.",
            kind,
        )
    return None


def _checked_json(body: Any) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return _HEAD + hashlib.sha256(text).hexdigest().encode() + _MID + text + b"}"


class _Damaged(ValueError):
    pass


def _read_checked(path: Path) -> Any:
    """The body of a checked JSON file; ``_Damaged`` if it fails its checksum or does not parse."""
    return _parse_checked(path.read_bytes())


def _parse_checked(data: bytes) -> Any:
    start = len(_HEAD) + 64 + len(_MID)
    if not (data.startswith(_HEAD) and data[len(_HEAD) + 64 : start] == _MID and data[-1:] == b"}"):
        raise _Damaged("not a checked cache file")
    body = data[start:-1]
    if hashlib.sha256(body).hexdigest().encode() != data[len(_HEAD) : len(_HEAD) + 64]:
        raise _Damaged("checksum mismatch")
    try:
        return json.loads(body)
    except ValueError as e:  # only if written so by something else: the checksum held
        raise _Damaged(str(e)) from None


def _valid_record(record: Any, fingerprint: str, dim: int) -> bool:
    if not isinstance(record, dict):
        return False
    keys = record.get("keys")
    return (
        record.get("format") == _FORMAT
        and record.get("fingerprint") == fingerprint
        and record.get("dim") == dim
        and isinstance(record.get("shard"), str)
        and _SHARD_NAME.fullmatch(record["shard"]) is not None
        and isinstance(record.get("sha256"), str)
        and isinstance(keys, list)
        and all(isinstance(k, str) for k in keys)
        and record.get("rows") == len(keys)
    )


class _Index(NamedTuple):
    """A folder's merged records, as read from one version of its index.json."""

    owner: tuple[str, int]  # (fingerprint, dim)
    digest: bytes  # the file's head, with its body's sha256: which version this is
    records: list[dict[str, Any]]
    places: dict[str, list[tuple[dict[str, Any], int]]]  # key -> (record, row), newest first


def _places(
    records: list[dict[str, Any]], wanted: set[str] | None = None
) -> dict[str, list[tuple[dict[str, Any], int]]]:
    """Key -> (record, row) for records given newest first (only ``wanted`` keys if given)."""
    places: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for record in records:
        for row, key in enumerate(record["keys"]):
            if wanted is None or key in wanted:
                places.setdefault(key, []).append((record, row))
    return places


def _record_names(folder: Path) -> list[str]:
    """The names of the records not yet merged into the index."""
    try:
        return sorted(n for n in os.listdir(folder / _PENDING) if _RECORD_NAME.fullmatch(n))
    except FileNotFoundError:
        return []


def _read_record(path: Path, fingerprint: str, dim: int) -> dict[str, Any] | None:
    """A record file's record, or None (warned) if damaged; ``FileNotFoundError`` if gone."""
    try:
        record = _read_checked(path)
    except FileNotFoundError:
        raise
    except (_Damaged, OSError) as e:
        logger.warning("embedding cache record %s unusable (%s); re-encoding its rows", path, e)
        return None
    if not _valid_record(record, fingerprint, dim) or f"{path.stem}.npy" != record["shard"]:
        logger.warning("embedding cache record %s is not this encoder's; ignoring it", path)
        return None
    return record


def _read_index(folder: Path, fingerprint: str, dim: int) -> _Index:
    """A folder's index (empty if missing or damaged, with a warning for damage).

    Parsed indexes are remembered per process by the checksum in the file's first bytes, so an
    unchanged index costs a 75-byte read.
    """
    path = folder / _INDEX
    try:
        with path.open("rb") as f:
            head = f.read(len(_HEAD) + 64)
            hit = _index_memo.get(str(path))
            if hit is not None and hit.digest == head and hit.owner == (fingerprint, dim):
                return hit
            data = head + f.read()
        index = _parse_checked(data)
    except FileNotFoundError:
        return _Index((fingerprint, dim), b"", [], {})
    except (_Damaged, OSError) as e:
        logger.warning("embedding cache index %s unusable (%s); re-encoding its rows", path, e)
        return _Index((fingerprint, dim), b"", [], {})
    records = index.get("records") if isinstance(index, dict) else None
    if (
        not isinstance(records, list)
        or index.get("fingerprint") != fingerprint
        or index.get("dim") != dim
    ):
        logger.warning("embedding cache index %s is not this encoder's; ignoring it", path)
        return _Index((fingerprint, dim), b"", [], {})
    valid = [r for r in records if _valid_record(r, fingerprint, dim)]
    owner = (fingerprint, dim)
    return _remember(path, _Index(owner, head, valid, _places(sorted(valid, key=_newest))))


def _remember(path: Path, index: _Index) -> _Index:
    with _memo_lock:
        while len(_index_memo) >= 16:
            del _index_memo[next(iter(_index_memo))]
        _index_memo[str(path)] = index
    return index


def _newest(record: dict[str, Any]) -> tuple[int, str]:
    """Sort key putting the newest shard first (shard names start with their write time)."""
    return (-int(record["shard"][:19]), record["shard"])


def _load_view(folder: Path, fingerprint: str, dim: int) -> tuple[_Index, list[dict[str, Any]]]:
    """A folder's index and its pending records (newest first).

    Lists the pending records before reading the index, so a record merged away in between is
    in the index read; if one vanishes while being read, starts again.
    """
    pending: list[dict[str, Any]] = []
    for _ in range(5):
        names = _record_names(folder)
        index = _read_index(folder, fingerprint, dim)
        try:
            pending = [
                record
                for name in names
                if (record := _read_record(folder / _PENDING / name, fingerprint, dim))
            ]
        except FileNotFoundError:  # merged while we read: read the new index
            continue
        break
    return index, sorted(pending, key=_newest)


def _load_records(folder: Path, fingerprint: str, dim: int) -> list[dict[str, Any]]:
    """Every valid record of a folder, each shard once, newest first."""
    index, pending = _load_view(folder, fingerprint, dim)
    merged = {r["shard"]: r for r in index.records} | {r["shard"]: r for r in pending}
    return sorted(merged.values(), key=_newest)


def _read_shard(folder: Path, record: dict[str, Any]) -> np.ndarray | None:
    """A shard's rows if they match the record's sha256 and shape, else None (warned)."""
    path = folder / _SHARDS / record["shard"]
    problem = None
    try:
        data = path.read_bytes()
    except OSError as e:
        problem = f"{type(e).__name__}: {e.strerror}"
    else:
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            problem = "checksum mismatch"
        else:
            try:
                rows = np.load(io.BytesIO(data), allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                problem = str(e)
            else:
                if rows.dtype == np.float32 and rows.shape == (record["rows"], record["dim"]):
                    return rows
                problem = f"{rows.dtype} array of shape {rows.shape}"
    logger.warning("embedding cache shard %s unusable (%s); re-encoding its rows", path, problem)
    return None


def _compact(folder: Path, fingerprint: str, dim: int) -> None:
    """Merge a folder's pending records into its index, under a lock on the folder (no waiting).

    Deletes the merged and the damaged records (and the shards of the damaged), drops records
    whose shard is gone, and removes what dead writers left (``_remove_strays``).
    """
    if fcntl is None:
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is compacting
        names = _record_names(folder)
        records = {r["shard"]: r for r in _read_index(folder, fingerprint, dim).records}
        damaged = []
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                record = _read_record(folder / _PENDING / name, fingerprint, dim)
                if record is None:
                    damaged.append(name[: -len(".json")] + ".npy")
                else:
                    records[record["shard"]] = record
        shards = set(os.listdir(folder / _SHARDS))
        kept = sorted((r for r in records.values() if r["shard"] in shards), key=_newest)
        body = {"format": _FORMAT, "fingerprint": fingerprint, "dim": dim, "records": kept}
        data = _checked_json(body)
        _write_atomic(folder / _INDEX, data)
        head = data[: len(_HEAD) + 64]
        _remember(folder / _INDEX, _Index((fingerprint, dim), head, kept, _places(kept)))
        for name in names:
            (folder / _PENDING / name).unlink(missing_ok=True)
        for name in damaged:
            (folder / _SHARDS / name).unlink(missing_ok=True)
        _remove_strays(folder, {r["shard"] for r in kept})
    finally:
        os.close(fd)


def _remove_strays(folder: Path, recorded: set[str]) -> None:
    """Delete temporaries and unrecorded shards older than ``_STALE_NS`` (dead writers' files)."""
    now = time.time_ns()
    for sub in (folder, folder / _SHARDS, folder / _PENDING):
        with os.scandir(sub) as entries:
            for entry in entries:
                stray = entry.name.endswith(".tmp") or (
                    sub.name == _SHARDS
                    and _SHARD_NAME.fullmatch(entry.name) is not None
                    and entry.name not in recorded
                    and not (folder / _PENDING / (entry.name[: -len(".npy")] + ".json")).exists()
                )
                with contextlib.suppress(FileNotFoundError):
                    if stray and now - entry.stat().st_mtime_ns >= _STALE_NS:
                        logger.info(
                            "embedding cache: removing %s, left by a dead writer", entry.path
                        )
                        os.unlink(entry.path)


def _sha256_file(path: str) -> str | None:
    """The sha256 hex digest of a file's bytes; None if it is gone."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _read_json(path: Path, default: Any) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (OSError, ValueError):
        logger.warning("embedding cache file %s unreadable; starting it afresh", path)
        return default


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
