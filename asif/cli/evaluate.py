"""``asif eval``: zero-shot classification and retrieval tables beside the baseline; with
``--suite``, the generalisation suites (:mod:`asif.cli.suite`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from asif.cli import suite
from asif.cli.options import add_space_options
from asif.settings import DEFAULT, PAPER, parse_setting

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser(
        "eval",
        help="evaluate zero-shot classification and/or retrieval; table, JSON and plot",
        description="Zero-shot classification of an image folder (top-1/5, mean per class, "
        "confusions) and/or retrieval over caption data (recall@1/5/10 both ways), for the "
        "paper's setting, asif's default and the label-transfer baseline on the same embeddings. "
        "Embeddings are cached, so re-runs with other settings take seconds.",
    )
    add_space_options(ev)
    ev.set_defaults(k=None, p=None, hubness=None, center=None)
    ev.add_argument("--images", help="image folder <class>/<files> to classify (e.g. cifar10-test)")
    ev.add_argument("--captions", help="caption data for retrieval (e.g. flickr8k)")
    ev.add_argument("--caption-split", help="keep only this split of --captions (e.g. dev)")
    ev.add_argument("--templates", default="cifar", help="prompt templates (default: cifar)")
    ev.add_argument(
        "--setting",
        action="append",
        metavar="NAME=K,P,COMBINE[,center][,hub=A]",
        help="an ASIF setting to evaluate, e.g. 'mine=200,4,mean,center'; repeatable "
        "(default: paper=800,8,max and asif's default; -k/-p/--hubness add a 'custom' one)",
    )
    ev.add_argument("--lt-k", type=int, default=20, help="label-transfer neighbours (default: 20)")
    ev.add_argument(
        "--anchor-sizes",
        nargs="+",
        type=int,
        default=[],
        help="also evaluate on random anchor subsets of these sizes (a size >= N: all)",
    )
    ev.add_argument("--ks", nargs="+", type=int, default=[], help="sweep k (first setting)")
    ev.add_argument("--ps", nargs="+", type=float, default=[], help="sweep p (first setting)")
    ev.add_argument("--limit", type=int, help="classify a class-balanced subset of this many")
    ev.add_argument("--seed", type=int, default=0, help="seed of the subsets (default: 0)")
    ev.add_argument("--json", type=Path, help="write the results to this JSON file")
    ev.add_argument("--plot", type=Path, help="write the accuracy-vs-anchors PNG here")
    suite.add_suite_options(ev)
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "suite", None):
        return suite.run(args)
    from asif import eval as ev

    settings = [parse_setting(text) for text in args.setting or []]
    given = {name: getattr(args, name) for name in ("k", "p", "hubness", "center")}
    if any(value is not None for value in given.values()):
        custom = replace(
            DEFAULT, name="custom", **{n: v for n, v in given.items() if v is not None}
        )
        settings.append(custom)
    if not args.setting:
        settings = [PAPER, DEFAULT, *settings]
    results = ev.evaluate(
        anchors=args.anchors,
        anchor_split=args.split,
        images=args.images,
        captions=args.captions,
        caption_split=args.caption_split,
        templates=args.templates,
        settings=settings,
        label_transfer_k=args.lt_k,
        anchor_sizes=args.anchor_sizes,
        ks=args.ks,
        ps=args.ps,
        limit=args.limit,
        seed=args.seed,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        batch_size=args.batch_size,
        cache=None if args.no_cache else True,
        show_progress_bar=True,
        data_root=args.data_root,
    )
    print(ev.format_results(results))
    if args.json:
        print(f"\nresults written to {ev.write_json(results, args.json)}")
    if args.plot:
        if not results.get("anchor_curve"):
            raise ValueError("--plot needs --anchor-sizes (the curve to plot).")
        print(f"plot written to {ev.plot_anchor_curve(results, args.plot)}")
    return 0
