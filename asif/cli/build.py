"""``asif build``: build an anchor set (the model) from paired data, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``asif build``."""
    build = commands.add_parser(
        "build",
        help="build an anchor set from image-caption pairs (resumable)",
        description="Read image-caption pairs, decode the images in worker processes, encode "
        "both with the frozen encoders and write a sharded anchor set to ANCHORS_DIR. Killed "
        "and run again with the same arguments, it writes only the missing shards. Bad "
        "samples are skipped and listed in ANCHORS_DIR/skipped.jsonl.",
    )
    build.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="caption files (JSONL/CSV/COCO JSON), WebDataset tars or brace patterns "
        "(shards/{000000..000099}.tar), Parquet files",
    )
    build.add_argument("-o", "--output", required=True, metavar="ANCHORS_DIR", type=Path)
    build.add_argument("--image-encoder", default="default", help="(default: %(default)s)")
    build.add_argument("--text-encoder", default="default", help="(default: %(default)s)")
    build.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    build.add_argument(
        "--workers", type=int, help="decoding processes (default: cores - 1, at most 8)"
    )
    build.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    build.add_argument("--limit", type=int, help="use only the first LIMIT samples")
    build.add_argument(
        "--shard-size", type=int, default=None, help="samples per shard (default: 10000)"
    )
    build.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="encoder precision, where the device runs it natively (default: %(default)s)",
    )
    build.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    build.add_argument(
        "--cache",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="read and store embeddings in the embedding cache (default folder, or DIR)",
    )
    build.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: decoding workers and the encoders on this machine; ray: Ray Data "
        'decode tasks and encoder actors (one per GPU) on the Ray cluster, pip install "asif[ray]" '
        "(default: %(default)s)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from asif.build import DEFAULT_SHARD_SIZE, build_anchor_set
    from asif.build.writer import SKIPPED_LOG

    anchors = build_anchor_set(
        args.sources,
        args.output,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        limit=args.limit,
        shard_size=DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size,
        precision=args.precision,
        strict=args.strict,
        show_progress_bar=not args.quiet,
        cache=args.cache,
        engine=args.engine,
    )
    counts = anchors.provenance.get("counts", {})
    print(
        f"{counts.get('pairs', len(anchors))} pairs built, {counts.get('skipped', 0)} skipped "
        f"(see {args.output / SKIPPED_LOG})"
    )
    return 0
