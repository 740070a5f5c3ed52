"""``asif predict``: classify your own images with your own class names.

Example:
    asif predict my-space/ photos/ --classes cat dog "cup of coffee"
    asif predict anchors/ a.jpg b.png --classes-file classes.txt --templates imagenet -o out.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from asif.data import list_image_files
from asif.settings import DEFAULT
from asif.space import RelativeSpace
from asif.templates import CLASSNAMES, TEMPLATES, get_classnames, get_templates

__all__ = ["add_parser", "predict_rows"]

_FORMATS = ("table", "csv", "jsonl")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``asif predict``."""
    p = commands.add_parser(
        "predict",
        help="classify image files or folders into your class names",
        description="Load a space (a folder from RelativeSpace.save / save_pretrained, an anchor "
        "set from AnchorSet.save, or a Hugging Face repo id), classify each image into the given "
        "classes and print (or write) the class, its probability and the anchor captions "
        "behind it.",
    )
    p.add_argument(
        "space", metavar="SPACE_OR_ANCHORS", help="space folder, anchor-set folder or repo id"
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGES", help="image files or flat folders of them"
    )
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", nargs="+", metavar="NAME", help="the class names")
    names.add_argument(
        "--classes-file",
        metavar="FILE",
        help=f"class names, one per line (or a JSON list), or a built-in set: {sorted(CLASSNAMES)}",
    )
    p.add_argument(
        "--templates",
        default="generic",
        help=f"prompt templates: one of {sorted(TEMPLATES)}, a template like 'a photo of a {{}}.', "
        "or a file with one per line (default: %(default)s)",
    )
    p.add_argument(
        "--combine",
        choices=("mean", "max"),
        default=DEFAULT.combine,
        help="over a class's templates: best prompt or mean prompt vector (default: %(default)s)",
    )
    p.add_argument(
        "--top-anchors",
        type=int,
        default=3,
        help="anchor captions listed per image (default: %(default)s)",
    )
    p.add_argument(
        "--format",
        choices=_FORMATS,
        help="table (default on screen), csv or jsonl (default for -o: from its suffix)",
    )
    p.add_argument("-o", "--output", type=Path, help="write the rows to this .csv or .jsonl file")
    p.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    p.add_argument("--device", help="torch device for the encoders (default: cuda if present)")
    p.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = _image_files(args.images)
    classes = list(args.classes) if args.classes else list(get_classnames(args.classes_file))
    templates = get_templates(args.templates)
    options: dict[str, Any] = {"batch_size": args.batch_size, "show_progress_bar": True}
    if args.device:
        options["device"] = args.device
    if args.no_cache:
        options["cache"] = None
    space = RelativeSpace.from_pretrained(args.space, **options)
    clf = space.zero_shot_classifier(classes, templates, combine=args.combine)
    rows = predict_rows(clf, paths, top_anchors=args.top_anchors)
    form = args.format or (_suffix_format(args.output) if args.output else "table")
    if args.output:
        with args.output.open("w", newline="", encoding="utf-8") as out:
            _write(rows, form, out)
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    else:
        _write(rows, form, sys.stdout)
    return 0


def predict_rows(clf: Any, paths: list[str], *, top_anchors: int = 3) -> list[dict[str, Any]]:
    """One row per image: path, class, probability and the anchor captions behind the class.

    The images are embedded once (``clf.encode``); prediction, probabilities and explanations
    all read those embeddings.
    """
    embeddings = clf.encode(paths)
    proba = clf.predict_proba(embeddings)
    best = np.argmax(proba, axis=1)
    rows = []
    for i, path in enumerate(paths):
        explanation = clf.explain(embeddings[i], top=top_anchors) if top_anchors > 0 else None
        captions = [] if explanation is None else [c.caption for c in explanation.contributions]
        rows.append(
            {
                "path": path,
                "class": str(clf.classes_[best[i]]),
                "probability": round(float(proba[i, best[i]]), 4),
                "top_anchors": [c for c in captions if c is not None],
            }
        )
    return rows


def _image_files(inputs: list[str]) -> list[str]:
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            paths += list_image_files(item)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image file or folder.")
    return paths


def _suffix_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("csv", "jsonl"):
        raise ValueError(
            f"cannot tell the format of {path}: name it .csv or .jsonl, or pass --format."
        )
    return suffix


def _write(rows: list[dict[str, Any]], form: str, out: Any) -> None:
    if form == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    if form == "csv":
        writer = csv.writer(out)
        writer.writerow(["path", "class", "probability", "top_anchors"])
        for row in rows:
            anchors = " | ".join(row["top_anchors"])
            writer.writerow([row["path"], row["class"], row["probability"], anchors])
        return
    width = max(len(Path(r["path"]).name) for r in rows)
    for row in rows:
        out.write(
            f"{Path(row['path']).name:<{width}}  {row['class']:<20}  {row['probability']:6.1%}\n"
        )
        for caption in row["top_anchors"]:
            out.write(f"{'':<{width}}    {caption}\n")
