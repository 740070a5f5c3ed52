"""Where anchor pairs come from: caption files, WebDataset tars, Parquet files, ``datasets``.

A :class:`Source` is a list of *parts* (files, or one in-memory dataset); a part is a sequence
of samples with stable keys, counted without decoding anything and read by range, so a build can
cut it into work units, hand them to worker processes and read any unit again after a crash.
A :class:`Sample` carries the image undecoded (encoded bytes, or a file path) and the caption;
what is wrong with it (no image, no caption) is left for the build to report.

- :class:`CaptionFileSource`: JSONL / CSV / COCO caption files, read by
  :func:`asif.data.read_caption_pairs`; relative image paths against the file's folder.
- :class:`WebDatasetSource`: tar shards as img2dataset writes them (``KEY.jpg`` + ``KEY.txt`` or
  ``KEY.json``), with brace patterns (``shards/{000000..000099}.tar``); read by
  :func:`asif.build.tar.tar_files`.
- :class:`ParquetSource`: image bytes (a binary column, or the ``{"bytes", "path"}`` struct of a
  ``datasets`` Image column) or image paths, and captions (``pip install "asif[build]"``).
- :class:`DatasetSource`: a Hugging Face ``datasets.Dataset`` in Python.

Example:
    >>> expand_braces("shards/{000..002}.tar")
    ['shards/000.tar', 'shards/001.tar', 'shards/002.tar']
    >>> expand_braces("{a,b}-{1..2}.parquet")
    ['a-1.parquet', 'a-2.parquet', 'b-1.parquet', 'b-2.parquet']
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from asif.build.tar import tar_files
from asif.data import read_caption_pairs

__all__ = [
    "CaptionFileSource",
    "DatasetSource",
    "ParquetSource",
    "Part",
    "Sample",
    "Source",
    "WebDatasetSource",
    "expand_braces",
    "open_sources",
    "write_webdataset",
]

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm")
"""WebDataset member extensions taken as the image (the first one present)."""
CAPTION_FIELDS = ("caption", "text", "txt")
"""JSON fields (and Parquet / dataset columns) taken as the caption, in this order."""
IMAGE_COLUMNS = ("image", "jpg", "png", "webp", "img", "image_bytes", "image_path", "path")
"""Parquet / dataset columns taken as the image, in this order."""
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension split
_READ_ROWS = 256


@dataclass(frozen=True)
class Sample:
    """One image-caption pair as read, not yet decoded.

    Attributes:
        key: its key in its source (``"00003.tar/000000042"``, ``"captions.jsonl#17"``); kept as
            the anchor set's ``keys`` column and in skip reports.
        caption: the caption (None when the sample has none).
        image: the encoded image bytes, a file path (a ``str``), or None when there is none.
        image_path: kept as the anchor's ``image_paths`` entry: a file path, URL or member name.
        problem: why the sample cannot be used, when reading already tells (e.g. no image).
    """

    key: str
    caption: str | None
    image: bytes | str | None
    image_path: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Part:
    """One part of a source: its name and a stamp that changes when its content may have.

    Attributes:
        name: a file path, or the dataset's name.
        stamp: JSON values (file size and mtime, or a dataset fingerprint) a resumed build
            compares with the ones it started from.
    """

    name: str
    stamp: list[Any]


class Source(ABC):
    """Samples in parts, each counted and read by range (see the module docstring)."""

    kind: str = "source"

    @abstractmethod
    def parts(self) -> list[Part]:
        """The parts, in order (cheap: no part is read)."""

    @abstractmethod
    def count(self, part: int) -> int:
        """How many samples part ``part`` holds (may read its index, never decodes)."""

    @abstractmethod
    def read(self, part: int, start: int, stop: int) -> Iterator[Sample]:
        """Samples ``start .. stop - 1`` of part ``part``, in order."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON description (kind, paths, options): recorded in the build's provenance."""

    def cut_points(self, part: int) -> Sequence[int] | None:
        """Sorted sample positions where a work unit may start, or None for any position.

        Caption files give the first row of each run of rows naming one image, so the captions
        of an image are never split between units (its image is decoded and encoded once).
        """
        return None


def _stamp(path: str) -> list[Any]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _missing(path: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: {path}")


class CaptionFileSource(Source):
    """A JSONL, CSV or COCO caption file (:func:`asif.data.read_caption_pairs`).

    Image files are read by the build (missing ones are skipped and reported); keys are
    ``"<file name>#<row>"``. The file is parsed whole, once per process: fine up to some
    millions of rows; beyond, use WebDataset or Parquet.

    Args:
        path: the caption file.
        format: ``"jsonl"``, ``"csv"`` or ``"coco"``; None guesses from the name.
        image_key: the image field or column.
        caption_key: the caption field or column.
        image_root: folder relative image paths are resolved against (default: the file's).
    """

    kind = "captions"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        image_key: str = "image",
        caption_key: str = "caption",
        image_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise _missing(self.path, "caption file")
        self.format = format
        self.image_key = image_key
        self.caption_key = caption_key
        self.image_root = None if image_root is None else os.path.abspath(os.fspath(image_root))
        self._pairs: tuple[list[Any], Any] | None = None

    def __repr__(self) -> str:
        return f"CaptionFileSource({self.path!r})"

    def _read(self) -> Any:
        stamp = _stamp(self.path)
        if self._pairs is None or self._pairs[0] != stamp:
            pairs = read_caption_pairs(
                self.path,
                format=self.format,
                image_key=self.image_key,
                caption_key=self.caption_key,
                image_root=self.image_root,
                check_files=False,
            )
            self._pairs = (stamp, pairs)
        return self._pairs[1]

    def parts(self) -> list[Part]:
        return [Part(self.path, _stamp(self.path))]

    def count(self, part: int) -> int:
        return len(self._read())

    def cut_points(self, part: int) -> list[int]:
        paths = self._read().image_paths
        return [i for i in range(len(paths)) if i == 0 or paths[i] != paths[i - 1]]

    def read(self, part: int, start: int, stop: int) -> Iterator[Sample]:
        pairs = self._read()
        name = os.path.basename(self.path)
        for i in range(start, min(stop, len(pairs))):
            path = pairs.image_paths[i]
            yield Sample(f"{name}#{i}", pairs.captions[i], path, path)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "format": self.format,
            "image_key": self.image_key,
            "caption_key": self.caption_key,
            "image_root": self.image_root,
        }


class WebDatasetSource(Source):
    """WebDataset tar shards: ``KEY.jpg`` (or png, webp, ...) + ``KEY.txt`` or ``KEY.json``.

    Members sharing a key (the path up to the first dot of the file name, as webdataset splits
    it) form one sample; a ``.txt`` member is the caption, else the ``caption`` (or ``text``)
    field of the ``.json`` member, whose ``url`` becomes the image path. Keys are
    ``"<tar path>/<key>"``. Tars may be gzip, bzip2 or xz compressed
    (:func:`asif.build.tar.tar_files`).

    Args:
        paths: tar files or patterns (``{000000..000099}`` ranges, ``{a,b}`` lists, globs).
    """

    kind = "webdataset"

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> None:
        patterns = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.patterns = [os.fspath(p) for p in patterns]
        self.paths = _expand_files(self.patterns, "tar shard")

    def __repr__(self) -> str:
        return f"WebDatasetSource({len(self.paths)} tars: {self.paths[0]!r} ...)"

    def parts(self) -> list[Part]:
        return [Part(p, _stamp(p)) for p in self.paths]

    def count(self, part: int) -> int:
        return sum(1 for _ in self._groups(part, 0, None, read=False))

    def read(self, part: int, start: int, stop: int) -> Iterator[Sample]:
        for key, members in self._groups(part, start, stop, read=True):
            yield self._sample(part, key, members)

    def _groups(
        self, part: int, start: int, stop: int | None, *, read: bool
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, {extension: bytes or member name}) of samples start .. stop - 1, in order."""
        index, key, members = -1, None, {}
        for name, content in tar_files(self.paths[part]):
            match = _MEMBER.match(name)
            if match is None:
                continue
            if match.group(1) != key:
                if key is not None and index >= start:
                    yield key, members
                index, key, members = index + 1, match.group(1), {}
                if stop is not None and index >= stop:
                    return
            if index >= start:
                members[match.group(2).lower()] = (name, content() if read else None)
        if key is not None and index >= start:
            yield key, members

    def _sample(self, part: int, key: str, members: dict[str, Any]) -> Sample:
        path = self.paths[part]
        full_key = f"{path}/{key}"
        image_ext = next((e for e in IMAGE_MEMBERS if e in members), None)
        meta: dict[str, Any] = {}
        problem = None
        if "json" in members:
            try:
                loaded = json.loads(members["json"][1])
                meta = loaded if isinstance(loaded, dict) else {}
            except (UnicodeDecodeError, ValueError) as error:
                problem = f"unreadable json member: {error}"
        caption: str | None = None
        if "txt" in members:
            try:
                caption = members["txt"][1].decode("utf-8")
            except UnicodeDecodeError:
                problem = "the txt member is not UTF-8"
        else:
            found = next((meta[f] for f in CAPTION_FIELDS if isinstance(meta.get(f), str)), None)
            caption = found
        if image_ext is None:
            return Sample(full_key, caption, None, None, problem or "no image member")
        name, data = members[image_ext]
        url = meta.get("url")
        image_path = url if isinstance(url, str) and url else f"{path}/{name}"
        if caption is None and problem is None:
            problem = "no caption (a txt member, or a caption in the json member)"
        return Sample(full_key, caption, data, image_path, problem)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "patterns": self.patterns, "n_tars": len(self.paths)}


class ParquetSource(Source):
    """Parquet files with an image column (bytes, a ``{"bytes", "path"}`` struct, or paths) and
    a caption column (needs ``pyarrow``: ``pip install "asif[build]"``).

    Relative image paths are resolved against the file's folder; URLs are not downloaded (such
    rows are skipped and reported). Keys are the ``key_column`` values, else
    ``"<file>#<row>"``.

    Args:
        paths: Parquet files or patterns (as for :class:`WebDatasetSource`).
        image_column: the image column; None takes the first of :data:`IMAGE_COLUMNS`.
        caption_column: the caption column; None takes the first of :data:`CAPTION_FIELDS`.
        key_column: a column of keys (``"key"`` when present and None is given).
    """

    kind = "parquet"

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        image_column: str | None = None,
        caption_column: str | None = None,
        key_column: str | None = None,
    ) -> None:
        pq = _pyarrow_parquet()
        patterns = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.patterns = [os.fspath(p) for p in patterns]
        self.paths = _expand_files(self.patterns, "Parquet file")
        schema = pq.read_schema(self.paths[0])
        names = list(schema.names)
        self.image_column = image_column or _first_column(names, IMAGE_COLUMNS, "image")
        self.caption_column = caption_column or _first_column(names, CAPTION_FIELDS, "caption")
        self.key_column = key_column or ("key" if "key" in names else None)
        for column in (self.image_column, self.caption_column, self.key_column):
            if column is not None and column not in names:
                raise ValueError(f"{self.paths[0]} has no column {column!r} (columns: {names}).")
        import pyarrow as pa

        kind = schema.field(self.image_column).type
        self._paths_column = pa.types.is_string(kind) or pa.types.is_large_string(kind)

    def __repr__(self) -> str:
        return f"ParquetSource({len(self.paths)} files: {self.paths[0]!r} ...)"

    def parts(self) -> list[Part]:
        return [Part(p, _stamp(p)) for p in self.paths]

    def count(self, part: int) -> int:
        return int(_pyarrow_parquet().ParquetFile(self.paths[part]).metadata.num_rows)

    def cut_points(self, part: int) -> list[int] | None:
        if not self._paths_column:
            return None
        column = _pyarrow_parquet().read_table(self.paths[part], columns=[self.image_column])
        values = column.column(0).to_pylist()
        return [i for i in range(len(values)) if i == 0 or values[i] != values[i - 1]]

    def read(self, part: int, start: int, stop: int) -> Iterator[Sample]:
        pq = _pyarrow_parquet()
        path = self.paths[part]
        folder = os.path.dirname(path)
        name = os.path.basename(path)
        file = pq.ParquetFile(path)
        groups, first, offset = [], None, 0
        for g in range(file.metadata.num_row_groups):
            rows = file.metadata.row_group(g).num_rows
            if offset + rows > start and offset < stop:
                groups.append(g)
                first = offset if first is None else first
            offset += rows
        if not groups:
            return
        columns = [c for c in (self.image_column, self.caption_column, self.key_column) if c]
        row = first
        for batch in file.iter_batches(_READ_ROWS, row_groups=groups, columns=columns):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                if start <= row < stop:
                    key = data[self.key_column][i] if self.key_column else None
                    key = f"{name}#{row}" if key is None else str(key)
                    yield _row_sample(
                        key, data[self.image_column][i], data[self.caption_column][i], folder
                    )
                row += 1
                if row >= stop:
                    return

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "patterns": self.patterns,
            "n_files": len(self.paths),
            "image_column": self.image_column,
            "caption_column": self.caption_column,
            "key_column": self.key_column,
        }


class DatasetSource(Source):
    """A Hugging Face ``datasets.Dataset`` (one part, read by row ranges).

    An ``Image`` column is read undecoded (``decode=False``: the stored bytes or paths), so the
    build decodes it as it decodes files; a string column is taken as image paths. Keys are the
    ``key_column`` values, else ``"<name>#<row>"``; the stamp is the dataset's fingerprint.

    Args:
        dataset: the dataset (a ``DatasetDict`` must be given one split).
        image_column: None: the one ``Image`` column, else the first of :data:`IMAGE_COLUMNS`.
        caption_column: None: the first of :data:`CAPTION_FIELDS`.
        key_column: a column of keys (``"key"`` when present and None is given).
        name: the dataset's name in keys and reports (default: its ``info.dataset_name``).
    """

    kind = "datasets"

    def __init__(
        self,
        dataset: Any,
        *,
        image_column: str | None = None,
        caption_column: str | None = None,
        key_column: str | None = None,
        name: str | None = None,
    ) -> None:
        features = getattr(dataset, "features", None)
        if not hasattr(features, "items") or not hasattr(dataset, "select"):
            raise TypeError(
                "DatasetSource takes a datasets.Dataset (for a DatasetDict, pick a split: "
                f"dataset['train']), got {type(dataset).__name__}."
            )
        names = list(features)
        typed = [n for n, f in features.items() if type(f).__name__ == "Image"]
        self.image_column = image_column or (
            typed[0] if len(typed) == 1 else _first_column(names, IMAGE_COLUMNS, "image")
        )
        self.caption_column = caption_column or _first_column(names, CAPTION_FIELDS, "caption")
        self.key_column = key_column or ("key" if "key" in names else None)
        for column in (self.image_column, self.caption_column, self.key_column):
            if column is not None and column not in names:
                raise ValueError(f"the dataset has no column {column!r} (columns: {names}).")
        if type(features[self.image_column]).__name__ == "Image":
            import datasets

            dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
        columns = [c for c in (self.image_column, self.caption_column, self.key_column) if c]
        self.dataset = dataset.select_columns(columns)
        info = getattr(dataset, "info", None)
        self.name = name or getattr(info, "dataset_name", None) or "dataset"

    def __repr__(self) -> str:
        return f"DatasetSource({self.name!r}, {len(self.dataset)} rows)"

    def parts(self) -> list[Part]:
        fingerprint = getattr(self.dataset, "_fingerprint", None)
        return [Part(self.name, [len(self.dataset), fingerprint])]

    def count(self, part: int) -> int:
        return len(self.dataset)

    def read(self, part: int, start: int, stop: int) -> Iterator[Sample]:
        stop = min(stop, len(self.dataset))
        for chunk in range(start, stop, _READ_ROWS):
            rows = self.dataset[chunk : min(stop, chunk + _READ_ROWS)]
            for i, image in enumerate(rows[self.image_column]):
                key = rows[self.key_column][i] if self.key_column else None
                key = f"{self.name}#{chunk + i}" if key is None else str(key)
                yield _row_sample(key, image, rows[self.caption_column][i], None)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "n": len(self.dataset),
            "image_column": self.image_column,
            "caption_column": self.caption_column,
            "key_column": self.key_column,
        }


def open_sources(sources: Any) -> list[Source]:
    """Sources from what a user names: :class:`Source` objects, ``datasets.Dataset`` objects,
    caption files (``.jsonl``, ``.ndjson``, ``.csv``, ``.tsv``, COCO ``.json``), tar shards or
    patterns (``.tar``, ``.tar.gz``, ``.tgz``) and Parquet files or patterns (``.parquet``).

    Consecutive tar (or Parquet) paths form one source.

    Raises:
        ValueError: a name of another kind, or no source.
        FileNotFoundError: a file or a pattern's file does not exist.

    Example:
        >>> open_sources(["missing.parquet"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        FileNotFoundError: Parquet file not found: missing.parquet
    """
    items = [sources] if isinstance(sources, (str, os.PathLike, Source)) else list(sources)
    if hasattr(sources, "features"):
        items = [sources]
    out: list[Source] = []
    pending: tuple[str, list[str]] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            kind, paths = pending
            out.append(WebDatasetSource(paths) if kind == "tar" else ParquetSource(paths))
            pending = None

    for item in items:
        if isinstance(item, Source):
            flush()
            out.append(item)
            continue
        if hasattr(item, "features") and hasattr(item, "select"):
            flush()
            out.append(DatasetSource(item))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"a source is a path, a Source or a datasets.Dataset, got {item!r}.")
        path = os.fspath(item)
        kind = _kind_of(path)
        if kind == "captions":
            flush()
            out.append(CaptionFileSource(path))
        elif pending is not None and pending[0] == kind:
            pending[1].append(path)
        else:
            flush()
            pending = (kind, [path])
    flush()
    if not out:
        raise ValueError("no sources given: name caption files, tar shards or Parquet files.")
    return out


def write_webdataset(
    pairs: Sequence[tuple[str | os.PathLike[str], str]],
    folder: str | os.PathLike[str],
    *,
    per_tar: int = 1000,
) -> str:
    """Write image-caption pairs as WebDataset tars the way img2dataset does; returns the pattern.

    Sample ``i`` is ``<i:09d>.<ext>`` (the image file's bytes), ``.txt`` (the caption) and
    ``.json`` (``{"key", "caption", "url"}``, the url being the image's path), in tars
    ``<folder>/<j:05d>.tar`` of ``per_tar`` samples: ``{00000..0000J}.tar``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> Image.new("RGB", (8, 8)).save(f"{root}/a.png")
        >>> pattern = write_webdataset([(f"{root}/a.png", "a black square")] * 3, root, per_tar=2)
        >>> pattern.endswith("{00000..00001}.tar"), WebDatasetSource(pattern).count(1)
        (True, 1)
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    n_tars = max(1, -(-len(pairs) // per_tar))
    for j in range(n_tars):
        with tarfile.open(os.path.join(folder, f"{j:05d}.tar"), "w") as tar:
            for i in range(j * per_tar, min(len(pairs), (j + 1) * per_tar)):
                image, caption = pairs[i]
                image = os.fspath(image)
                ext = os.path.splitext(image)[1].lower().lstrip(".") or "jpg"
                meta = {"key": f"{i:09d}", "caption": caption, "url": image}
                with open(image, "rb") as f:
                    members = [(ext, f.read())]
                members += [("txt", caption.encode()), ("json", json.dumps(meta).encode())]
                for member_ext, data in members:
                    info = tarfile.TarInfo(f"{i:09d}.{member_ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return os.path.join(folder, f"{{00000..{n_tars - 1:05d}}}.tar")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` lists and ``{000..099}`` ranges (zero padding kept), left to right."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    body = match.group(1)
    numbers = _RANGE.fullmatch(body)
    if numbers is not None:
        lo, hi = numbers.group(1), numbers.group(2)
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        step = 1 if int(hi) >= int(lo) else -1
        choices = [f"{i:0{width}d}" for i in range(int(lo), int(hi) + step, step)]
    else:
        choices = body.split(",")
    return [head + c + rest for c in choices for rest in expand_braces(tail)]


def _kind_of(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson", ".csv", ".tsv", ".json")):
        return "captions"
    raise ValueError(
        f"cannot tell what {path!r} is: a source is a caption file (.jsonl, .csv, COCO .json), "
        "WebDataset tars (.tar, brace patterns such as shards/{000000..000099}.tar) or Parquet "
        "files (.parquet)."
    )


def _expand_files(patterns: list[str], what: str) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        for path in expand_braces(pattern):
            if glob.has_magic(path):
                found = sorted(glob.glob(path))
                if not found:
                    raise FileNotFoundError(f"no {what} matches {path}")
                paths.extend(found)
            elif not os.path.isfile(path):
                raise _missing(path, what)
            else:
                paths.append(path)
    if not paths:
        raise ValueError(f"no {what} given.")
    return paths


def _first_column(names: list[str], candidates: Sequence[str], what: str) -> str:
    found = next((c for c in candidates if c in names), None)
    if found is None:
        raise ValueError(
            f"no {what} column among {names}: name it (image_column= / caption_column=)."
        )
    return found


def _row_sample(key: str, image: Any, caption: Any, folder: str | None) -> Sample:
    """A sample from a table row: image bytes, a ``{"bytes", "path"}`` struct or a path."""
    caption = caption if isinstance(caption, str) else None
    problem = None if caption is not None else "no caption"
    path: str | None = None
    if isinstance(image, dict):
        path = image.get("path") if isinstance(image.get("path"), str) else None
        image = image.get("bytes") or path
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Sample(key, caption, bytes(image), path or key, problem)
    if isinstance(image, str) and image:
        if re.match(r"[a-z][a-z0-9+.-]*://", image):
            return Sample(key, caption, None, image, "the image is a URL (asif downloads nothing)")
        full = image if folder is None or os.path.isabs(image) else os.path.join(folder, image)
        return Sample(key, caption, full, full, problem)
    return Sample(key, caption, None, path, "no image")


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError('Parquet sources need pyarrow: pip install "asif[build]"') from None
    return pq
