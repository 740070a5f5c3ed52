"""Zero-shot benchmark: the paper's algorithm vs asif's default vs label transfer, per encoder pair.

One run prints, for each encoder pair:

1. CIFAR-10 test (10,000 images; and its report half), texture-shape edges and silhouettes, with
   flickr8k's 35,455 pairs as anchors: top-1 / top-5 / mean per-class accuracy of the paper's
   setting (k=800, p=8, max over the 18 CIFAR templates), the same with mean over templates,
   asif's default, and the label-transfer baseline.
2. flickr8k dev retrieval (1,000 images, 5,000 captions) with flickr8k train anchors (30,000
   pairs): recall@1/5/10 image->text and text->image.
3. Ablation: each improvement alone on top of the paper's setting, and all together, on the
   *tuning* data (even-numbered half of each CIFAR-10 class, texture-shape edges) and on the
   *report* data (the other half of CIFAR-10, texture-shape silhouettes), plus flickr8k dev.
4. Accuracy vs number of anchors (1k, 2k, 5k, 10k, all; random subsets of flickr8k) on the CIFAR
   report half, as a table and a PNG; and sweeps over k and p on the tuning data.

Embeddings come from the on-disk cache (``cache=True``): the first run encodes everything.

Usage:
    .venv/bin/python benchmarks/bench_zeroshot.py                   # both encoder pairs
    .venv/bin/python benchmarks/bench_zeroshot.py --pairs default   # the default pair only

Results: ``benchmarks/results/bench_zeroshot_<pairs>.{json,md}`` and
``benchmarks/results/anchor_curve_<pair>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace

import numpy as np

from asif import AnchorSet
from asif.data import read_image_folder
from asif.encoders import load_image_encoder, load_text_encoder
from asif.eval import (
    DEFAULT,
    PAPER,
    Setting,
    Workbench,
    classification_report,
    label_transfer_retrieval,
    label_transfer_scores,
    plot_anchor_curve,
    retrieval_report,
)
from asif.eval.sources import load_anchor_pairs
from asif.templates import CIFAR_TEMPLATES, format_prompts

from common import DATA, RESULTS, machine

FOLDERS = ("cifar10-test", "texture-shape/edges", "texture-shape/silhouettes")
PAPER_MEAN = replace(PAPER, name="paper-mean", combine="mean")
LT_K = 20
ANCHOR_SIZES = (1000, 2000, 5000, 10000, 10**9)


def _cached_only(encoder, paths: list[str]) -> np.ndarray:
    """Which of ``paths`` have a cached embedding for ``encoder`` (nothing is encoded)."""
    from asif.encoders.cache import EmbeddingCache

    store = EmbeddingCache()
    keys = store.hash_files(paths)
    found = store.get(encoder.name, keys)  # type: ignore[arg-type]
    return np.array([k in found for k in keys], dtype=bool)


def embed(pair: str, smoke: bool = False, cached_only: bool = False) -> dict:
    """Every embedding the benchmark needs, from the cache (encoded on a first run).

    ``smoke``: a small slice of everything (200 train + 100 dev flickr8k images, 500 CIFAR
    images), to check the script end to end in minutes; its numbers mean nothing.
    ``cached_only``: keep only the images whose embeddings are already cached (while a cache
    is being filled); the tables then say how many were used.
    """
    image_encoder = load_image_encoder(pair, device="cpu")
    text_encoder = load_text_encoder(pair, device="cpu")

    def images(paths: list[str]) -> np.ndarray:
        return image_encoder.encode(paths, batch_size=64, cache=True)

    def texts(items: list[str]) -> np.ndarray:
        return text_encoder.encode(items, batch_size=64, cache=True)

    flickr = load_anchor_pairs("flickr8k")
    if smoke:
        keep = _smoke_rows(flickr.image_paths, flickr.splits)
        flickr = type(flickr)(
            [flickr.image_paths[i] for i in keep],
            [flickr.captions[i] for i in keep],
            [flickr.splits[i] for i in keep],
        )
    if cached_only:
        keep = np.flatnonzero(_cached_only(image_encoder, flickr.image_paths))
        flickr = type(flickr)(
            [flickr.image_paths[i] for i in keep],
            [flickr.captions[i] for i in keep],
            [flickr.splits[i] for i in keep],
        )
    splits = np.array(flickr.splits)
    out: dict = {
        "names": (image_encoder.name, text_encoder.name),
        "anchors": AnchorSet(
            images(flickr.image_paths),
            texts(flickr.captions),
            image_encoder=image_encoder.name,
            text_encoder=text_encoder.name,
        ),
        "splits": splits,
        "flickr_paths": np.array(flickr.image_paths, dtype=object),
    }
    for name in FOLDERS:
        folder = read_image_folder(DATA / name)
        if smoke and len(folder) > 500:
            folder = type(folder)(folder.paths[::20], folder.labels[::20], folder.classnames)
        if cached_only:
            keep = np.flatnonzero(_cached_only(image_encoder, folder.paths))
            paths, labels = [folder.paths[i] for i in keep], [folder.labels[i] for i in keep]
            folder = type(folder)(paths, labels, folder.classnames)
        prompts = texts(format_prompts(folder.classnames, CIFAR_TEMPLATES))
        out[name] = {
            "x": images(folder.paths),
            "y": np.asarray(folder.labels),
            "classes": list(folder.classnames),
            "prompts": prompts.reshape(len(folder.classnames), len(CIFAR_TEMPLATES), -1),
        }
    return out


def _smoke_rows(paths: list[str], splits: list[str]) -> list[int]:
    wanted = {"train": 200, "dev": 100}
    seen: dict[str, set[str]] = {"train": set(), "dev": set()}
    keep = []
    for i, (path, split) in enumerate(zip(paths, splits, strict=True)):
        if split in wanted and (path in seen[split] or len(seen[split]) < wanted[split]):
            seen[split].add(path)
            keep.append(i)
    return keep


def halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tuning half (even-numbered images of each class) and report half (odd-numbered)."""
    tune = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        tune[np.flatnonzero(labels == c)[::2]] = True
    return np.flatnonzero(tune), np.flatnonzero(~tune)


def classify(bench: Workbench, d: dict, rows: np.ndarray | None, setting: Setting | None) -> dict:
    x = d["x"] if rows is None else d.setdefault(("rows", rows.tobytes()), d["x"][rows])
    y = d["y"] if rows is None else d["y"][rows]
    if setting is None:
        scores = label_transfer_scores(x, d["prompts"], bench.anchors, k=LT_K)
    else:
        scores = bench.zero_shot_scores(x, d["prompts"], setting)
    return classification_report(scores, y, d["classes"])


def retrieve(bench: Workbench, gallery: dict, setting: Setting | None) -> dict:
    images, captions, groups = gallery["images"], gallery["texts"], gallery["groups"]
    image_groups = np.arange(len(images))
    if setting is not None:
        scores = bench.retrieval_scores(images, captions, setting)
        return retrieval_report(scores, image_groups, groups)
    i2t = retrieval_report(
        label_transfer_retrieval(images, captions, bench.anchors, LT_K, "image_to_text"),
        image_groups,
        groups,
    )
    t2i = retrieval_report(
        label_transfer_retrieval(images, captions, bench.anchors, LT_K, "text_to_image"),
        image_groups,
        groups,
    )
    out = {k: (i2t if k.startswith("i2t") else t2i)[k] for k in i2t if k != "mean_recall"}
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


def ablation_settings() -> list[Setting]:
    """The paper's setting, each of asif's changes alone on top of it, and all together."""
    out = [PAPER]
    if DEFAULT.combine != PAPER.combine:
        out.append(replace(PAPER, name="+mean", combine=DEFAULT.combine))
    if DEFAULT.k != PAPER.k:
        out.append(replace(PAPER, name=f"+k={DEFAULT.k}", k=DEFAULT.k))
    if DEFAULT.p != PAPER.p:
        out.append(replace(PAPER, name=f"+p={DEFAULT.p:g}", p=DEFAULT.p))
    out.append(replace(PAPER, name="+center", center=True))
    out.append(replace(PAPER, name="+hub=0.5", hubness=0.5))
    if DEFAULT.center:
        out.append(replace(DEFAULT, name="asif-center", center=False))
    if DEFAULT.hubness:
        out.append(replace(DEFAULT, name="asif-hub", hubness=0.0))
    out.append(DEFAULT)
    out.append(replace(DEFAULT, name="asif+center", center=True))
    out.append(replace(DEFAULT, name="asif+hub", hubness=0.5))
    seen, unique = set(), []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique


def run_pair(pair: str, lines: list[str], smoke: bool = False, cached_only: bool = False) -> dict:
    started = time.perf_counter()
    data = embed(pair, smoke, cached_only)
    embedded = time.perf_counter()
    anchors: AnchorSet = data["anchors"]
    train = np.flatnonzero(data["splits"] == "train")
    dev = np.flatnonzero(data["splits"] == "dev")
    dev_paths = data["flickr_paths"][dev]
    unique_dev, first, groups = np.unique(dev_paths, return_index=True, return_inverse=True)
    gallery = {
        "images": np.ascontiguousarray(anchors.image_embeddings[dev[first]]),
        "texts": np.ascontiguousarray(anchors.text_embeddings[dev]),
        "groups": np.asarray(groups).reshape(-1),
    }
    bench = Workbench(anchors)
    train_bench = Workbench(anchors.select(train))
    cifar, edges, silh = (data[name] for name in FOLDERS)
    tune, report = halves(cifar["y"])
    result: dict = {
        "pair": pair,
        "encoders": data["names"],
        "n_anchors": len(anchors),
        "n_train_anchors": len(train),
        "default": asdict(DEFAULT),
        "paper": asdict(PAPER),
        "label_transfer_k": LT_K,
        "seconds_embed": round(embedded - started, 1),
    }
    head = f"encoders: {data['names'][0]} + {data['names'][1]} ({pair})"
    lines += ["", head, "=" * len(head)]

    # 1. main classification table
    methods: list[Setting | None] = [PAPER, PAPER_MEAN, DEFAULT, None]
    sets = [
        (f"CIFAR-10 test ({len(cifar['y']):,})", cifar, None),
        (f"CIFAR-10 report half ({len(report):,})", cifar, report),
        (f"texture-shape edges ({len(edges['y'])})", edges, None),
        (f"texture-shape silhouettes ({len(silh['y'])})", silh, None),
    ]
    lines.append(
        f"\nzero-shot classification, flickr8k anchors (N = {len(anchors):,}), 18 CIFAR templates"
    )
    lines.append(
        f"{'data':32s} {'method':16s} {'setting':24s} {'top-1':>6s} {'top-5':>6s} {'per-cls':>7s}"
    )
    result["classification"] = []
    for label, d, rows in sets:
        for m in methods:
            r = classify(bench, d, rows, m)
            name = "label-transfer" if m is None else m.name
            setting = f"k={LT_K}" if m is None else m.describe()
            k_used = LT_K if m is None else m.resolve_k(len(anchors))
            result["classification"].append(
                {"data": label, "method": name, "setting": setting, "k_used": k_used, **r}
            )
            top5 = "" if r["top5"] is None else f"{r['top5']:.1%}"
            lines.append(
                f"{label:32s} {name:16s} {setting:24s} {r['top1']:>6.1%} {top5:>6s} {r['mean_per_class']:>7.1%}"
            )
        best = result["classification"][-2]  # asif's default on this set
        confused = ", ".join(f"{t}->{p} ({n})" for t, p, n in best["most_confused"][:3])
        lines.append(f"{'':32s} most confused (asif): {confused}")

    # 2. retrieval
    lines.append(
        f"\nflickr8k dev retrieval ({len(unique_dev):,} images, {len(dev):,} captions), "
        f"flickr8k train anchors (N = {len(train):,})"
    )
    cols = " ".join(f"{c:>6s}" for c in ("I>T@1", "@5", "@10", "T>I@1", "@5", "@10", "mean"))
    lines.append(f"{'method':16s} {'setting':24s} {cols}")
    result["retrieval"] = []
    for m in methods:
        r = retrieve(train_bench, gallery, m)
        name = "label-transfer" if m is None else m.name
        setting = f"k={LT_K}" if m is None else m.describe()
        result["retrieval"].append({"method": name, "setting": setting, **r})
        values = [r[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)] + [r["mean_recall"]]
        lines.append(f"{name:16s} {setting:24s} " + " ".join(f"{v:>6.1%}" for v in values))

    # 3. ablation: tuning data vs report data
    lines.append("\nablation (top-1; retrieval: mean recall) -- chosen on TUNE, reported on REPORT")
    lines.append(
        f"{'setting':14s} {'':24s} {'TUNE cifar':>10s} {'edges':>6s} | {'REPORT cifar':>12s} {'silh':>6s} | {'dev ret':>7s}"
    )
    result["ablation"] = []
    for s in ablation_settings():
        row = {
            "name": s.name,
            "setting": s.describe(),
            "tune_cifar": classify(bench, cifar, tune, s)["top1"],
            "tune_edges": classify(bench, edges, None, s)["top1"],
            "report_cifar": classify(bench, cifar, report, s)["top1"],
            "report_silhouettes": classify(bench, silh, None, s)["top1"],
            "dev_retrieval": retrieve(train_bench, gallery, s)["mean_recall"],
        }
        result["ablation"].append(row)
        lines.append(
            f"{s.name:14s} {s.describe():24s} {row['tune_cifar']:>10.1%} {row['tune_edges']:>6.1%} | "
            f"{row['report_cifar']:>12.1%} {row['report_silhouettes']:>6.1%} | {row['dev_retrieval']:>7.1%}"
        )

    # 4. anchors curve (CIFAR report half) and k / p sweeps (tuning data)
    order = np.random.default_rng(0).permutation(len(anchors))
    curve = []
    for size in sorted({min(s, len(anchors)) for s in ANCHOR_SIZES}):
        sub = bench if size == len(anchors) else Workbench(anchors.select(np.sort(order[:size])))
        for m in (PAPER, DEFAULT, None):
            r = classify(sub, cifar, report, m)
            curve.append(
                {
                    "n_anchors": size,
                    "task": "classification",
                    "method": "label-transfer" if m is None else m.name,
                    "top1": r["top1"],
                    "mean_per_class": r["mean_per_class"],
                }
            )
    result["anchor_curve"] = curve
    methods_curve = list(dict.fromkeys(r["method"] for r in curve))
    lines.append("\nCIFAR-10 report half, top-1 vs number of flickr8k anchors (random subsets)")
    lines.append(f"{'N':>8s} " + " ".join(f"{m:>15s}" for m in methods_curve))
    for size in sorted({r["n_anchors"] for r in curve}):
        values = {r["method"]: r["top1"] for r in curve if r["n_anchors"] == size}
        lines.append(f"{size:>8,d} " + " ".join(f"{values[m]:>15.1%}" for m in methods_curve))
    plot = plot_anchor_curve(
        {"anchor_curve": curve, "config": {"images": "cifar10-test (report half)"}},
        RESULTS
        / f"anchor_curve_{pair}{'_smoke' if smoke else ''}{'_cached' if cached_only else ''}.png",
    )
    result["plot"] = str(plot.relative_to(RESULTS.parent.parent))
    lines.append(f"plot: {result['plot']}")

    sweep = []
    lines.append(
        "\nsweep on the TUNING data (CIFAR tune half top-1 / edges top-1), asif's other choices fixed"
    )
    for k in (100, 200, 400, 800, 1600, 2400):
        s = replace(DEFAULT, name=f"k={k}", k=k)
        sweep.append(
            {
                "k": k,
                "p": s.p,
                "tune_cifar": classify(bench, cifar, tune, s)["top1"],
                "tune_edges": classify(bench, edges, None, s)["top1"],
            }
        )
    for p in (1.0, 2.0, 3.0, 3.5, 4.0, 8.0):
        s = replace(DEFAULT, name=f"p={p:g}", p=p)
        sweep.append(
            {
                "k": s.k,
                "p": p,
                "tune_cifar": classify(bench, cifar, tune, s)["top1"],
                "tune_edges": classify(bench, edges, None, s)["top1"],
            }
        )
    result["sweep"] = sweep
    for r in sweep:
        lines.append(
            f"  k={r['k']!s:>5s} p={r['p']:<4g} {r['tune_cifar']:>6.1%} {r['tune_edges']:>6.1%}"
        )
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    lines.append(
        f"(embedding {result['seconds_embed']} s from the cache, total {result['seconds_total']} s)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pairs", nargs="+", default=["default", "large"], choices=["default", "large"]
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, to test the script")
    parser.add_argument(
        "--cached-only", action="store_true", help="use only images already in the cache"
    )
    args = parser.parse_args(argv)
    lines = [
        f"asif zero-shot benchmark: paper = {PAPER.describe()}; asif default = {DEFAULT.describe()}"
        f" (k=auto -> {DEFAULT.resolve_k(35455)} at N = 35,455); label transfer k = {LT_K}",
        "command: .venv/bin/python benchmarks/bench_zeroshot.py --pairs " + " ".join(args.pairs),
        f"machine: {machine()}",
    ]
    results, printed = [], []
    for pair in args.pairs:
        results.append(run_pair(pair, lines, args.smoke, args.cached_only))
        print("\n".join(lines), flush=True)
        printed += lines
        lines.clear()
    tag = "_".join(args.pairs) + ("_smoke" if args.smoke else "")
    tag += "_cached" if args.cached_only else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_zeroshot_{tag}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / f"bench_zeroshot_{tag}.md").write_text("```\n" + "\n".join(printed) + "\n```\n")
    print(f"\nresults written to {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
