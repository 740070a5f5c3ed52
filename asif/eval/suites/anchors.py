"""``anchors``: the data knob — accuracy (clean and shifted) against anchor-set size and diversity.

With the encoders held fixed, the anchor set is ASIF's whole "training data", so its size and
make-up can be varied in seconds on cached embeddings:

- ``curve``: each source (a name or a ``+`` mixture) at growing sizes (random pairs, nested
  draws; ``draws`` of them below the full size), on the shift suite's test sets (CIFAR-10,
  CIFAR-10-C, texture-shape photos / edges / silhouettes).
- ``diversity``: every single source and every mixture of them at one equal size (sources in
  equal shares), so diversity is varied at fixed N.
- ``robustness``: per encoder pair and setting, the effective-robustness line across all these
  anchor sets and each source's mean distance from it (Fang et al. 2022 asked whether the data
  distribution moves the line).

Example:
    >>> mixtures(["flickr8k", "coco-mini+imagenet-sample"])
    ['flickr8k', 'coco-mini', 'imagenet-sample', 'flickr8k+coco-mini', 'flickr8k+imagenet-sample', 'coco-mini+imagenet-sample', 'flickr8k+coco-mini+imagenet-sample']
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from asif.eval.corruptions import CORRUPTIONS, SEVERITIES
from asif.eval.robustness import plot_effective_robustness, robustness_table
from asif.eval.suites.common import (
    AnchorPool,
    AnchorSpec,
    Scored,
    accuracy_interval,
    bootstrap_accuracies,
    bootstrap_draws,
    encoder_space,
    format_table,
    result,
)
from asif.eval.suites.shift import (
    SHIFTS,
    TESTS,
    format_robustness,
    score_configuration,
    shift_tests,
)
from asif.settings import DEFAULT, PAPER, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_SOURCES",
    "FULL",
    "SIZES",
    "format_anchors",
    "mixtures",
    "plot_anchors",
    "run_anchors",
]

DEFAULT_SOURCES = ("coco-mini", "imagenet-sample", "coco-mini+imagenet-sample")
SIZES: tuple[int | None, ...] = (250, 500, 1000, 2000, 5000, 10000, None)
"""Anchor-set sizes of the curve (None: all of a source's pairs); sizes a source lacks are skipped."""

FULL: dict[str, Any] = {
    "pairs": ("default", "large"),
    "sources": ("flickr8k", "coco-mini", "imagenet-sample", "flickr8k+coco-mini+imagenet-sample"),
    "settings": (PAPER, DEFAULT),
    "draws": 3,
    "n_clean": 2000,
    "n_corrupted": 100,
}
"""The benchmark's setting (``--full``)."""


def mixtures(sources: Sequence[str]) -> list[str]:
    """Every non-empty combination of the single sources named in ``sources`` (in first-seen
    order), smallest first: the diversity table's anchor sets."""
    singles = list(dict.fromkeys(s for spec in sources for s in AnchorSpec.parse(spec).sources))
    return [
        "+".join(combo)
        for n in range(1, len(singles) + 1)
        for combo in itertools.combinations(singles, n)
    ]


def run_anchors(
    *,
    pairs: Sequence[str] = ("default",),
    sources: Sequence[str] = DEFAULT_SOURCES,
    sizes: Sequence[int | None] = SIZES,
    equal_size: int | None = 750,
    settings: Sequence[Setting] = (DEFAULT,),
    label_transfer_k: int | None = None,
    draws: int = 1,
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
    """Accuracy against anchor-set size (per source) and diversity (at ``equal_size``), clean and
    shifted, with effective robustness across anchor sets.

    Args:
        pairs: encoder pairs.
        sources: the curve's sources: names or ``+`` mixtures (:class:`AnchorSpec` without a size).
        sizes: the curve's sizes (None: all).
        equal_size: the diversity table's size (None: no diversity table).
        settings, label_transfer_k: the methods (default: asif's default setting only).
        draws: random anchor draws per size below a source's total (accuracies are averaged
            over draws; ``<test>_sd`` is their spread).
        corruptions, severities, n_clean, n_corrupted, texture_shape, limit, templates,
        corruption_dir, corruption_size: the test sets, as in :func:`~asif.eval.suites.shift.run_shift`.
        n_boot, seed: bootstrap resamples and the seed of everything random.
        data_root, cache, batch_size, show_progress_bar: data folder and encoders.

    Returns:
        ``{"suite": "anchors", "config", "tables": {"curve", "diversity", "robustness"}, "notes"}``.
    """
    started = time.perf_counter()
    curve_specs = [AnchorSpec.parse(s) for s in sources]
    if any(s.size is not None for s in curve_specs):
        raise ValueError("anchors suite sources take no @SIZE: the sizes come from sizes=.")
    diverse = mixtures(sources) if equal_size else []
    needed = sorted({s for spec in curve_specs for s in spec.sources})
    tables: dict[str, Any] = {"curve": [], "diversity": [], "robustness": {}}
    notes: list[str] = []
    test_sizes: dict[str, int] = {}
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
        test_sizes = {name: t.n_units for name, t in tests.items()}
        boot = {name: bootstrap_draws(t.n_units, n_boot, seed) for name, t in tests.items()}
        exclude = tests["photos"].paths if "photos" in tests else []
        pool = AnchorPool.load(space, pair, needed, exclude=exclude, root=data_root, seed=seed)
        points: list[dict[str, Any]] = []
        score = {
            "pool": pool,
            "tests": tests,
            "boot": boot,
            "settings": settings,
            "label_transfer_k": label_transfer_k,
        }

        for spec in curve_specs:
            total = pool.size_of(spec)
            chosen = sorted({min(total, s) if s is not None else total for s in sizes})
            for size in chosen:
                full = size >= total
                drawn = AnchorSpec(spec.sources, None if full else size)
                for row, samples in _score_spec(drawn, 1 if full else draws, **score):
                    tables["curve"].append(row)
                    points.append({"row": row, "samples": samples, "table": "curve"})
        for text in diverse:
            spec = AnchorSpec.parse(text)
            if pool.size_of(spec) < equal_size:  # type: ignore[operator]
                notes.append(
                    f"{pair}: {text} has {pool.size_of(spec)} pairs < {equal_size}: left out of the diversity table."
                )
                continue
            for row, samples in _score_spec(AnchorSpec(spec.sources, equal_size), draws, **score):
                tables["diversity"].append(row)
                points.append({"row": row, "samples": samples, "table": "diversity"})
        tables["robustness"].update(_robustness(pair, points, n_boot))
    notes.append(
        f"curve: random pairs, nested across sizes; accuracies averaged over {draws} draw(s) below "
        "a source's full size (<test>_sd: spread over draws); diversity: sources in equal shares "
        f"at N = {equal_size}."
    )
    notes.append(
        "intervals: 95% percentile bootstrap over test images; photos are left out of the anchors."
    )
    config = {
        "pairs": list(pairs),
        "sources": [s.name for s in curve_specs],
        "sizes": [s for s in sizes],
        "equal_size": equal_size,
        "diversity": diverse,
        "settings": [asdict(s) for s in settings],
        "label_transfer_k": label_transfer_k,
        "draws": draws,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "n_clean": n_clean,
        "n_corrupted": n_corrupted,
        "limit": limit,
        "test_images": test_sizes,
        "n_boot": n_boot,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result("anchors", config, tables, notes)


def _score_spec(
    spec: AnchorSpec,
    n_draws: int,
    *,
    pool: AnchorPool,
    tests: dict[str, Any],
    boot: dict[str, np.ndarray],
    settings: Sequence[Setting],
    label_transfer_k: int | None,
) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """One row per method for ``spec``: accuracies averaged over ``n_draws`` anchor draws, their
    spread, and bootstrap samples (over test images) of the draw-averaged accuracy."""
    per_draw, images = [], []
    for d in range(n_draws):
        drawn = AnchorSpec(spec.sources, spec.size, d)
        per_draw.append(score_configuration(pool.anchors(drawn), tests, settings, label_transfer_k))
        images.append(pool.n_images(drawn))
    out = []
    for method in per_draw[0]:
        row: dict[str, Any] = {
            "pair": pool.pair,
            "source": spec.source,
            "anchors": spec.name,
            "n_sources": len(spec.sources),
            "n_anchors": pool.size_of(spec),
            "n_anchor_images": float(np.mean(images)),
            "method": method,
            "draws": n_draws,
        }
        samples = {}
        for name, test in tests.items():
            mean = Scored(np.mean([run[method][name].correct for run in per_draw], axis=0), test)
            row[name] = mean.accuracy
            row[f"{name}_sd"] = float(np.std([run[method][name].accuracy for run in per_draw]))
            if len(boot[name]):
                samples[name] = bootstrap_accuracies(mean, boot[name])
                row[f"{name}_ci"] = accuracy_interval(samples[name])
        out.append((row, samples))
    return out


def _robustness(pair: str, points: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """Per (pair, method): the line across anchor sets, and each source's mean ER."""
    out = {}
    for method in dict.fromkeys(p["row"]["method"] for p in points):
        mine = [p for p in points if p["row"]["method"] == method]
        for clean, shifted in SHIFTS:
            usable = [p for p in mine if clean in p["row"] and shifted in p["row"]]
            if len(usable) < 2:
                continue
            names = [f"{p['table']}: {p['row']['anchors']}" for p in usable]
            groups: dict[str, list[str]] = {}
            for p, name in zip(usable, names, strict=True):
                key = (
                    f"curve: {p['row']['source']}"
                    if p["table"] == "curve"
                    else f"diversity: {p['row']['n_sources']} source(s)"
                )
                groups.setdefault(key, []).append(name)
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
            except ValueError as error:
                table = {"error": str(error)}
            out[f"{pair} | {method} | {clean} -> {shifted}"] = table
    return out


def format_anchors(results: dict[str, Any]) -> str:
    """The suite's tables as text."""
    tables = results["tables"]
    tests = [t for t in TESTS if any(t in r for r in tables["curve"] + tables["diversity"])]
    lines = [
        "anchors suite: zero-shot top-1 (%) with 95% bootstrap intervals; "
        f"test images {results['config'].get('test_images')}",
        "\naccuracy vs number of anchor pairs (per source)",
    ]
    columns = [("pair", "pair"), ("source", "source"), ("n_anchors", "N"), ("method", "method")]
    lines.append(format_table(tables["curve"], [*columns, *((t, t) for t in tests)]))
    if tables["diversity"]:
        lines.append(f"\ndiversity at equal size (N = {results['config'].get('equal_size')})")
        columns = [
            ("pair", "pair"),
            ("anchors", "anchors"),
            ("n_anchor_images", "images"),
            ("method", "method"),
        ]
        rows = [r | {"n_anchor_images": f"{r['n_anchor_images']:.0f}"} for r in tables["diversity"]]
        lines.append(format_table(rows, [*columns, *((t, t) for t in tests)]))
    lines.append(format_robustness(tables["robustness"]))
    lines += [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join(lines)


def plot_anchors(
    results: dict[str, Any], pair: str | None = None, method: str | None = None
) -> Figure:
    """For one encoder pair and method (default: asif's default setting where it was run):
    accuracy vs anchor count per source (one panel per test set), and effective robustness per
    shift with the diversity configurations marked."""
    import matplotlib.pyplot as plt

    from asif.plots import plot_accuracy_vs_anchors

    tables = results["tables"]
    pair = pair or results["config"]["pairs"][0]
    methods = [r["method"] for r in tables["curve"] if r["pair"] == pair]
    method = method or (DEFAULT.name if DEFAULT.name in methods else methods[0])
    curve = [r for r in tables["curve"] if r["pair"] == pair and r["method"] == method]
    tests = [t for t in TESTS if curve and t in curve[0]]
    shifts = [
        k
        for k, v in tables["robustness"].items()
        if k.startswith(f"{pair} | {method} |") and "rows" in v
    ]
    columns = max(len(tests), len(shifts), 1)
    fig, axes = plt.subplots(
        2, columns, figsize=(4.2 * columns, 7.8), layout="constrained", squeeze=False
    )
    for ax, test in zip(axes[0], tests, strict=False):
        rows = [{"n_anchors": r["n_anchors"], test: r[test], "label": r["source"]} for r in curve]
        plot_accuracy_vs_anchors(rows, metric=test, ax=ax, title=test)
        ax.set_ylabel("top-1 (%)")
    for ax, key in zip(axes[1], shifts, strict=False):
        table = tables["robustness"][key]
        labels = [
            name.split(": ", 1)[0] if name.startswith("diversity") else _source_of(name)
            for name in (r["name"] for r in table["rows"])
        ]
        shift = key.split(" | ")[-1]
        clean, shifted = shift.split(" -> ")
        plot_effective_robustness(
            table, labels=labels, ax=ax, xlabel=f"{clean} accuracy", ylabel=f"{shifted} accuracy"
        )
        ax.set_title(f"{shift}: slope {table['fit']['slope']:.2f}", fontsize=10)
    for ax in [*axes[0][len(tests) :], *axes[1][len(shifts) :]]:
        ax.set_visible(False)
    fig.suptitle(f"anchors suite: {pair} encoders, {method}", fontsize=11)
    return fig


def _source_of(name: str) -> str:
    return name.split(": ", 1)[1].split("@", 1)[0]
