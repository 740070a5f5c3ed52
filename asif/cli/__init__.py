"""The ``asif`` command: one module per subcommand, each registering its own parser.

Example:
    asif zeroshot                      # 1,000 cifar10-test images; coco-mini + imagenet-sample anchors
    asif zeroshot --all --combine mean --templates simple
    asif zeroshot --anchors coco-mini imagenet-sample --images texture-shape/edges
    asif predict my-space/ photos/ --classes cat dog "cup of coffee"
    asif eval --images cifar10-test --anchor-sizes 1000 2000 5000 10000 --plot curve.png
    asif eval --anchors flickr8k --split train --captions flickr8k --caption-split dev
    asif build shards/{000000..000099}.tar -o anchors/   # resumable: run it again after a crash
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asif.cli import build, evaluate, predict, zeroshot

__all__ = ["main"]

COMMANDS = (zeroshot, predict, evaluate, build)
"""Each has ``add_parser(commands)``, which sets ``run`` on its parser."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asif`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as error:
        print(f"asif: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asif", description="Training-free multimodal models from frozen encoders (ASIF)."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
