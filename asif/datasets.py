"""Named anchor sources and test folders found in the data folder (``$ASIF_DATA``).

The data folder defaults to ``shared/data`` beside the project checkout (``../shared/data`` from
the project root), else ``../shared/data`` from the current folder. Any caption file or image
folder can be given by path instead of by name.

Example:
    >>> sorted(ANCHOR_SOURCES)
    ['coco-mini', 'flickr8k', 'imagenet-sample']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asif.data import CaptionPairs, read_caption_pairs

__all__ = ["ANCHOR_SOURCES", "AnchorSource", "data_root", "load_anchor_pairs"]


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


def data_root() -> Path:
    """The data folder: ``$ASIF_DATA``, else the first ``shared/data`` found beside the project."""
    env = os.environ.get("ASIF_DATA")
    if env:
        return Path(env).expanduser()
    candidates = [
        Path(__file__).resolve().parents[2] / "shared" / "data",
        Path.cwd().resolve().parent / "shared" / "data",
        Path.cwd().resolve() / "shared" / "data",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "no data folder found: set ASIF_DATA to the folder holding flickr8k/, coco-mini/, ... "
        f"(looked in {', '.join(str(c) for c in candidates)})."
    )


def resolve_data_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given when it exists, else the same path inside the data folder."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    inside = data_root() / path
    if inside.exists():
        return inside
    raise FileNotFoundError(f"{name_or_path} not found here nor in the data folder {data_root()}.")


def load_anchor_pairs(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], split: str | None = None
) -> CaptionPairs:
    """Image-caption pairs by name (``"flickr8k"``, ``"coco-mini"``, ``"imagenet-sample"``) or path.

    Args:
        source: a name from ``ANCHOR_SOURCES`` or a caption file (JSONL, CSV, COCO JSON), or a
            list of them, concatenated in order.
        split: keep only this split (e.g. ``"train"``) of the sources that have splits; sources
            without splits are kept whole.

    Example:
        >>> pairs = load_anchor_pairs(["coco-mini", "imagenet-sample"])  # doctest: +SKIP
        >>> pairs.captions[-1]  # doctest: +SKIP
        'a photo of a toilet tissue.'
    """
    if not isinstance(source, (str, os.PathLike)):
        parts = [load_anchor_pairs(one, split=split) for one in source]
        if not parts:
            raise ValueError("no anchor sources given: name at least one, e.g. 'coco-mini'.")
        return CaptionPairs(
            [p for part in parts for p in part.image_paths],
            [c for part in parts for c in part.captions],
        )
    spec = ANCHOR_SOURCES.get(str(source))
    if spec is None:
        pairs = read_caption_pairs(resolve_data_path(source))
    else:
        pairs = read_caption_pairs(data_root() / spec.file, caption_key=spec.caption_key)
        if spec.caption_template != "{}":
            captions = [spec.caption_template.format(c) for c in pairs.captions]
            pairs = CaptionPairs(pairs.image_paths, captions, pairs.splits)
    if split is not None and pairs.splits is not None:
        pairs = pairs.select(split)
    return pairs
