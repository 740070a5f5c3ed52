"""Files on disk, safe across crashes and processes: atomic folders, sealed manifests, checked reads.

No pickle anywhere: arrays are plain ``.npy`` files whose header is parsed here (no
``allow_pickle``; only the dtype the format names is accepted), text columns are JSONL (one JSON
value per line), documents are JSON.

Writing. :func:`atomic_folder` writes a folder into a temporary folder beside the target
(``.<name>.tmp-<host>-<pid>-<tag>``), flushes every file and folder to disk (``fsync``), then puts
it at the target in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames,
so a crash between them leaves the old folder as ``.<name>.old-...`` beside the target) and
deletes the old folder. An existing target is replaced only when its ``manifest.json`` names an
asif format and version (:data:`REPLACEABLE_FORMATS`); any other folder or file is refused with
``FileExistsError``. Temporaries of writers that died (pid gone, same host) are removed by the
next write of the same target, with a warning on ``logging.getLogger("asif")``. A file inside a
folder is never changed once written: a folder changes only by being replaced whole.

Manifests. :func:`write_json` *seals* a document: its ``checksum`` is the checksum of the
canonical JSON of every other key, so a flipped bit anywhere in it is detected. Every other file
has a record ``{"bytes": size, "checksum": "xxh3_128:<hex>"}`` (xxh3-128 from the ``xxhash``
package, about 12 GB/s here; ``blake2b`` from the standard library when xxhash is missing;
``sha256`` in format-1 anchor sets).

Reading. :class:`Folder` opens a folder once (a directory descriptor) and every file and
sub-folder relative to it, by names the format defines (one path component, no ``..``),
refusing symbolic links and anything but regular files. Sizes are checked on the descriptor
that was opened, checksums on the bytes that were read or mapped from it, so what is verified is
what is used. :func:`load_folder` reads through one such descriptor: a save that replaces the
folder meanwhile leaves the opened version readable until its files are deleted, and a file
deleted under a reader makes it start again on the new version, so a load returns one complete
save. Every malformed file raises :class:`AnchorFileError` (a ``ValueError``) naming it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import logging
import math
import mmap as _mmap
import os
import re
import shutil
import socket
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

try:
    import xxhash
except ImportError:  # pragma: no cover - xxhash is a dependency; blake2b is the fallback
    xxhash = None

__all__ = [
    "CHECKSUM",
    "MANIFEST",
    "REPLACEABLE_FORMATS",
    "AnchorFileError",
    "Checksum",
    "Folder",
    "NpyFile",
    "atomic_folder",
    "fsync_dir",
    "fsync_tree",
    "load_folder",
    "read_manifest",
    "remove_stale",
    "replace_folder",
    "temp_path",
    "write_json",
    "write_jsonl",
    "write_npy",
]

logger = logging.getLogger("asif")

MANIFEST = "manifest.json"
REPLACEABLE_FORMATS = frozenset({"asif-anchors", "asif-space", "asif-compressed-index"})
"""Formats whose folders a save may replace: anything else at the target is refused."""
CHECKSUM = "xxh3_128" if xxhash is not None else "blake2b"
"""The checksum written into new records."""
DOCUMENT_LIMIT = 1 << 26
"""Largest JSON document (a manifest) read, in bytes: a bigger one is refused, not read."""
_HASH_BLOCK = 1 << 24
_NPY_HEAD = 1 << 16
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST = re.compile(r"(xxh3_128|blake2b|sha256):([0-9a-f]{32,64})")
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64] or "host"
_LOAD_ATTEMPTS = 8

T = TypeVar("T")


class AnchorFileError(ValueError):
    """A saved folder is missing a file, has a truncated, altered or malformed file."""


class _FolderChanged(Exception):
    """The folder being read was replaced and a file of the opened version is gone: start again."""


# --------------------------------------------------------------------------- checksums
class Checksum:
    """A running checksum, written as ``"<algorithm>:<hex>"``.

    Example:
        >>> c = Checksum("sha256")
        >>> c.update(b"abc")
        >>> c.value()[:15]
        'sha256:ba7816bf'
    """

    def __init__(self, algorithm: str = CHECKSUM) -> None:
        self.algorithm = algorithm
        if algorithm == "xxh3_128":
            if xxhash is None:
                raise AnchorFileError(
                    "this file's checksum is xxh3_128: install the xxhash package to verify it."
                )
            self._hash: Any = xxhash.xxh3_128()
        elif algorithm == "blake2b":
            self._hash = hashlib.blake2b(digest_size=16)
        elif algorithm == "sha256":
            self._hash = hashlib.sha256()
        else:
            raise AnchorFileError(f"unknown checksum algorithm {algorithm!r}.")

    def update(self, data: Any) -> None:
        """Add bytes (any buffer: bytes, memoryview, a contiguous array)."""
        self._hash.update(data)

    def update_array(self, array: np.ndarray) -> None:
        """Add a C-contiguous array's bytes, 16 MiB at a time (pages of a mapping are read once)."""
        flat = array.reshape(-1).view(np.uint8)
        for start in range(0, flat.size, _HASH_BLOCK):
            self._hash.update(flat[start : start + _HASH_BLOCK])

    def value(self) -> str:
        """``"<algorithm>:<hex digest>"``."""
        return f"{self.algorithm}:{self._hash.hexdigest()}"


def _record(path: Path, checksum: Checksum) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "checksum": checksum.value()}


def parse_record(value: Any, where: str) -> tuple[int, str]:
    """``(bytes, "<algorithm>:<hex>")`` of a file record (format 2, or format 1's ``sha256``).

    Example:
        >>> parse_record({"bytes": 3, "sha256": "0" * 64}, "x")[0]
        3
    """
    if not isinstance(value, dict):
        raise AnchorFileError(f"{where}: the file record is not a JSON object.")
    size = value.get("bytes")
    if type(size) is not int or size < 0:
        raise AnchorFileError(f"{where}: the file record has no valid 'bytes' count.")
    digest = value.get("checksum")
    if digest is None and isinstance(value.get("sha256"), str):
        digest = "sha256:" + value["sha256"]
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise AnchorFileError(f"{where}: the file record has no valid checksum.")
    return size, digest


def _check_digest(checksum: Checksum, expected: str, where: str) -> None:
    if checksum.value() != expected:
        raise AnchorFileError(
            f"{where} does not match its checksum in the manifest: the file is corrupted or was "
            "changed after saving. Save the set again from its source."
        )


# --------------------------------------------------------------------------- writing
def temp_path(parent: Path, name: str, kind: str = "tmp") -> Path:
    """A fresh temporary name beside ``parent/name`` that :func:`remove_stale` recognises.

    Example:
        >>> temp_path(Path("out"), "set").name.startswith(".set.tmp-")
        True
    """
    return parent / f".{name}.{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale(parent: Path, name: str) -> list[Path]:
    """Remove temporaries of ``parent/name`` left by writers of this host that died.

    Returns the paths removed (each one is logged as a warning).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / ".set.tmp-x-999999999-0123abcd").mkdir()
        >>> remove_stale(root, "set") == []  # another host's: kept
        True
    """
    pattern = re.compile(
        rf"\.{re.escape(name)}\.(?:tmp|old)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{{8}}"
    )
    removed = []
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
        logger.warning(
            "removed %s, a temporary left by a writer that died (pid %s)", path, match["pid"]
        )
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie is not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.

    An existing ``target`` is replaced only when it is empty or an asif folder (its manifest
    names one of :data:`REPLACEABLE_FORMATS`). Any exception inside the block removes the
    temporary folder and leaves ``target`` unchanged.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with atomic_folder(root / "out") as tmp:
        ...     _ = (tmp / MANIFEST).write_text('{"format": "asif-space", "format_version": 2}')
        >>> sorted(p.name for p in root.iterdir())
        ['out']
    """
    target = Path(target)
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    tmp = temp_path(target.parent, target.name)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``source`` to ``target`` atomically, as :func:`atomic_folder` does.

    For writers that build a folder in place over a long time (``asif build``): ``target`` is
    replaced only when it is empty or an asif folder, and the folder it held is deleted.
    """
    source, target = Path(source), Path(target)
    _check_replaceable(target)
    remove_stale(target.parent, target.name)
    fsync_tree(source)
    _publish(source, target)
    shutil.rmtree(source, ignore_errors=True)  # the old folder, after an exchange
    return target


def _publish(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target``; afterwards ``tmp`` holds the old folder (or nothing)."""
    for _ in range(_LOAD_ATTEMPTS):
        try:
            os.rename(tmp, target)  # no target, or an empty folder
            break
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
        _check_replaceable(target)
        result = _exchange(tmp, target)
        if result == 0:
            if _asif_format(tmp) is None and any(os.scandir(tmp)):
                _exchange(tmp, target)  # it changed under us to a foreign folder: put it back
                _refuse(target, "it changed to a folder not written by asif during the save")
            break
        if result == errno.ENOENT:
            continue  # removed meanwhile: rename again
        aside = temp_path(target.parent, target.name, "old")
        os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(aside, target)
            raise
        os.rename(aside, tmp)
        break
    else:
        raise OSError(f"could not put the new folder at {target}: it keeps changing.")
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> int:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``): 0, or the errno."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return errno.ENOSYS
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return errno.ENOSYS
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return 0
    return ctypes.get_errno() or errno.ENOSYS


def _check_replaceable(target: Path) -> None:
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        _refuse(target, "it is a symbolic link (save to the folder it points to)")
    if not stat.S_ISDIR(info.st_mode):
        _refuse(target, "it is a file, not a folder")
    if any(os.scandir(target)) and _asif_format(target) is None:
        _refuse(
            target,
            f"it is not a folder written by asif (no {MANIFEST} naming an asif format and version)",
        )


def _refuse(target: Path, why: str) -> None:
    raise FileExistsError(
        f"{target} exists and {why}; refusing to replace it: remove it yourself or choose "
        "another path."
    )


def _asif_format(folder: Path) -> str | None:
    """The asif format named by ``folder``'s manifest (checksum not checked), or None."""
    try:
        with Folder.open(folder) as opened:
            document = parse_json(opened.file(MANIFEST).read(limit=DOCUMENT_LIMIT), MANIFEST)
    except (OSError, AnchorFileError, _FolderChanged):
        return None
    if not isinstance(document, dict):
        return None
    kind, version = document.get("format"), document.get("format_version")
    if kind in REPLACEABLE_FORMATS and type(version) is int:
        return str(kind)
    return None


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (itself included) to disk."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (names) to disk, where the filesystem allows it."""
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_npy(
    path: Path, shape: tuple[int, ...], dtype: str, chunks: Iterable[np.ndarray]
) -> dict[str, Any]:
    """Write a ``.npy`` file from chunks along axis 0, checksumming as it goes; returns its record.

    Chunks are converted to ``dtype`` one at a time, so memory stays at one chunk. Like
    :func:`write_jsonl`, it does not flush to disk: :func:`atomic_folder` (or
    :func:`fsync_tree`) does, once, before the folder is put in place.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.npy"
        >>> rec = write_npy(p, (3, 2), "float16", [np.ones((2, 2)), np.zeros((1, 2))])
        >>> np.load(p).tolist(), rec["bytes"] == p.stat().st_size
        ([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]], True)
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": tuple(shape)}
    )
    checksum = Checksum()
    checksum.update(header.getvalue())
    rows = 0
    with open(path, "wb") as f:
        f.write(header.getvalue())
        for chunk in chunks:
            block = np.ascontiguousarray(chunk, dtype=dtype)
            if block.ndim != len(shape) or block.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"chunk of shape {block.shape} does not fit {tuple(shape)}.")
            checksum.update_array(block)
            f.write(memoryview(block.reshape(-1).view(np.uint8)))
            rows += block.shape[0]
    if rows != shape[0]:
        raise ValueError(f"wrote {rows} rows to {path.name} but its header says {shape[0]}.")
    return _record(path, checksum)


def write_jsonl(path: Path, values: Iterable[Any]) -> dict[str, Any]:
    """Write one JSON value per line; returns the file record.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.jsonl"
        >>> write_jsonl(p, ["a", 1])["bytes"], p.read_text()
        (6, '"a"\\n1\\n')
    """
    checksum = Checksum()
    with open(path, "wb") as f:
        for value in values:
            line = (json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
            checksum.update(line)
            f.write(line)
    return _record(path, checksum)


def _canonical(document: dict[str, Any]) -> bytes:
    body = {key: value for key, value in document.items() if key != "checksum"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def write_json(path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Seal ``document`` (add the ``checksum`` of its content) and write it atomically.

    The file is written beside ``path`` and renamed over it once on disk. Returns the sealed
    document.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "doc.json"
        >>> sorted(write_json(p, {"format": "x"}))
        ['checksum', 'format']
    """
    checksum = Checksum()
    checksum.update(_canonical(document))
    sealed = {**document, "checksum": checksum.value()}
    remove_stale(path.parent, path.name)
    tmp = temp_path(path.parent, path.name)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(sealed, f, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return sealed


# --------------------------------------------------------------------------- reading
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes, where: str) -> Any:
    """Parse UTF-8 JSON bytes; anything malformed is an :class:`AnchorFileError` naming ``where``.

    Example:
        >>> parse_json(b'{"a": [1]}', "x")
        {'a': [1]}
    """
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise AnchorFileError(f"{where} is not valid JSON: {error}") from None


def read_manifest(
    folder: Folder,
    kind: str,
    version: int,
    *,
    name: str = MANIFEST,
    unsealed: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Read ``folder/name``: a JSON object of format ``kind``, version 1 to ``version``, sealed.

    Args:
        folder: the opened folder.
        kind: the expected ``format``.
        version: the newest ``format_version`` this code reads.
        name: the document's file name.
        unsealed: versions written before documents were sealed (no ``checksum`` needed).

    Raises:
        FileNotFoundError: there is no such document (the folder is not a saved ``kind``).
        AnchorFileError: it is malformed, altered, of another format or of a newer version.
    """
    where = folder.path / name
    opened = folder.file_if_exists(name)
    if opened is None:
        raise FileNotFoundError(
            f"{folder.path} has no {name}: it is not a saved asif {kind} folder."
        )
    with opened:
        document = parse_json(opened.read(limit=DOCUMENT_LIMIT), str(where))
    if not isinstance(document, dict):
        raise AnchorFileError(f"{where} is not a JSON object: it is not an asif {kind} manifest.")
    found = document.get("format_version")
    if document.get("format") != kind:
        raise AnchorFileError(
            f"{where} is not an asif {kind} manifest (its format is {document.get('format')!r})."
        )
    if type(found) is not int or found < 1:
        raise AnchorFileError(f"{where} has no valid format_version.")
    if found > version:
        raise AnchorFileError(
            f"{where} has format version {found}; this asif reads up to {version}: upgrade asif."
        )
    if "checksum" in document or found not in unsealed:
        digest = document.get("checksum")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise AnchorFileError(f"{where} has no valid checksum of its own: it is incomplete.")
        checksum = Checksum(digest.partition(":")[0])
        try:
            checksum.update(_canonical(document))
        except (ValueError, RecursionError) as error:
            raise AnchorFileError(f"{where} holds values JSON does not allow: {error}") from None
        if checksum.value() != digest:
            raise AnchorFileError(
                f"{where} does not match its own checksum: it is corrupted or was edited. Save "
                "the folder again."
            )
    return document


class Folder:
    """A folder opened once; its files and sub-folders are opened relative to it.

    Names are single path components (no ``/``, no leading dot); symbolic links, devices and
    pipes are refused. Use :meth:`open` (a context manager) and :func:`load_folder`.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "a.txt").write_text("hi")
        >>> with Folder.open(root) as folder, folder.file("a.txt") as f:
        ...     f.read()
        b'hi'
    """

    def __init__(self, fd: int, path: Path, root: Folder | None = None) -> None:
        self.fd, self.path = fd, path
        self._root = root
        self._identity = _identity(os.fstat(fd)) if root is None else None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Folder:
        """Open the folder ``path`` (following a link the user named, as the user would)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} does not exist: it is not a saved asif folder."
            ) from None
        except NotADirectoryError:
            raise FileNotFoundError(
                f"{path} is not a folder: it is not a saved asif folder."
            ) from None
        return cls(fd, path)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptor (files already opened or mapped stay usable)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def folder(self, name: str) -> Folder:
        """The sub-folder ``name`` (a real folder inside this one, not a link)."""
        fd = self._open(name, os.O_RDONLY | os.O_DIRECTORY, "folder")
        assert fd is not None
        return Folder(fd, self.path / name, self._root or self)

    def file(self, name: str, record: Any = None) -> OpenFile:
        """Open the regular file ``name``; with a manifest ``record``, check its size now."""
        opened = self.file_if_exists(name, record)
        if opened is None:
            raise AnchorFileError(f"{self.path / name} is missing: the saved folder is incomplete.")
        return opened

    def file_if_exists(self, name: str, record: Any = None) -> OpenFile | None:
        """:meth:`file`, or None when there is no file ``name`` (and the folder is unchanged)."""
        fd = self._open(name, os.O_RDONLY | os.O_NONBLOCK, "file", missing_ok=True)
        if fd is None:
            return None
        opened = OpenFile(fd, self.path / name)
        if record is not None:
            size, opened.checksum = parse_record(record, str(opened.path))
            if opened.size != size:
                opened.close()
                raise AnchorFileError(
                    f"{opened.path} has {opened.size} bytes but the manifest says {size}: the "
                    "file is truncated or was changed after saving."
                )
        return opened

    def _open(self, name: str, flags: int, what: str, *, missing_ok: bool = False) -> int | None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AnchorFileError(f"{self.path}: {name!r} is not a file name this format uses.")
        where = self.path / name
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            if self.replaced():
                raise _FolderChanged from None
            if missing_ok:
                return None
            raise AnchorFileError(f"{where} is missing: the saved folder is incomplete.") from None
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                raise AnchorFileError(
                    f"{where} is a symbolic link or not a {what}: a saved asif folder holds "
                    f"only real files and folders. Replace it with the {what} itself."
                ) from None
            raise
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) if what == "folder" else stat.S_ISREG(mode)):
            os.close(fd)
            raise AnchorFileError(f"{where} is not a regular {what}.")
        return fd

    def names(self) -> list[str]:
        """The names of the entries in this folder (of the version that was opened)."""
        with os.scandir(self.fd) as entries:
            return [entry.name for entry in entries]

    def replaced(self) -> bool:
        """Whether the path this folder was opened from now names another folder (or none)."""
        root = self._root or self
        try:
            return _identity(os.stat(root.path)) != root._identity
        except OSError:
            return True


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


class OpenFile:
    """A regular file opened by :meth:`Folder.file`: reads and maps go through its descriptor."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path
        self.size = os.fstat(fd).st_size
        self.checksum: str | None = None  # from the manifest record, when one was given

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptor (a mapping made from it stays valid)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, *, limit: int | None = None, verify: bool = False) -> bytes:
        """The whole file (``verify``: checked against the record's checksum)."""
        if limit is not None and self.size > limit:
            raise AnchorFileError(f"{self.path} has {self.size} bytes, more than {limit} allowed.")
        check_fits_in_memory(self.size, str(self.path))
        data = bytearray(self.size)
        self._read_into(memoryview(data), 0)
        if verify:
            self._verify([data])
        return bytes(data)

    def verify(self) -> None:
        """Read the file once and check it against the record's checksum (memory: 16 MiB)."""
        buffer = bytearray(_HASH_BLOCK)
        checksum = self._checksum()
        offset = 0
        while offset < self.size:
            n = os.preadv(self.fd, [buffer], offset)
            if n == 0:
                raise AnchorFileError(f"{self.path} ended early: it was truncated while reading.")
            checksum.update(memoryview(buffer)[:n])
            offset += n
        _check_digest(checksum, self.checksum or "", str(self.path))

    def _checksum(self) -> Checksum:
        if self.checksum is None:
            raise AnchorFileError(f"{self.path} has no checksum in the manifest.")
        return Checksum(self.checksum.partition(":")[0])

    def _verify(self, parts: Iterable[Any]) -> None:
        checksum = self._checksum()
        for part in parts:
            if isinstance(part, np.ndarray):
                checksum.update_array(part)
            else:
                checksum.update(part)
        _check_digest(checksum, self.checksum or "", str(self.path))

    def _read_into(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n == 0:
                raise AnchorFileError(f"{self.path} ended early: it was truncated while reading.")
            done += n

    def read_jsonl(self, n: int, *, verify: bool) -> list[Any]:
        """Exactly ``n`` JSON values, one per line (one C-level parse of the whole file)."""
        data = self.read(verify=verify)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise AnchorFileError(f"{self.path} is not UTF-8 text: {error}") from None
        body = text[:-1] if text.endswith("\n") else text
        try:  # a line never holds a raw newline: json.dumps escapes it
            values = (
                json.loads("[" + body.replace("\n", ",") + "]", parse_constant=_reject_constant)
                if body
                else []
            )
        except (ValueError, RecursionError) as error:
            raise AnchorFileError(f"{self.path} is not valid JSONL: {error}") from None
        if len(values) != n:
            raise AnchorFileError(
                f"{self.path} has {len(values)} values but the manifest says {n}."
            )
        return values

    def npy(self, shape: tuple[int, ...], dtype: str, *, mmap: bool) -> NpyFile:
        """The ``.npy`` array of exactly this shape and dtype, mapped read-only or read."""
        header = bytearray(min(self.size, _NPY_HEAD))
        self._read_into(memoryview(header), 0)
        stream = io.BytesIO(bytes(header))
        expected = np.dtype(dtype).newbyteorder("<")
        try:
            major, minor = np.lib.format.read_magic(stream)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }[(major, minor)]
            found_shape, fortran, found_dtype = read_header(stream)
        except Exception as error:  # any malformed header: numpy raises many kinds
            raise AnchorFileError(f"{self.path} is not a valid .npy file: {error}") from None
        if found_dtype != expected or fortran or tuple(found_shape) != tuple(shape):
            raise AnchorFileError(
                f"{self.path} holds {found_dtype} {tuple(found_shape)}"
                f"{' (Fortran order)' if fortran else ''}, the manifest says {dtype} "
                f"{tuple(shape)}."
            )
        offset = stream.tell()
        nbytes = math.prod(shape) * expected.itemsize
        if offset + nbytes != self.size:
            raise AnchorFileError(
                f"{self.path} has {self.size} bytes; a {dtype} array of shape {tuple(shape)} "
                f"needs {offset + nbytes}."
            )
        head = bytes(header[:offset])
        if mmap and nbytes:
            mapping = _mmap.mmap(self.fd, self.size, access=_mmap.ACCESS_READ)
            array = np.ndarray(shape, expected, buffer=mapping, offset=offset)
            array = array.view(np.memmap)  # mapped: the file's pages, shared and read-only
        else:
            check_fits_in_memory(nbytes, str(self.path))
            array = np.empty(shape, expected)
            self._read_into(memoryview(array.reshape(-1).view(np.uint8)), offset)
        return NpyFile(array, head, self)


@dataclass
class NpyFile:
    """An array read or mapped from a ``.npy`` file, with what its checksum needs."""

    array: np.ndarray
    head: bytes
    file: OpenFile

    def verify(self) -> None:
        """Check the bytes in use (header + array) against the file's checksum."""
        self.file._verify([self.head, self.array])


def check_fits_in_memory(nbytes: int, what: str) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` when this machine has less memory available.

    Example:
        >>> check_fits_in_memory(1 << 60, "x.npy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        MemoryError: x.npy needs 1073741824.0 GiB ...
    """
    available = _available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(
            f"{what} needs {nbytes / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of "
            "memory is available: load it memory-mapped (mmap=True) or on a larger machine."
        )


def _available_memory() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def load_folder(source: str | os.PathLike[str] | Folder, read: Callable[[Folder], T]) -> T:
    """``read(folder)`` on the folder at ``source``, opened once; again if it was replaced mid-read.

    ``read`` must open every file it uses through ``folder`` (never by path), and keep what it
    read or mapped: a save that replaces the folder meanwhile deletes the opened version's files,
    and a file deleted under ``read`` makes it start again on the new version. A ``source``
    that is already a :class:`Folder` (a sub-folder of one being read) is read as it is.
    """
    if isinstance(source, Folder):
        return read(source)
    for _ in range(_LOAD_ATTEMPTS):
        with Folder.open(source) as folder:
            try:
                return read(folder)
            except _FolderChanged:
                continue
    raise AnchorFileError(
        f"{source} was replaced {_LOAD_ATTEMPTS} times while loading it: load it again once "
        "the process writing it has finished."
    )
