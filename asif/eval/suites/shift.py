"""``shift``: accuracy on clean data and under distribution shift, and effective robustness.

For each encoder pair, anchor set and method (the paper's setting, asif's default, the
label-transfer baseline), zero-shot top-1 on:

- ``cifar10``: a class-balanced subset of the CIFAR-10 test set (the one ``asif eval --limit``
  takes), and ``cifar10-c``: a smaller subset of the same images with the ``imagecorruptions``
  package's 15 corruptions at severities 1-5 (:mod:`asif.eval.corruptions`), CIFAR-10-C style;
  the images are upsampled to 224 pixels before corrupting (the package's severities are
  ImageNet-C's) and written once into a cache folder.
- ``photos`` (imagenet-sample's photographs of the 16 texture-shape classes, class-balanced;
  :func:`~asif.eval.suites.common.photo_test`), against ``edges`` and ``silhouettes`` of the same
  16 classes. The photos are left out of every anchor set.

Effective robustness (:mod:`asif.eval.robustness`) is fitted across all configurations for each
shift (cifar10 -> cifar10-c, photos -> edges, photos -> silhouettes), with bootstrap intervals
over test images.

Example:
    >>> SHIFTS[0], [name for name, _ in ACCURACY_COLUMNS[:2]]
    (('cifar10', 'cifar10-c'), ['pair', 'anchors'])
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from asif.eval.corruptions import CORRUPTIONS, REPAIRED, SEVERITIES, corrupt_images
from asif.eval.robustness import plot_effective_robustness, robustness_table
from asif.eval.suites.common import (
    AnchorPool,
    AnchorSpec,
    Scored,
    TestSet,
    accuracy_interval,
    bootstrap_accuracies,
    bootstrap_draws,
    encoder_space,
    format_table,
    image_folder_test,
    photo_test,
    result,
    score_label_transfer,
    score_zero_shot,
)
from asif.eval.workbench import Workbench
from asif.settings import DEFAULT, PAPER, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ACCURACY_COLUMNS",
    "DEFAULT_ANCHOR_SETS",
    "FULL",
    "SHIFTS",
    "format_shift",
    "plot_shift",
    "run_shift",
    "score_configuration",
    "shift_tests",
]

DEFAULT_ANCHOR_SETS = ("coco-mini", "imagenet-sample", "coco-mini+imagenet-sample")
"""The anchor sets compared by default: quick to embed (2,239 images)."""

FULL: dict[str, Any] = {
    "pairs": ("default", "large"),
    "anchor_sets": (
        "coco-mini",
        "imagenet-sample",
        "flickr8k",
        "coco-mini+imagenet-sample",
        "flickr8k+coco-mini+imagenet-sample",
    ),
    "n_clean": 2000,
    "n_corrupted": 100,
}
"""The benchmark's setting (``--full``)."""

SHIFTS: tuple[tuple[str, str], ...] = (
    ("cifar10", "cifar10-c"),
    ("photos", "edges"),
    ("photos", "silhouettes"),
)
"""(clean test set, shifted test set) pairs of the effective-robustness fits."""

TESTS = ("cifar10", "cifar10-c", "photos", "edges", "silhouettes")

ACCURACY_COLUMNS = (
    ("pair", "pair"),
    ("anchors", "anchors"),
    ("n_anchors", "N"),
    ("method", "method"),
    *((t, t) for t in TESTS),
)


def shift_tests(
    space: Any,
    *,
    n_clean: int = 1000,
    n_corrupted: int = 100,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    texture_shape: bool = True,
    limit: int | None = None,
    seed: int = 0,
    templates: Any = "cifar",
    corruption_dir: str | os.PathLike[str] | None = None,
    corruption_size: int | None = 224,
    root: str | os.PathLike[str] | None = None,
    show_progress_bar: bool | None = None,
) -> dict[str, TestSet]:
    """The clean and shifted test sets, embedded through ``space`` (a public space's encoders).

    ``limit`` caps every test set (the corrupted one counts its clean source images).
    """
    if limit is not None:
        n_clean, n_corrupted = min(n_clean, limit), min(n_corrupted, limit)
    tests: dict[str, TestSet] = {}
    tests["cifar10"] = image_folder_test(
        "cifar10-test", name="cifar10", limit=n_clean, seed=seed, root=root
    )
    if n_corrupted and corruptions and severities:
        base = image_folder_test("cifar10-test", limit=n_corrupted, seed=seed, root=root)
        made = corrupt_images(
            base.paths,
            corruptions,
            severities,
            folder=corruption_dir,
            seed=seed,
            size=corruption_size,
            show_progress_bar=show_progress_bar,
        )
        tests["cifar10-c"] = TestSet(
            "cifar10-c",
            made.paths,
            base.labels[made.source],
            base.classnames,
            units=made.source,
            meta={"corruption": np.array(made.corruption), "severity": made.severity},
        )
    if texture_shape:
        tests["photos"] = photo_test(root=root, limit=limit)
        for name in ("edges", "silhouettes"):
            tests[name] = image_folder_test(
                f"texture-shape/{name}", name=name, limit=limit, seed=seed, root=root
            )
    for test in tests.values():
        test.embed(space, templates)
    return tests


def score_configuration(
    anchors: Any,
    tests: dict[str, TestSet],
    settings: Sequence[Setting],
    label_transfer_k: int | None = 20,
) -> dict[str, dict[str, Scored]]:
    """{method: {test name: Scored}} for one anchor set: each setting through a
    :class:`~asif.eval.Workbench` (public spaces), and the label-transfer baseline."""
    bench = Workbench(anchors, gpu=False)
    out: dict[str, dict[str, Scored]] = {}
    # the largest k first: the workbench answers smaller ones from its first columns
    for setting in sorted(settings, key=lambda s: -s.resolve_k(len(anchors))):
        out[setting.name] = {name: score_zero_shot(bench, t, setting) for name, t in tests.items()}
    out = {s.name: out[s.name] for s in settings}
    if label_transfer_k:
        out["label-transfer"] = {
            name: score_label_transfer(anchors, t, label_transfer_k) for name, t in tests.items()
        }
    return out


def run_shift(
    *,
    pairs: Sequence[str] = ("default",),
    anchor_sets: Sequence[str] = DEFAULT_ANCHOR_SETS,
    settings: Sequence[Setting] = (PAPER, DEFAULT),
    label_transfer_k: int | None = 20,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    n_clean: int = 1000,
    n_corrupted: int = 100,
    texture_shape: bool = True,
    limit: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    templates: Any = "cifar",
    corruption_dir: str | os.PathLike[str] | None = None,
    corruption_size: int | None = 224,
    data_root: str | os.PathLike[str] | None = None,
    cache: bool | str | None = True,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Clean vs shifted accuracy for every (encoder pair, anchor set, method), and effective
    robustness across them.

    Args:
        pairs: encoder pairs (``"default"``, ``"large"``).
        anchor_sets: anchor-set specs (:class:`~asif.eval.suites.common.AnchorSpec`).
        settings: ASIF settings to compare; ``label_transfer_k``: the baseline's k (None: off).
        corruptions, severities: the CIFAR-10-C cells.
        n_clean: clean CIFAR-10 images (class-balanced); n_corrupted: how many of them are
            corrupted (the first of the same balanced order).
        texture_shape: include photos / edges / silhouettes.
        limit: cap every test set (CI-sized runs).
        n_boot: bootstrap resamples of the test images (0: no intervals).
        seed: seed of subsets, corruptions and bootstrap.
        templates: prompt templates.
        corruption_dir: where corrupted images are kept (default ``$ASIF_CACHE/corruptions``).
        corruption_size: pixels of the shorter side the images are corrupted at (None: native).
        data_root: the data folder (default ``$ASIF_DATA``).
        cache, batch_size, show_progress_bar: for the encoders (``cache=True``: on disk).

    Returns:
        ``{"suite": "shift", "config", "tables": {"accuracy", "corruptions", "robustness"},
        "notes"}``; accuracies are fractions with ``<test>_ci`` 95% intervals.
    """
    started = time.perf_counter()
    specs = [AnchorSpec.parse(s) for s in anchor_sets]
    accuracy_rows: list[dict[str, Any]] = []
    corruption_rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    for pair in pairs:
        space = encoder_space(
            pair, cache=cache, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        tests = shift_tests(
            space,
            n_clean=n_clean,
            n_corrupted=n_corrupted,
            corruptions=corruptions,
            severities=severities,
            texture_shape=texture_shape,
            limit=limit,
            seed=seed,
            templates=templates,
            corruption_dir=corruption_dir,
            corruption_size=corruption_size,
            root=data_root,
            show_progress_bar=show_progress_bar,
        )
        sizes = {name: t.n_units for name, t in tests.items()}
        draws = {name: bootstrap_draws(t.n_units, n_boot, seed) for name, t in tests.items()}
        exclude = tests["photos"].paths if "photos" in tests else []
        pool = AnchorPool.load(
            space,
            pair,
            sorted({s for spec in specs for s in spec.sources}),
            exclude=exclude,
            root=data_root,
            seed=seed,
        )
        for spec in specs:
            anchors = pool.anchors(spec)
            for method, scored in score_configuration(
                anchors, tests, settings, label_transfer_k
            ).items():
                row: dict[str, Any] = {
                    "pair": pair,
                    "anchors": spec.name,
                    "n_anchors": len(anchors),
                    "n_anchor_images": pool.n_images(spec),
                    "method": method,
                }
                samples = {}
                for name, s in scored.items():
                    row[name] = s.accuracy
                    if n_boot:
                        samples[name] = bootstrap_accuracies(s, draws[name])
                        row[f"{name}_ci"] = accuracy_interval(samples[name])
                accuracy_rows.append(row)
                points.append({"row": row, "samples": samples})
                if "cifar10-c" in scored:
                    corruption_rows += _corruption_rows(row, scored["cifar10-c"], n_boot, seed)
    tables: dict[str, Any] = {
        "accuracy": accuracy_rows,
        "corruptions": corruption_rows,
        "robustness": _robustness(points, n_boot),
    }
    notes = [
        f"corrupted images: the imagecorruptions package at {corruption_size or 'native'} px; "
        + "; ".join(f"{k}: {v}" for k, v in REPAIRED.items() if k in corruptions),
        "photos (imagenet-sample, 16 texture-shape classes) are left out of every anchor set; "
        "their accuracy is class-balanced.",
        "intervals: 95% percentile bootstrap over test images (a corrupted image counts with its "
        f"clean source), {n_boot} resamples.",
    ]
    config = {
        "pairs": list(pairs),
        "anchor_sets": [s.name for s in specs],
        "settings": [asdict(s) for s in settings],
        "label_transfer_k": label_transfer_k,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "n_clean": n_clean,
        "n_corrupted": n_corrupted,
        "limit": limit,
        "test_images": sizes,
        "n_boot": n_boot,
        "seed": seed,
        "templates": templates if isinstance(templates, str) else list(map(str, templates)),
        "corruption_size": corruption_size,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result("shift", config, tables, notes)


def _corruption_rows(
    row: dict[str, Any], scored: Scored, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """Accuracy per corruption (over severities) and per severity (over corruptions)."""
    test = scored.test
    out = []
    keys = [("corruption", c) for c in dict.fromkeys(test.meta["corruption"].tolist())]
    keys += [("severity", int(s)) for s in sorted(set(test.meta["severity"].tolist()))]
    for column, value in keys:
        rows = np.flatnonzero(test.meta[column] == value)
        sub = test.subset(rows)
        part = Scored(scored.correct[rows], sub)
        entry = {k: row[k] for k in ("pair", "anchors", "method")}
        entry.update(
            corruption=value if column == "corruption" else "all",
            severity=value if column == "severity" else "all",
        )
        entry["top1"] = part.accuracy
        if n_boot:
            entry["top1_ci"] = accuracy_interval(
                bootstrap_accuracies(part, bootstrap_draws(sub.n_units, n_boot, seed))
            )
        out.append(entry)
    return out


def _robustness(points: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    out = {}
    for clean, shifted in SHIFTS:
        usable = [p for p in points if clean in p["row"] and shifted in p["row"]]
        if len(usable) < 2:
            continue
        names = [
            f"{p['row']['pair']} | {p['row']['anchors']} | {p['row']['method']}" for p in usable
        ]
        groups: dict[str, list[str]] = {}
        for key in ("pair", "method", "anchors"):
            if len({p["row"][key] for p in usable}) < 2:
                continue  # one group holding everything: its mean ER is 0 by construction
            for p, name in zip(usable, names, strict=True):
                groups.setdefault(f"{key}={p['row'][key]}", []).append(name)
        samples = {}
        if n_boot:
            samples = {
                "clean_samples": np.stack([p["samples"][clean] for p in usable], axis=1),
                "shifted_samples": np.stack([p["samples"][shifted] for p in usable], axis=1),
            }
        try:
            table = robustness_table(
                names,
                [p["row"][clean] for p in usable],
                [p["row"][shifted] for p in usable],
                groups=groups,
                **samples,
            )
        except ValueError as error:  # e.g. every configuration at one clean accuracy
            table = {"error": str(error)}
        out[f"{clean} -> {shifted}"] = table
    return out


def format_shift(results: dict[str, Any]) -> str:
    """The suite's tables as text."""
    tables = results["tables"]
    lines = [
        "shift suite: zero-shot top-1 (%) with 95% bootstrap intervals; "
        f"test images {results['config'].get('test_images')}",
        format_table(tables["accuracy"], ACCURACY_COLUMNS),
    ]
    summary = [r for r in tables.get("corruptions", []) if r["severity"] == "all"]
    if summary:
        lines.append("\ncifar10-c by corruption (mean over severities)")
        configs = list(dict.fromkeys((r["pair"], r["anchors"], r["method"]) for r in summary))
        names = list(dict.fromkeys(r["corruption"] for r in summary))
        head = [("config", "config"), *((n, n[:10]) for n in names)]
        grid = []
        for config in configs:
            cells: dict[str, Any] = {"config": " | ".join(config)}
            for r in summary:
                if (r["pair"], r["anchors"], r["method"]) == config:
                    cells[r["corruption"]] = f"{100 * r['top1']:.1f}"
            grid.append(cells)
        lines.append(format_table(grid, head))
    lines.append(format_robustness(tables.get("robustness", {})))
    lines += [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join(lines)


def format_robustness(robustness: dict[str, Any]) -> str:
    """Effective-robustness tables as text (shared with the anchors suite)."""
    lines = []
    for shift, table in robustness.items():
        if "error" in table:
            lines.append(f"\neffective robustness, {shift}: {table['error']}")
            continue
        fit = table["fit"]
        ci = fit.get("slope_ci")
        slope = f"{fit['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        lines.append(
            f"\neffective robustness, {shift}: logit(shifted) = {slope} logit(clean) "
            f"{fit['intercept']:+.2f} (R² {fit['r2']:.2f}, {fit['n']} configurations)"
        )
        rows = [
            {
                "name": r["name"],
                "clean": r["clean"],
                "shifted": r["shifted"],
                "er": r["effective_robustness"],
                "er_ci": r["effective_robustness_ci"],
            }
            for r in table["rows"]
        ]
        lines.append(_format_er(rows, "configuration"))
        if table.get("groups"):
            groups = [
                {
                    "name": g["group"],
                    "er": g["effective_robustness"],
                    "er_ci": g["effective_robustness_ci"],
                }
                for g in table["groups"]
            ]
            lines.append(_format_er(groups, "group mean"))
    return "\n".join(lines)


def _format_er(rows: list[dict[str, Any]], header: str) -> str:
    cells = []
    for r in rows:
        ci = r.get("er_ci")
        er = f"{100 * r['er']:+.1f}" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")
        cell = {"name": r["name"], "er": er}
        if "clean" in r:
            cell.update(clean=f"{100 * r['clean']:.1f}", shifted=f"{100 * r['shifted']:.1f}")
        cells.append(cell)
    columns = [("name", header)]
    if rows and "clean" in rows[0]:
        columns += [("clean", "clean"), ("shifted", "shifted")]
    return format_table(cells, [*columns, ("er", "ER (points)")])


def plot_shift(results: dict[str, Any]) -> Figure:
    """One effective-robustness panel per shift; colour = encoder pair and method."""
    import matplotlib.pyplot as plt

    robustness = {k: v for k, v in results["tables"]["robustness"].items() if "rows" in v}
    if not robustness:
        raise ValueError("no effective-robustness table to plot (needs two configurations).")
    fig, axes = plt.subplots(
        1,
        len(robustness),
        figsize=(5.2 * len(robustness), 4.6),
        layout="constrained",
        squeeze=False,
    )
    for ax, (shift, table) in zip(axes[0], robustness.items(), strict=True):
        labels = [" | ".join(r["name"].split(" | ")[::2]) for r in table["rows"]]
        clean, shifted = shift.split(" -> ")
        plot_effective_robustness(
            table, labels=labels, ax=ax, xlabel=f"{clean} accuracy", ylabel=f"{shifted} accuracy"
        )
        ax.set_title(f"{shift}: slope {table['fit']['slope']:.2f}", fontsize=10)
    return fig
