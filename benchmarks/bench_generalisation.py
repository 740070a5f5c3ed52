"""Generalisation benchmark (issue 16): the four suites at their full setting, both encoder pairs.

What makes ASIF generalise, with the anchor set as the knob and the encoders frozen:

1. ``shift``: clean vs shifted accuracy (CIFAR-10 vs CIFAR-10-C style corruptions, 15 x 5
   severities; texture-shape photos vs edges and silhouettes) for five anchor sets, three methods
   and both encoder pairs, and effective robustness across these 30 configurations.
2. ``anchors``: accuracy against anchor-set size per source (flickr8k, coco-mini,
   imagenet-sample, all three) and diversity at equal size (every mixture), with the
   effective-robustness line across anchor sets per encoder pair.
3. ``compositional``: easy-VQA seen vs unseen colour-shape combinations, ASIF vs vision-only.
4. ``language``: ASIF vs nearest class mean, k-NN and few-shot classifiers on the same anchor
   images (labels instead of captions), at equal data.

Every accuracy has a 95% percentile bootstrap interval over test images (1,000 resamples).
Embeddings (and corrupted images) are cached, so a second run only scores.

Usage:
    .venv/bin/python benchmarks/bench_generalisation.py                       # everything
    .venv/bin/python benchmarks/bench_generalisation.py --pairs default       # one pair
    .venv/bin/python benchmarks/bench_generalisation.py --suites shift --smoke  # minutes
    .venv/bin/python benchmarks/bench_generalisation.py --pairs default --report-only  # md from JSON

Results: ``benchmarks/results/bench_generalisation[_<pair>].md``, one
``bench_generalisation_<suite>[_<pair>].json`` per suite and ``bench_generalisation_<suite>*.png``
plots (git-ignored). A ``## Closing note`` section already in the md file is kept, and so are the tables
of suites run earlier (read from their JSON files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from asif.eval.reports import write_json
from asif.eval.suites import SUITES, format_suite, plot_suite, run_suite

from common import RESULTS, machine

ORDER = ("shift", "compositional", "language", "anchors")
PAIRS = ("default", "large")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, default=list(PAIRS))
    parser.add_argument("--suites", nargs="+", choices=list(SUITES), default=list(ORDER))
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--smoke", action="store_true", help="CI-sized subsets (numbers mean little)"
    )
    parser.add_argument("--progress", action="store_true", help="encoder progress bars")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the markdown and plots from the JSON files",
    )
    args = parser.parse_args(argv)
    pairs = tuple(args.pairs)
    tag = ("" if set(pairs) == set(PAIRS) else "_" + "_".join(pairs)) + (
        "_smoke" if args.smoke else ""
    )
    command = "python benchmarks/bench_generalisation.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    done: dict[str, dict[str, Any]] = {}
    if args.report_only:
        report = _earlier(tag, skip={})
        for suite, results in report.items():
            _plots(suite, results, tag)
        command = next(iter(report.values()))["command"]
        _write_markdown(RESULTS / f"bench_generalisation{tag}.md", report, command)
        return 0
    for suite in [s for s in ORDER if s in args.suites]:
        started = time.perf_counter()
        options: dict[str, Any] = {"pairs": pairs, "n_boot": args.boot, "seed": 0}
        options["show_progress_bar"] = args.progress
        if args.smoke:  # small test sets, the quick anchor sources, three corruptions
            options["limit"] = 40
            small = ("coco-mini", "imagenet-sample", "coco-mini+imagenet-sample")
            if suite in ("shift", "anchors"):
                options.update(
                    corruptions=("gaussian_noise", "fog", "contrast"), severities=(1, 3, 5)
                )
                options["anchor_sets" if suite == "shift" else "sources"] = small
            if suite == "language":
                options["anchors"] = small[-1]
        results = run_suite(suite, full=True, **options)
        results["machine"] = machine()
        results["command"] = command
        results["seconds"] = time.perf_counter() - started
        write_json(results, RESULTS / f"bench_generalisation_{suite}{tag}.json")
        _plots(suite, results, tag)
        print(format_suite(results), flush=True)
        done[suite] = results
        report = {**_earlier(tag, skip=done), **done}
        _write_markdown(RESULTS / f"bench_generalisation{tag}.md", report, command)
    return 0


def _earlier(tag: str, skip: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The results of suites run earlier with the same tag (their JSON files), so that the
    markdown report keeps every suite when only some are run again."""
    found = {}
    for suite in ORDER:
        path = RESULTS / f"bench_generalisation_{suite}{tag}.json"
        if suite not in skip and path.exists():
            found[suite] = json.loads(path.read_text())
    return found


def _plots(suite: str, results: dict[str, Any], tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_pair = suite in ("anchors", "language")
    for pair in results["config"]["pairs"] if per_pair else [None]:
        figure = plot_suite(results, **({"pair": pair} if pair else {}))
        name = f"bench_generalisation_{suite}{tag}" + (f"-{pair}" if pair else "") + ".png"
        figure.savefig(RESULTS / name, dpi=120)
        plt.close(figure)


def _write_markdown(path: Path, done: dict[str, dict[str, Any]], command: str) -> None:
    """The tables of every suite run so far, a summary of the key figures, and the closing note."""
    note = ""
    if path.exists():
        old = path.read_text()
        if "## Closing note" in old:
            note = old[old.index("## Closing note") :].rstrip() + "\n"
    first = next(iter(done.values()))
    lines = [
        "# Generalisation benchmark (issue 16)",
        "",
        f"Command: `{command.strip()}`"
        + "".join(
            f"; {s}: `{r['command'].strip()}`"
            for s, r in done.items()
            if r.get("command", command).strip() != command.strip()
        )
        + "  ",
        f"Machine: {first['machine']}  ",
        "Time per suite (first run includes encoding and corrupting; later runs read the caches): "
        + ", ".join(f"{s} {r['seconds'] / 60:.1f} min" for s, r in done.items() if "seconds" in r),
        "",
        "Accuracies are zero-shot top-1 (%) with 95% percentile bootstrap intervals over test images "
        "(1,000 resamples); ER = effective robustness in accuracy points (distance above the "
        "logit-axis line fitted across configurations), with the line refitted on each resample.",
        "",
        "## Summary of the key figures",
        "",
        *_summary(done),
        "",
    ]
    for suite, results in done.items():
        lines += [f"## {suite}", "", "```", format_suite(results), "```", ""]
    path.write_text("\n".join(lines) + ("\n" + note if note else ""))


def _pct(value: float, ci: list[float] | None) -> str:
    return f"{100 * value:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _summary(done: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    if "shift" in done:
        for shift, table in done["shift"]["tables"]["robustness"].items():
            if "fit" not in table:
                continue
            fit = table["fit"]
            ci = fit.get("slope_ci")
            slope = f"{fit['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            groups = "; ".join(
                f"{g['group']} {_signed(g['effective_robustness'], g['effective_robustness_ci'])}"
                for g in table["groups"]
                if not g["group"].startswith("anchors=")
            )
            out.append(f"- shift, {shift}: slope {slope}, R² {fit['r2']:.2f}; mean ER {groups}.")
    if "anchors" in done:
        tables = done["anchors"]["tables"]
        for key, table in tables["robustness"].items():
            if "groups" not in table or ("cifar10 -> cifar10-c" not in key and "edges" not in key):
                continue
            groups = "; ".join(
                f"{g['group']} {_signed(g['effective_robustness'], g['effective_robustness_ci'])}"
                for g in table["groups"]
            )
            out.append(f"- anchors, {key}: mean ER {groups}.")
    if "compositional" in done:
        for r in done["compositional"]["tables"]["accuracy"]:
            out.append(
                f"- compositional, {r['pair']}, {r['method']}: seen {_pct(r['seen'], r.get('seen_ci'))}, "
                f"unseen {_pct(r['unseen'], r.get('unseen_ci'))}."
            )
    if "language" in done:
        for r in done["language"]["tables"]["accuracy"]:
            if r["data"] in ("all pairs", "labelled images", "10-shot"):
                cells = ", ".join(
                    f"{t} {_pct(r[t], r.get(f'{t}_ci'))}"
                    for t in ("cifar10", "photos", "edges", "silhouettes")
                    if t in r
                )
                out.append(f"- language, {r['pair']}, {r['data']}, {r['method']}: {cells}.")
    return out


def _signed(value: float, ci: list[float] | None) -> str:
    return f"{100 * value:+.1f}" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


if __name__ == "__main__":
    raise SystemExit(main())
