"""Options shared by the commands that build a space: anchor data, encoders, k, p, hubness."""

from __future__ import annotations

import argparse

from asif.settings import DEFAULT, PAPER

__all__ = ["add_space_options"]


def add_space_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--anchors",
        nargs="+",
        default=["coco-mini", "imagenet-sample"],
        help="anchor pairs: names (flickr8k, coco-mini, imagenet-sample) or caption files "
        "(JSONL/CSV/COCO JSON) (default: coco-mini imagenet-sample, 2,195 pairs; flickr8k has "
        "35,455 and takes far longer to encode the first time)",
    )
    parser.add_argument("--split", help="keep only this split of anchor data that has splits")
    parser.add_argument(
        "--data-root",
        help="the folder named data (flickr8k, cifar10-test, ...) is looked up in "
        "(default: $ASIF_DATA)",
    )
    parser.add_argument("--image-encoder", default="default", help="(default: %(default)s)")
    parser.add_argument("--text-encoder", default="default", help="(default: %(default)s)")
    parser.add_argument(
        "-k",
        type=k_value,
        default=DEFAULT.k,
        help="anchors kept per input, or 'auto': min(1600, N/20) "
        f"(default: %(default)s; the paper: {PAPER.k})",
    )
    parser.add_argument(
        "-p",
        type=float,
        default=DEFAULT.p,
        help=f"exponent on cosines (default: %(default)s; the paper: {PAPER.p:g})",
    )
    parser.add_argument(
        "--hubness",
        type=float,
        default=DEFAULT.hubness,
        help=f"hub down-weighting alpha, 0 = off (default: %(default)s; the paper: {PAPER.hubness:g})",
    )
    parser.add_argument(
        "--center",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT.center,
        help="subtract each modality's anchor mean (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache embeddings on disk")


def k_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be an integer or 'auto', got {text!r}") from None
