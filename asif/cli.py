"""The ``asif`` command: zero-shot classification of an image folder from the command line.

Example:
    asif zeroshot                      # 1,000 cifar10-test images; coco-mini + imagenet-sample anchors
    asif zeroshot --all --combine mean --templates simple
    asif zeroshot --anchors coco-mini imagenet-sample --images texture-shape/edges
    asif eval --images cifar10-test --anchor-sizes 1000 2000 5000 10000 --plot curve.png
    asif eval --anchors flickr8k --split train --captions flickr8k --caption-split dev
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from asif.data import read_image_folder
from asif.eval.reports import classification_report, write_json
from asif.eval.run import balanced_subset
from asif.eval.sources import load_anchor_pairs, resolve_data_path
from asif.settings import DEFAULT, PAPER, parse_setting
from asif.space import RelativeSpace
from asif.templates import TEMPLATES, get_templates

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asif`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"asif: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asif", description="Training-free multimodal models from frozen encoders (ASIF)."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    zs = commands.add_parser(
        "zeroshot",
        help="classify an image folder zero-shot and print its accuracy",
        description="Build an anchor space from caption data, classify <class>/<image> folders "
        "zero-shot, print top-1 accuracy and a few predictions with the anchors behind them. "
        "Data names are looked up in --data-root or $ASIF_DATA.",
    )
    _add_space_options(zs)
    zs.add_argument(
        "--images",
        default="cifar10-test",
        help="image folder <class>/<files> (default: %(default)s)",
    )
    zs.add_argument(
        "--limit",
        type=int,
        default=1000,
        help="classify a class-balanced random subset of this many images (default: %(default)s)",
    )
    zs.add_argument("--all", action="store_true", help="classify every image (ignores --limit)")
    zs.add_argument(
        "--templates",
        default="cifar",
        help=f"prompt templates: one of {sorted(TEMPLATES)} or a template like 'a photo of a {{}}.'",
    )
    zs.add_argument(
        "--combine",
        choices=("mean", "max"),
        default=DEFAULT.combine,
        help="over a class's templates: best prompt or mean prompt vector (default: %(default)s)",
    )
    zs.add_argument("--show", type=int, default=5, help="predictions to explain (default: 5)")
    zs.add_argument("--seed", type=int, default=0, help="seed of the subset (default: 0)")
    zs.add_argument("--json", type=Path, help="also write the results to this JSON file")
    zs.set_defaults(run=_zeroshot)
    _add_eval_parser(commands)
    return parser


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser(
        "eval",
        help="evaluate zero-shot classification and/or retrieval; table, JSON and plot",
        description="Zero-shot classification of an image folder (top-1/5, mean per class, "
        "confusions) and/or retrieval over caption data (recall@1/5/10 both ways), for the "
        "paper's setting, asif's default and the label-transfer baseline on the same embeddings. "
        "Embeddings are cached, so re-runs with other settings take seconds.",
    )
    _add_space_options(ev)
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
    ev.set_defaults(run=_eval)


def _add_space_options(parser: argparse.ArgumentParser) -> None:
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
        type=_k_value,
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


def _k_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"k must be an integer or 'auto', got {text!r}") from None


def _zeroshot(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    pairs = load_anchor_pairs(args.anchors, split=args.split, root=args.data_root)
    folder = read_image_folder(resolve_data_path(args.images, root=args.data_root))
    chosen = (
        np.arange(len(folder))
        if args.all
        else balanced_subset(np.asarray(folder.labels), args.limit, args.seed)
    )
    paths = [folder.paths[i] for i in chosen]
    labels = np.asarray(folder.labels)[chosen]
    space = RelativeSpace(
        k=args.k,
        p=args.p,
        hubness=args.hubness,
        center=args.center,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        batch_size=args.batch_size,
        show_progress_bar=True,
        cache=None if args.no_cache else True,
    )
    n_images = len(set(pairs.image_paths))
    print(f"anchors: {len(pairs)} pairs over {n_images} images from {', '.join(args.anchors)}")
    space.fit(pairs.image_paths, pairs.captions)
    built = time.perf_counter()

    templates = get_templates(args.templates)
    clf = space.zero_shot_classifier(folder.classnames, templates, combine=args.combine)
    embeddings = space.encode_images(paths)
    scores = clf.decision_function(embeddings)
    done = time.perf_counter()

    snap = space.snapshot()
    results = {
        "images": str(resolve_data_path(args.images, root=args.data_root)),
        "n_images": len(paths),
        "n_classes": len(folder.classnames),
        "n_anchors": snap.n_anchors,
        "image_encoder": snap.anchors.image_encoder,
        "text_encoder": snap.anchors.text_encoder,
        "k": snap.k_for("image"),
        "p": args.p,
        "hubness": args.hubness,
        "center": args.center,
        "templates": args.templates,
        "n_templates": len(templates),
        "combine": args.combine,
        **classification_report(scores, labels, folder.classnames),
        "seconds_anchors": round(built - started, 1),
        "seconds_classify": round(done - built, 1),
    }
    _print_results(results)
    _print_examples(clf, embeddings, paths, labels, folder.classnames, args.show)
    if args.json:
        print(f"results written to {write_json(results, args.json)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
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


def _print_results(r: dict) -> None:
    centred = ", centred" if r["center"] else ""
    print(
        f"\nzero-shot on {r['images']}: {r['n_images']} images, {r['n_classes']} classes; "
        f"{r['n_anchors']} anchors, k={r['k']}, p={r['p']:g}, hubness={r['hubness']:g}{centred}, "
        f"{r['n_templates']} '{r['templates']}' templates, combine={r['combine']}"
    )
    print(f"encoders: {r['image_encoder']} + {r['text_encoder']}")
    line = f"top-1 accuracy {r['top1']:.1%}   mean per-class {r['mean_per_class']:.1%}"
    if r["top5"] is not None:
        line += f"   top-5 {r['top5']:.1%}"
    print(line + f"   (chance {1 / r['n_classes']:.1%})")
    print(f"time: anchors {r['seconds_anchors']} s, classification {r['seconds_classify']} s")


def _print_examples(clf, embeddings, paths, labels, classnames, show: int) -> None:
    if show <= 0:
        return
    print("\nsome predictions, with the anchor captions that weigh most in them:")
    rng = np.random.default_rng(1)
    for i in rng.choice(len(paths), size=min(show, len(paths)), replace=False):
        explanation = clf.explain(embeddings[i], top=3)
        mark = "ok " if explanation.label == classnames[labels[i]] else "BAD"
        print(
            f"[{mark}] {Path(paths[i]).parent.name}/{Path(paths[i]).name}: "
            f"predicted {explanation.label!r} (true {classnames[labels[i]]!r})"
        )
        for c in explanation.contributions:
            print(f"        {c.share:6.1%}  {c.caption}")


if __name__ == "__main__":
    raise SystemExit(main())
