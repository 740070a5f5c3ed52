"""Readers for image-caption pairs and labelled image folders.

Caption data comes as JSONL (one ``{"image": ..., "caption": ...}`` object a line), CSV (``image`` and
``caption`` columns) or a COCO caption file (``images`` + ``annotations``). Relative image paths are
resolved against the folder of the file that names them. Every reader checks what it reads and
raises an error that names the file, the line or the column at fault.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("cat", "dog"):
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (8, 8)).save(root / name / f"{name}1.png")
    >>> _ = (root / "captions.jsonl").write_text('{"image": "cat/cat1.png", "caption": "a cat"}\\n')
    >>> pairs = read_caption_pairs(root / "captions.jsonl")
    >>> len(pairs), pairs.captions[0], pairs.image_paths[0] == str(root / "cat" / "cat1.png")
    (1, 'a cat', True)
    >>> folder = read_image_folder(root)
    >>> folder.classnames, folder.labels
    (['cat', 'dog'], [0, 1])
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "CaptionPairs",
    "ImageFolder",
    "list_image_files",
    "read_caption_pairs",
    "read_image_folder",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
"""File name endings (lower case) taken as images when a folder is listed."""

_FORMATS = ("jsonl", "csv", "coco")


@dataclass(frozen=True)
class CaptionPairs:
    """Image-caption pairs, one caption a row; an image may appear in several rows.

    Attributes:
        image_paths: path of each row's image (absolute when the source gave a relative path).
        captions: each row's caption.
        splits: each row's split name (``"train"``, ``"dev"``...) when the source has one, else None.
    """

    image_paths: list[str]
    captions: list[str]
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def select(self, split: str | list[str]) -> CaptionPairs:
        """Keep only the rows of one split (or of several).

        Example:
            >>> pairs = CaptionPairs(["a.jpg", "b.jpg"], ["a cat", "a dog"], ["train", "dev"])
            >>> pairs.select("dev").captions
            ['a dog']
        """
        if self.splits is None:
            raise ValueError("these caption pairs have no split column to select from")
        wanted = {split} if isinstance(split, str) else set(split)
        unknown = wanted - set(self.splits)
        if unknown:
            raise ValueError(
                f"unknown split(s) {sorted(unknown)}; the data has {sorted(set(self.splits))}"
            )
        keep = [i for i, s in enumerate(self.splits) if s in wanted]
        return CaptionPairs(
            [self.image_paths[i] for i in keep],
            [self.captions[i] for i in keep],
            [self.splits[i] for i in keep],
        )


@dataclass(frozen=True)
class ImageFolder:
    """A labelled image folder laid out as ``root/<class>/<image files>``.

    Attributes:
        paths: image paths, sorted by class then by file name.
        labels: each image's class index into ``classnames``.
        classnames: the class folder names, sorted.
    """

    paths: list[str]
    labels: list[int]
    classnames: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def read_caption_pairs(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    image_key: str = "image",
    caption_key: str = "caption",
    split_key: str = "split",
    image_root: str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> CaptionPairs:
    """Read image-caption pairs from a JSONL, CSV or COCO caption JSON file.

    Args:
        path: the file. Its format is taken from its name (``.jsonl``/``.ndjson``, ``.csv``/``.tsv``,
            ``.json`` for COCO) unless ``format`` says otherwise.
        format: ``"jsonl"``, ``"csv"`` or ``"coco"``; None guesses from the file name.
        image_key: the field (JSONL) or column (CSV) holding the image path.
        caption_key: the field or column holding the caption; any text field works, for example
            ``"label"`` to caption images from their class names.
        split_key: the optional field or column holding a split name; absent is fine.
        image_root: folder that relative image paths are resolved against; defaults to the folder
            of ``path``.
        check_files: raise ``FileNotFoundError`` when an image file is missing.

    Returns:
        The pairs, in file order.

    Raises:
        FileNotFoundError: the file, or one of the images it names, does not exist.
        ValueError: a malformed line, a missing field or column, or no pairs at all.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "pairs.csv"
        >>> _ = path.write_text("image,caption,split\\na.jpg,a cat,train\\nb.jpg,a dog,dev\\n")
        >>> pairs = read_caption_pairs(path, check_files=False)
        >>> pairs.select("train").captions, pairs.splits
        (['a cat'], ['train', 'dev'])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    fmt = format or _guess_format(path)
    if fmt not in _FORMATS:
        raise ValueError(f"unknown caption format {fmt!r}; use one of {_FORMATS}")
    root = Path(image_root) if image_root is not None else path.parent
    if fmt == "jsonl":
        images, captions, splits = _read_jsonl(path, image_key, caption_key, split_key)
    elif fmt == "csv":
        images, captions, splits = _read_csv(path, image_key, caption_key, split_key)
    else:
        images, captions, splits = _read_coco(path)
    if not captions:
        raise ValueError(f"no image-caption pairs in {path}")
    resolved = _resolve(images, root)
    if check_files:
        _check_exist(resolved, path)
    return CaptionPairs(resolved, captions, splits)


def read_image_folder(
    root: str | os.PathLike[str], *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> ImageFolder:
    """Read a labelled image folder laid out as ``root/<class>/<image files>``.

    Classes are the sub-folder names in sorted order; files within a class are sorted by name;
    hidden files and files with other endings are ignored.

    Args:
        root: the folder.
        extensions: file name endings taken as images (lower case).

    Returns:
        The image paths, their class indices and the class names.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folders, or a class folder with no images.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "airplane").mkdir()
        >>> Image.new("RGB", (4, 4)).save(root / "airplane" / "0001.jpg")
        >>> folder = read_image_folder(root)
        >>> folder.classnames[folder.labels[0]], len(folder)
        ('airplane', 1)
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classnames = sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != ".")
    if not classnames:
        raise ValueError(f"no class folders in {root}; expected {root}/<class>/<image files>")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classnames):
        files = list_image_files(root / name, extensions=extensions, allow_empty=True)
        if not files:
            raise ValueError(f"class folder {root / name} holds no image files ({extensions})")
        paths.extend(files)
        labels.extend([label] * len(files))
    return ImageFolder(paths, labels, classnames)


def list_image_files(
    folder: str | os.PathLike[str],
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    allow_empty: bool = False,
) -> list[str]:
    """List the image files directly inside a folder, sorted by name.

    Args:
        folder: the folder (not searched recursively).
        extensions: file name endings taken as images (lower case).
        allow_empty: return an empty list instead of raising when there are no images.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: no image files and ``allow_empty`` is false.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("b.png", "a.jpg", "notes.txt", ".hidden.png"):
        ...     Image.new("RGB", (4, 4)).save(folder / name, format="PNG")
        >>> [Path(p).name for p in list_image_files(folder)]
        ['a.jpg', 'b.png']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(
        e.path
        for e in os.scandir(folder)
        if e.name[0] != "." and e.name.lower().endswith(extensions) and e.is_file()
    )
    if not files and not allow_empty:
        raise ValueError(f"no image files in {folder} (looked for {', '.join(extensions)})")
    return files


def _guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        return "coco"
    raise ValueError(
        f"cannot tell the format of {path} from its name; pass format= one of {_FORMATS}"
    )


def _read_jsonl(
    path: Path, image_key: str, caption_key: str, split_key: str
) -> tuple[list[str], list[str], list[str] | None]:
    images: list[str] = []
    captions: list[str] = []
    splits: list[str] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            for key in (image_key, caption_key):
                if key not in row:
                    raise ValueError(f"{path}:{lineno}: no {key!r} field (fields: {sorted(row)})")
            images.append(str(row[image_key]))
            captions.append(str(row[caption_key]))
            if split_key in row:
                splits.append(str(row[split_key]))
    if splits and len(splits) != len(captions):
        raise ValueError(f"{path}: the {split_key!r} field is on some lines but not all")
    return images, captions, splits or None


def _read_csv(
    path: Path, image_key: str, caption_key: str, split_key: str
) -> tuple[list[str], list[str], list[str] | None]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = reader.fieldnames or []
        for key in (image_key, caption_key):
            if key not in columns:
                raise ValueError(f"{path}: no {key!r} column (columns: {columns})")
        has_split = split_key in columns
        images: list[str] = []
        captions: list[str] = []
        splits: list[str] = []
        for row in reader:
            images.append(row[image_key])
            captions.append(row[caption_key])
            if has_split:
                splits.append(row[split_key])
    return images, captions, splits if has_split else None


def _read_coco(path: Path) -> tuple[list[str], list[str], None]:
    with path.open(encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path}: a COCO caption file needs 'images' and 'annotations' lists")
    try:
        file_names = {img["id"]: img["file_name"] for img in data["images"]}
        pairs = [(ann["image_id"], ann["caption"]) for ann in data["annotations"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed COCO caption file (missing {e})") from None
    missing = {image_id for image_id, _ in pairs} - file_names.keys()
    if missing:
        raise ValueError(f"{path}: annotations name unknown image ids, e.g. {sorted(missing)[:5]}")
    return [file_names[i] for i, _ in pairs], [c.strip() for _, c in pairs], None


def _resolve(images: list[str], root: Path) -> list[str]:
    base = str(root.absolute())
    cache: dict[str, str] = {}
    out = []
    for image in images:
        full = cache.get(image)
        if full is None:
            full = image if os.path.isabs(image) else os.path.normpath(os.path.join(base, image))
            cache[image] = full
        out.append(full)
    return out


def _check_exist(paths: list[str], source: Path) -> None:
    missing = [p for p in dict.fromkeys(paths) if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise FileNotFoundError(
            f"{len(missing)} image file(s) named in {source} not found: {shown}"
        )
