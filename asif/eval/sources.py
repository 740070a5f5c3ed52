"""Named anchor sources and test folders, looked up in a data folder the user names.

The data folder is ``root=`` where a function takes it, else ``$ASIF_DATA``; the library knows
no other place. Any caption file or image folder can be given by path instead of by name, and
:data:`ANCHOR_SOURCES` can be extended with a user's own named sources.

Example:
    >>> sorted(ANCHOR_SOURCES)
    ['coco-mini', 'flickr8k', 'imagenet-sample']
    >>> data_root("/data/asif")
    PosixPath('/data/asif')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asif.data import CaptionPairs, read_caption_pairs

__all__ = ["ANCHOR_SOURCES", "AnchorSource", "data_root", "load_anchor_pairs", "resolve_data_path"]


@dataclass(frozen=True)
class AnchorSource:
    """Where a named set of anchor pairs lives in the data folder and how to caption it."""

    file: str
    caption_key: str = "caption"
    caption_template: str = "{}"


ANCHOR_SOURCES: dict[str, AnchorSource] = {
    "flickr8k": AnchorSource("flickr8k/captions.jsonl"),
    "coco-mini": AnchorSource("coco-mini/captions.jsonl"),
    "imagenet-sample": AnchorSource(
        "imagenet-sample/labels.jsonl", caption_key="label", caption_template="a photo of a {}."
    ),
}


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``root`` when given, else ``$ASIF_DATA``.

    Raises:
        FileNotFoundError: neither names a folder.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ASIF_DATA")
    if env:
        return Path(env).expanduser()
    raise FileNotFoundError(
        "no data folder: set ASIF_DATA to the folder holding flickr8k/, coco-mini/, ... "
        "(or pass --data-root / root=), or give caption files and image folders by path."
    )


def resolve_data_path(
    name_or_path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """A path as given when it exists, else the same path inside the data folder."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    folder = data_root(root)
    inside = folder / path
    if inside.exists():
        return inside
    raise FileNotFoundError(f"{name_or_path} not found here nor in the data folder {folder}.")


def load_anchor_pairs(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    split: str | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> CaptionPairs:
    """Image-caption pairs by name (``"flickr8k"``, ``"coco-mini"``, ``"imagenet-sample"``) or path.

    Args:
        source: a name from ``ANCHOR_SOURCES`` or a caption file (JSONL, CSV, COCO JSON), or a
            list of them, concatenated in order.
        split: keep only this split (e.g. ``"train"``) of the sources that have splits; sources
            without splits are kept whole.
        root: the data folder named sources live in (default ``$ASIF_DATA``).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "imagenet-sample").mkdir()
        >>> line = '{"image": "images/n1.jpg", "wnid": "n1", "label": "toilet tissue"}'
        >>> _ = (root / "imagenet-sample" / "labels.jsonl").write_text(line + "\\n")
        >>> pairs = load_anchor_pairs("imagenet-sample", root=root)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        FileNotFoundError: 1 image file(s) named in ... not found: ...n1.jpg
        >>> _ = (root / "imagenet-sample" / "images").mkdir()
        >>> _ = (root / "imagenet-sample" / "images" / "n1.jpg").write_bytes(b"")
        >>> load_anchor_pairs("imagenet-sample", root=root).captions
        ['a photo of a toilet tissue.']
    """
    if not isinstance(source, (str, os.PathLike)):
        parts = [load_anchor_pairs(one, split=split, root=root) for one in source]
        if not parts:
            raise ValueError("no anchor sources given: name at least one, e.g. 'coco-mini'.")
        return CaptionPairs(
            [p for part in parts for p in part.image_paths],
            [c for part in parts for c in part.captions],
        )
    spec = ANCHOR_SOURCES.get(str(source))
    if spec is None:
        pairs = read_caption_pairs(resolve_data_path(source, root=root))
    else:
        pairs = read_caption_pairs(data_root(root) / spec.file, caption_key=spec.caption_key)
        if spec.caption_template != "{}":
            captions = [spec.caption_template.format(c) for c in pairs.captions]
            pairs = CaptionPairs(pairs.image_paths, captions, pairs.splits)
    if split is not None and pairs.splits is not None:
        pairs = pairs.select(split)
    return pairs
