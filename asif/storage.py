"""Files on disk: atomic folder writes, ``.npy`` arrays written in chunks, JSONL columns, checksums.

No pickle anywhere: arrays are plain ``.npy`` files read with ``np.load(allow_pickle=False)``
(memory-mapped by default), text columns are JSONL (one JSON value per line), and a folder's
``manifest.json`` records the sha256 and size of every other file.

A folder is written into a temporary folder beside the target, every file is flushed to disk
(``fsync``), then the temporary folder takes the target's place by a rename. On Linux the two
folders are exchanged in one atomic step (``renameat2(RENAME_EXCHANGE)``); elsewhere the old
folder is first renamed aside, so a crash between the two renames leaves it under
``.<name>.old-*`` beside the target. An exception while writing removes the temporary folder and
leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MANIFEST",
    "VERIFY_AUTO_BYTES",
    "AnchorFileError",
    "atomic_folder",
    "check_files",
    "load_npy",
    "read_jsonl",
    "read_manifest",
    "sha256_file",
    "write_json",
    "write_jsonl",
    "write_npy",
]

MANIFEST = "manifest.json"
VERIFY_AUTO_BYTES = 1 << 30
"""``verify=None`` checks sha256 only when the files total at most this many bytes (1 GiB)."""
_HASH_BLOCK = 1 << 24


class AnchorFileError(ValueError):
    """A saved folder is missing a file, has a truncated or altered file, or does not match."""


# --------------------------------------------------------------------------- atomic folders
@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], *, marker: str = MANIFEST) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.

    An existing ``target`` is only replaced when it holds ``marker`` (a folder this library
    wrote), so a typo cannot wipe an unrelated folder. Any exception inside the block removes the
    temporary folder and leaves ``target`` unchanged.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with atomic_folder(root / "out") as tmp:
        ...     _ = (tmp / MANIFEST).write_text("{}")
        >>> sorted(p.name for p in root.iterdir())
        ['out']
    """
    target = Path(target)
    if (
        target.exists()
        and not (target / marker).is_file()
        and (not target.is_dir() or any(target.iterdir()))
    ):
        raise FileExistsError(
            f"{target} exists and is not a folder written by asif (no {marker}); "
            "refusing to replace it: remove it or choose another path."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_folder(tmp)
        _replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_folder(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target``; afterwards ``tmp`` holds the old folder (or nothing)."""
    if target.is_dir() and any(target.iterdir()):
        if not _exchange(tmp, target):
            aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, aside)
            os.rename(tmp, target)
            os.rename(aside, tmp)
    else:
        if target.is_dir():
            target.rmdir()
        os.rename(tmp, target)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- writing
def write_npy(
    path: Path, shape: tuple[int, int], dtype: str, chunks: Iterable[np.ndarray]
) -> dict[str, Any]:
    """Write a 2-D ``.npy`` file from row chunks, hashing as it goes; returns its file record.

    Chunks are converted to ``dtype`` one at a time, so memory stays at one chunk.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.npy"
        >>> rec = write_npy(p, (3, 2), "float16", [np.ones((2, 2)), np.zeros((1, 2))])
        >>> np.load(p).tolist(), rec["bytes"] == p.stat().st_size
        ([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]], True)
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    )
    digest = hashlib.sha256(header.getvalue())
    rows = 0
    with open(path, "wb") as f:
        f.write(header.getvalue())
        for chunk in chunks:
            block = np.ascontiguousarray(chunk, dtype=dtype)
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"chunk of shape {block.shape} does not fit {shape}.")
            digest.update(memoryview(block).cast("B"))
            f.write(memoryview(block).cast("B"))
            rows += block.shape[0]
        f.flush()
        os.fsync(f.fileno())
    if rows != shape[0]:
        raise ValueError(f"wrote {rows} rows to {path.name} but its header says {shape[0]}.")
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def write_jsonl(path: Path, values: Iterable[Any]) -> dict[str, Any]:
    """Write one JSON value per line; returns the file record (sha256, bytes)."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for value in values:
            line = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
            digest.update(line)
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write a small JSON document (a manifest), flushed to disk."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- reading
def read_manifest(folder: str | os.PathLike[str], kind: str, version: int) -> dict[str, Any]:
    """Read and check ``folder/manifest.json`` of format ``kind`` and at most ``version``."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        what = "does not exist" if not folder.exists() else f"has no {MANIFEST}"
        raise FileNotFoundError(f"{folder} {what}: it is not a saved asif {kind} folder.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnchorFileError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != kind:
        raise AnchorFileError(f"{path} is not an asif {kind} manifest.")
    found = manifest.get("format_version")
    if not isinstance(found, int) or found > version:
        raise AnchorFileError(
            f"{path} has format version {found!r}; this asif reads up to {version}: upgrade asif."
        )
    return manifest


def check_files(folder: Path, files: dict[str, dict[str, Any]], verify: bool | None) -> bool:
    """Check that every file exists with its recorded size, and (if verifying) its sha256.

    Args:
        folder: the saved folder.
        files: ``{name: {"sha256": ..., "bytes": ...}}`` from the manifest.
        verify: ``True`` always hashes, ``False`` never, ``None`` hashes when the files total
            at most :data:`VERIFY_AUTO_BYTES`. Hashing reads every byte (about 1-2 s per GB).

    Returns:
        Whether the checksums were verified.
    """
    total = 0
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            raise AnchorFileError(f"{path} is missing: the saved folder is incomplete.")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise AnchorFileError(
                f"{path} has {size} bytes but the manifest says {record['bytes']}: "
                "the file is truncated or was changed after saving."
            )
        total += size
    if verify is None:
        verify = total <= VERIFY_AUTO_BYTES
    if verify:
        for name, record in files.items():
            if sha256_file(folder / name) != record["sha256"]:
                raise AnchorFileError(
                    f"{folder / name} does not match its sha256 in the manifest: the file is "
                    "corrupted or was changed after saving."
                )
    return bool(verify)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(_HASH_BLOCK)
        view = memoryview(buffer)
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def load_npy(path: Path, shape: Sequence[int], dtype: str, *, mmap: bool) -> np.ndarray:
    """Load a ``.npy`` without pickle (memory-mapped read-only if ``mmap``) and check it."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as error:
        raise AnchorFileError(f"{path} is not a valid .npy file: {error}") from error
    if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        raise AnchorFileError(
            f"{path} holds {array.dtype} {array.shape}, the manifest says {dtype} {tuple(shape)}."
        )
    return array


def read_jsonl(path: Path, n: int) -> list[Any]:
    """Read a JSONL file of ``n`` values (one C-level parse of the whole file)."""
    text = path.read_text(encoding="utf-8")
    body = text[:-1] if text.endswith("\n") else text
    try:
        values = json.loads("[" + body.replace("\n", ",") + "]") if body else []
    except json.JSONDecodeError as error:
        raise AnchorFileError(f"{path} is not valid JSONL: {error}") from error
    if len(values) != n:
        raise AnchorFileError(f"{path} has {len(values)} lines but the manifest says {n}.")
    return values
