"""An on-disk cache of embeddings keyed by (encoder name, sha256 of the image file or the text).

Layout under the cache root (default ``~/.cache/asif/embeddings``, or ``$ASIF_CACHE/embeddings``)::

    file-hashes.json                 {absolute path: [size, mtime_ns, sha256]}  (a memo, no key)
    <encoder slug>/index.json        {"encoder": name, "dim": d, "entries": {sha256: [shard, row]}}
    <encoder slug>/<uuid>.npy        float32 (rows, dim) shards, one per encode call that added rows

No pickle anywhere. Deleting any of it is safe: a lost index or shard only means those images are
encoded again. The hash memo skips re-reading files whose size and mtime are unchanged; the cache
key is still the content hash, so a renamed or copied file is a hit. Concurrent writers do not
corrupt the cache (files are replaced atomically) but one may drop the other's new index entries.

Example:
    >>> cache = EmbeddingCache("/tmp/asif-cache")  # doctest: +SKIP
    >>> enc.encode(paths, cache=cache)  # first run encodes and stores  # doctest: +SKIP
    >>> enc.encode(paths, cache=cache)  # second run reads the stored rows  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._offline import cache_dir

logger = logging.getLogger("asif")

_FORMAT = 1
_MEMO = "file-hashes.json"


class EmbeddingCache:
    """Embeddings on disk, keyed by (encoder name, sha256 of an image file's bytes or a text).

    Args:
        root: the cache folder; None uses ``cache_dir() / "embeddings"``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def hash_files(self, paths: list[str], *, missing_ok: bool = False) -> list[str | None]:
        """Return the sha256 hex digest of each file's content.

        Files whose (path, size, mtime) are in the memo are not read again.

        Args:
            paths: the files.
            missing_ok: give None for a missing file instead of raising ``FileNotFoundError``.
        """
        memo_path = self.root / _MEMO
        memo: dict[str, list[Any]] = _read_json(memo_path, default={})
        out: list[str | None] = [None] * len(paths)
        stale: list[tuple[int, str, int, int]] = []
        for i, path in enumerate(paths):
            full = os.path.abspath(path)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                if missing_ok:
                    continue
                raise FileNotFoundError(f"image file not found: {path}") from None
            entry = memo.get(full)
            if entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
                out[i] = entry[2]
            else:
                stale.append((i, full, st.st_size, st.st_mtime_ns))
        if stale:
            with ThreadPoolExecutor(max_workers=min(8, len(stale))) as pool:
                digests = list(pool.map(_sha256_file, [full for _, full, _, _ in stale]))
            for (i, full, size, mtime), digest in zip(stale, digests, strict=True):
                out[i] = digest
                memo[full] = [size, mtime, digest]
            _write_json(memo_path, memo)
        return out

    def get(self, encoder_name: str, keys: list[str]) -> dict[str, np.ndarray]:
        """Return the cached embedding of each key that has one (float32 rows)."""
        folder = self._folder(encoder_name)
        index = _read_json(folder / "index.json", default=None)
        if not index or index.get("encoder") != encoder_name or not keys:
            return {}
        entries: dict[str, list[Any]] = index["entries"]
        by_shard: dict[str, list[tuple[str, int]]] = {}
        for key in set(keys):
            hit = entries.get(key)
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((key, hit[1]))
        found: dict[str, np.ndarray] = {}
        for shard, wanted in by_shard.items():
            try:
                rows = np.load(folder / shard, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                logger.warning("embedding cache shard %s unreadable; re-encoding", folder / shard)
                continue
            picked = np.asarray(rows[[row for _, row in wanted]], dtype=np.float32)
            found.update((key, picked[j]) for j, (key, _) in enumerate(wanted))
        return found

    def put(self, encoder_name: str, keys: list[str], embeddings: np.ndarray) -> None:
        """Store embeddings (one row per key) for an encoder."""
        if not keys:
            return
        unique = dict(zip(keys, range(len(keys)), strict=True))  # last row wins for repeated keys
        rows = np.ascontiguousarray(embeddings[list(unique.values())], dtype=np.float32)
        folder = self._folder(encoder_name)
        folder.mkdir(parents=True, exist_ok=True)
        shard = f"{uuid.uuid4().hex}.npy"
        tmp = folder / f".{shard}.tmp"
        with tmp.open("wb") as f:
            np.save(f, rows, allow_pickle=False)
        os.replace(tmp, folder / shard)
        index = _read_json(folder / "index.json", default=None)
        if not index or index.get("encoder") != encoder_name or index.get("dim") != rows.shape[1]:
            index = {
                "format": _FORMAT,
                "encoder": encoder_name,
                "dim": rows.shape[1],
                "entries": {},
            }
        index["entries"].update((key, [shard, row]) for row, key in enumerate(unique))
        _write_json(folder / "index.json", index)

    def _folder(self, encoder_name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name).strip("_")[:60]
        digest = hashlib.sha1(encoder_name.encode()).hexdigest()[:10]
        return self.root / f"{slug}-{digest}"


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


def text_key(text: str) -> str:
    """The cache key of a text: the sha256 hex digest of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
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


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
