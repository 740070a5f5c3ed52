"""Calibration of ``predict_proba``: the fixed temperature 0.01 vs one chosen on held-out data.

For asif's default space (offline EfficientNet-Lite0 + all-MiniLM-L6-v2 over the 2,195
coco-mini + imagenet-sample pairs, or ``--anchors flickr8k``), with ``combine="max"`` (asif's
default) and ``"mean"`` (CLIP_benchmark's), 18 CIFAR templates:

1. CIFAR-10 test: the temperature is chosen (lowest expected calibration error, 15 bins) on
   the even-numbered half of each class and reported on the odd-numbered half.
2. Distribution shift: texture-shape silhouettes with the temperature chosen on CIFAR-10, and
   with one chosen on texture-shape edges (same 16 classes, other drawings).

Every number comes from the public API: ``RelativeSpace``, ``ZeroShotClassifier.
choose_temperature`` and :mod:`asif.calibration`. Embeddings come from the on-disk cache
(``cache=True``): the first run encodes everything.

Usage:
    .venv/bin/python benchmarks/bench_calibration.py            # 2,000 CIFAR-10 images
    .venv/bin/python benchmarks/bench_calibration.py --all      # all 10,000

Results: ``benchmarks/results/bench_calibration.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from asif import RelativeSpace
from asif.calibration import DEFAULT_TEMPERATURE, expected_calibration_error, softmax
from asif.data import read_image_folder
from asif.eval.run import balanced_subset
from asif.eval.sources import load_anchor_pairs
from asif.templates import CIFAR_TEMPLATES

from common import DATA, RESULTS, machine

N_BINS = 15


def halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the even- and odd-numbered images of each class (tuning, report)."""
    tune, report = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        tune += members[0::2].tolist()
        report += members[1::2].tolist()
    return np.array(sorted(tune)), np.array(sorted(report))


def measure(scores: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """ECE, negative log-likelihood, accuracy and mean confidence at one temperature."""
    proba = softmax(scores, temperature)
    rows = np.arange(len(labels))
    return {
        "ece": expected_calibration_error(proba, labels, N_BINS),
        "nll": float(-np.mean(np.log(np.maximum(proba[rows, labels], 1e-300)))),
        "top1": float(np.mean(proba.argmax(axis=1) == labels)),
        "confidence": float(proba.max(axis=1).mean()),
    }


def row(tuned_on: str, reported_on: str, combine: str, t: float, scores, labels) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    fixed, chosen = measure(scores, labels, DEFAULT_TEMPERATURE), measure(scores, labels, t)
    return {
        "tuned_on": tuned_on,
        "reported_on": reported_on,
        "combine": combine,
        "temperature": t,
        "n": len(labels),
        "fixed": fixed,
        "chosen": chosen,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", nargs="+", default=["coco-mini", "imagenet-sample"])
    parser.add_argument("--limit", type=int, default=2000, help="CIFAR-10 images (balanced)")
    parser.add_argument("--all", action="store_true", help="all 10,000 CIFAR-10 test images")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    pairs = load_anchor_pairs(args.anchors, root=DATA)
    space = RelativeSpace(cache=True, show_progress_bar=True).fit(pairs.image_paths, pairs.captions)
    cifar = read_image_folder(DATA / "cifar10-test")
    labels = np.asarray(cifar.labels)
    chosen = np.arange(len(labels)) if args.all else balanced_subset(labels, args.limit, 0)
    tune, report = halves(labels[chosen])
    cifar_x = space.encode_images([cifar.paths[i] for i in chosen])
    edges = read_image_folder(DATA / "texture-shape" / "edges")
    silhouettes = read_image_folder(DATA / "texture-shape" / "silhouettes")
    assert edges.classnames == silhouettes.classnames
    edges_x, silhouettes_x = (
        space.encode_images(edges.paths),
        space.encode_images(silhouettes.paths),
    )

    rows = []
    for combine in ("max", "mean"):
        clf = space.zero_shot_classifier(cifar.classnames, CIFAR_TEMPLATES, combine=combine)
        y = labels[chosen]
        t_cifar = clf.choose_temperature(cifar_x[tune], y[tune], n_bins=N_BINS)
        scores = clf.decision_function(cifar_x)
        rows.append(
            row(
                "cifar10 even half", "cifar10 odd half", combine, t_cifar, scores[report], y[report]
            )
        )
        rows.append(
            row(
                "cifar10 even half",
                "cifar10 even half (tuning)",
                combine,
                t_cifar,
                scores[tune],
                y[tune],
            )
        )

        shapes = space.zero_shot_classifier(edges.classnames, CIFAR_TEMPLATES, combine=combine)
        s_scores = shapes.decision_function(silhouettes_x)
        s_labels = np.asarray(silhouettes.labels)
        rows.append(
            row(
                "cifar10 even half",
                "texture-shape silhouettes",
                combine,
                t_cifar,
                s_scores,
                s_labels,
            )
        )
        t_edges = shapes.choose_temperature(edges_x, edges.labels, n_bins=N_BINS)
        rows.append(
            row(
                "texture-shape edges",
                "texture-shape silhouettes",
                combine,
                t_edges,
                s_scores,
                s_labels,
            )
        )

    snap = space.snapshot()
    header = [
        "# bench_calibration",
        "",
        f"`python benchmarks/bench_calibration.py{' --all' if args.all else ''}`",
        "",
        f"machine: {machine()}",
        f"space: {snap.n_anchors:,} anchors ({', '.join(args.anchors)}), "
        f"{snap.anchors.image_encoder} + {snap.anchors.text_encoder}, k={snap.k_for('image')}, "
        f"p={space.p:g}, hubness={space.hubness:g}; 18 CIFAR templates; CIFAR-10 "
        f"{len(chosen):,} images ({len(tune):,} tuning / {len(report):,} report); "
        f"ECE with {N_BINS} bins; temperatures searched on a log grid 1e-4..1",
        "",
        "| tuned on | reported on | combine | n | T | ECE at T=0.01 | ECE at T | NLL at 0.01 | NLL at T | top-1 | mean confidence at 0.01 -> T |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = [
        f"| {r['tuned_on']} | {r['reported_on']} | {r['combine']} | {r['n']:,} | "
        f"{r['temperature']:.4g} | {r['fixed']['ece']:.3f} | **{r['chosen']['ece']:.3f}** | "
        f"{r['fixed']['nll']:.2f} | {r['chosen']['nll']:.2f} | {r['chosen']['top1']:.1%} | "
        f"{r['fixed']['confidence']:.1%} -> {r['chosen']['confidence']:.1%} |"
        for r in rows
    ]
    seconds = time.perf_counter() - started
    text = "\n".join([*header, *lines, "", f"{seconds:.0f} s in all."]) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_calibration.md").write_text(text)
    result = {
        "machine": machine(),
        "anchors": args.anchors,
        "n_anchors": snap.n_anchors,
        "n_cifar": len(chosen),
        "n_bins": N_BINS,
        "fixed_temperature": DEFAULT_TEMPERATURE,
        "rows": rows,
        "seconds": round(seconds, 1),
    }
    (RESULTS / "bench_calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
