"""``asif eval --suite NAME``: the generalisation suites (shift, anchors, compositional, language).

``asif eval`` without ``--suite`` is unchanged; :func:`add_suite_options` adds the suites' flags
to its parser and :func:`run` answers when ``--suite`` is given.

Example:
    asif eval --suite shift --limit 40 --json shift.json --plot shift.png
    asif eval --suite anchors --anchor-set flickr8k --anchor-set coco-mini --sizes 1000 5000 all
    asif eval --suite compositional --pairs default large
    asif eval --suite language --anchor-set flickr8k+coco-mini+imagenet-sample --shots 1 5 10
    asif eval --suite shift --full        # the benchmark's setting (both encoder pairs)
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from asif.settings import DEFAULT, parse_setting

__all__ = ["add_suite_options", "run"]

NAMES = ("shift", "anchors", "compositional", "language")


def add_suite_options(parser: argparse.ArgumentParser) -> None:
    """The suites' flags, in their own group of ``asif eval --help``."""
    group = parser.add_argument_group(
        "generalisation suites (--suite)",
        "Each suite prints its tables, and writes --json and --plot when given; --limit caps "
        "every test set (CI-sized runs), --full is the benchmark's setting. Embeddings and "
        "corrupted images are cached, so re-runs take seconds.",
    )
    group.add_argument("--suite", choices=NAMES, help="run a generalisation suite")
    group.add_argument("--full", action="store_true", help="the suite's full (benchmark) setting")
    group.add_argument(
        "--pairs", nargs="+", choices=("default", "large"), help="encoder pairs (default: default)"
    )
    group.add_argument(
        "--anchor-set",
        action="append",
        metavar="SPEC",
        help="an anchor set SOURCE[+SOURCE...][@SIZE], repeatable (shift: the sets compared; "
        "anchors: the curve's sources; language: the first one)",
    )
    group.add_argument("--corruptions", nargs="+", help="imagecorruptions names (default: the 15)")
    group.add_argument("--severities", nargs="+", type=int, help="corruption severities 1-5")
    group.add_argument("--n-clean", type=int, help="clean CIFAR-10 test images (class-balanced)")
    group.add_argument("--n-corrupted", type=int, help="how many of them are corrupted")
    group.add_argument("--corruption-dir", help="where corrupted images are kept")
    group.add_argument("--sizes", nargs="+", help="anchors: curve sizes ('all' for all pairs)")
    group.add_argument("--equal-size", type=int, help="anchors: N of the diversity table")
    group.add_argument("--draws", type=int, help="anchor / few-shot draws averaged")
    group.add_argument("--shots", nargs="+", type=int, help="language: labelled images per class")
    group.add_argument("--per-combination", type=int, help="compositional: anchors per combination")
    group.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")


def run(args: argparse.Namespace) -> int:
    """Run ``args.suite`` and report it."""
    from asif.eval.reports import write_json
    from asif.eval.suites import format_suite, plot_suite, run_suite

    options = _options(args)
    results = run_suite(args.suite, full=args.full, **options)
    print(format_suite(results))
    if args.json:
        print(f"\nresults written to {write_json(results, args.json)}")
    if args.plot:
        for pair, path in _plot_paths(args, results):
            figure = plot_suite(results, **({"pair": pair} if pair else {}))
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=120)
            print(f"plot written to {path}")
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The run_<suite> keyword arguments the flags give (absent flags: the suite's defaults)."""
    suite = args.suite
    out: dict[str, Any] = {
        "seed": args.seed,
        "n_boot": args.boot,
        "limit": args.limit,
        "cache": None if args.no_cache else True,
        "batch_size": args.batch_size,
        "show_progress_bar": True,
    }
    if suite != "compositional":
        out.update(data_root=args.data_root, templates=args.templates)
    if args.pairs:
        out["pairs"] = tuple(args.pairs)
    settings = _settings(args)
    if settings:
        out["settings"] = settings
    if suite != "anchors":  # the anchors suite compares anchor sets, not methods
        out["label_transfer_k"] = args.lt_k or None
    if args.anchor_set:
        key = {"shift": "anchor_sets", "anchors": "sources", "language": "anchors"}.get(suite)
        if key is None:
            raise ValueError("--anchor-set does not apply to the compositional suite.")
        out[key] = args.anchor_set[0] if suite == "language" else tuple(args.anchor_set)
    shift_like = suite in ("shift", "anchors")
    for flag, key, applies in (
        ("corruptions", "corruptions", shift_like),
        ("severities", "severities", shift_like),
        ("n_clean", "n_clean", suite != "compositional"),
        ("n_corrupted", "n_corrupted", shift_like),
        ("corruption_dir", "corruption_dir", shift_like),
        ("equal_size", "equal_size", suite == "anchors"),
        ("draws", "draws", suite in ("anchors", "language")),
        ("shots", "shots", suite == "language"),
        ("per_combination", "per_combination", suite == "compositional"),
    ):
        value = getattr(args, flag)
        if value is None:
            continue
        if not applies:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to the {suite} suite.")
        out[key] = tuple(value) if isinstance(value, list) else value
    if args.sizes:
        if suite != "anchors":
            raise ValueError(f"--sizes does not apply to the {suite} suite.")
        out["sizes"] = tuple(None if s == "all" else _positive(s) for s in args.sizes)
    return out


def _settings(args: argparse.Namespace) -> list[Any]:
    """``--setting`` values, plus a 'custom' one from -k / -p / --hubness / --center."""
    settings = [parse_setting(text) for text in args.setting or []]
    given = {name: getattr(args, name) for name in ("k", "p", "hubness", "center")}
    if any(value is not None for value in given.values()):
        settings.append(
            replace(DEFAULT, name="custom", **{n: v for n, v in given.items() if v is not None})
        )
    return settings


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--sizes takes integers or 'all', got {text!r}.") from None
    if value < 1:
        raise ValueError(f"--sizes must be at least 1, got {value}.")
    return value


def _plot_paths(args: argparse.Namespace, results: dict[str, Any]) -> list[tuple[str | None, Path]]:
    """One figure, or one per encoder pair for the suites that draw one pair (with -<pair>)."""
    path = Path(args.plot)
    pairs = results["config"].get("pairs", [])
    if args.suite in ("anchors", "language") and len(pairs) > 1:
        return [(p, path.with_name(f"{path.stem}-{p}{path.suffix}")) for p in pairs]
    return [(pairs[0] if args.suite in ("anchors", "language") and pairs else None, path)]
