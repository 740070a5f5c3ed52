"""``asif zeroshot``: classify a labelled image folder zero-shot and print its accuracy."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from asif.cli.options import add_space_options
from asif.data import read_image_folder
from asif.eval.reports import classification_report, write_json
from asif.eval.run import balanced_subset
from asif.eval.sources import load_anchor_pairs, resolve_data_path
from asif.settings import DEFAULT
from asif.space import RelativeSpace
from asif.templates import TEMPLATES, get_templates

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``asif zeroshot``."""
    zs = commands.add_parser(
        "zeroshot",
        help="classify an image folder zero-shot and print its accuracy",
        description="Build an anchor space from caption data, classify <class>/<image> folders "
        "zero-shot, print top-1 accuracy and a few predictions with the anchors behind them. "
        "Data names are looked up in --data-root or $ASIF_DATA.",
    )
    add_space_options(zs)
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
    zs.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
