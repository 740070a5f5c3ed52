"""``asif build`` at the speed of the encoder: end to end against its bounds, decoding, memory, swap.

In one run, on flickr8k written as WebDataset tars by this script (img2dataset's layout: one
sample per caption, so each photo is in 5 samples, 10,000 samples per tar) and on coco-mini's
larger photos, with the default encoders (EfficientNet-Lite0 + all-MiniLM-L6-v2), batch size 64:

- ``asif build`` end to end (``build_anchor_set``, decoding in 1 worker process, and in this
  process: ``workers=0``), and today's path, ``RelativeSpace.fit`` on the same pairs;
- the model-only rates: the image forward on pre-decoded tensors (the same forward, batch size
  and threads) and the text encoder on the captions; the decode-and-transform rate in one
  process (as a worker runs it), with and without reduced-size JPEG decoding;
- the serial bound of a build on a CPU, where decoding and the models share the cores:
  ``time = images / decode + images / image model + captions / text model``;
  efficiency = bound / measured time (>= 0.97 is the goal; decoding in a worker beside the
  model can pass 1);
- decode img/s per image size: flickr8k (224 px), coco-mini (up to 512), and the few real
  large JPEGs scikit-image ships (640 to 1411 px; nothing here is upscaled);
- peak memory of a build process (and its decoding workers) at 10k and 35k pairs: RSS and its
  anonymous part (RSS less file-backed pages, which include the memory-mapped shards);
- hot swap of a built 150k-pair set (synthetic unit rows, 1280 + 384 dims) with its hub
  statistics stored: ``AnchorSet.load`` + ``set_anchors`` + the first query, default settings
  (hub weights on), against ``np.load`` of the same two arrays, and without stored statistics;
- precision: bf16 / fp16 against fp32 (cosine of each embedding to its fp32 one; zero-shot
  predictions changed), measured on a few images where the CPU emulates them.

Usage:
    python benchmarks/bench_build.py                      # everything (about an hour here)
    python benchmarks/bench_build.py --quick              # 1,000 flickr8k images, no 35k / 150k
    python benchmarks/bench_build.py --only swap precision
    python benchmarks/bench_build.py --only memory --update   # rerun one part, keep the others
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, RESULTS, machine

BATCH = 64
PER_TAR = 10_000
"""Samples per tar: img2dataset's default (``number_sample_per_shard``). A work unit never spans
two tars, so this is also the size of the units, whose captions are encoded together."""
PARTS = ("flickr", "coco", "decode", "memory", "swap", "precision")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def flickr_pairs(n_images: int | None) -> list[tuple[str, str]]:
    pairs, seen = [], set()
    with (DATA / "flickr8k" / "captions.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            path = str(DATA / "flickr8k" / row["image"])
            if path not in seen and n_images is not None and len(seen) == n_images:
                break
            seen.add(path)
            pairs.append((path, row["caption"]))
    return pairs


def coco_pairs() -> list[tuple[str, str]]:
    rows = [
        json.loads(x) for x in (DATA / "coco-mini" / "captions.jsonl").read_text().split("\n") if x
    ]
    return [(str(DATA / "coco-mini" / r["image"]), r["caption"]) for r in rows]


# --------------------------------------------------------------------------- rates
def model_rates(
    pairs: list[tuple[str, str]], image: Any, text: Any, n: int = 512
) -> dict[str, float]:
    """images/s of the image forward on pre-decoded tensors; captions/s of the text encoder."""
    import torch

    from asif.encoders.image import ImagePreprocessor

    paths = list(dict.fromkeys(p for p, _ in pairs))[:n]
    preprocess = ImagePreprocessor(image.data_config)
    pixels = torch.stack([preprocess(p) for p in paths])
    image.encode_preprocessed(pixels[:BATCH], batch_size=BATCH)  # warm up
    _, image_s = timed(lambda: image.encode_preprocessed(pixels, batch_size=BATCH))
    captions = [c for _, c in pairs][: 5 * n]
    text.encode(captions[:BATCH], batch_size=BATCH)
    _, text_s = timed(lambda: text.encode(captions, batch_size=BATCH))
    return {
        "image_model": len(paths) / image_s,
        "text_model": len(captions) / text_s,
        "threads": torch.get_num_threads(),
    }


def decode_rate(
    files: list[str], data_config: dict[str, Any], draft: bool, repeat: int = 1
) -> float:
    """images/s of reading + decoding + transforming in this process, one thread."""
    import torch

    from asif.encoders.image import ImagePreprocessor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        preprocess = ImagePreprocessor(data_config, draft=draft)
        preprocess(Path(files[0]).read_bytes())
        t = time.perf_counter()
        for _ in range(repeat):
            for f in files:
                preprocess(Path(f).read_bytes(), name=f)
        return repeat * len(files) / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)


def bound_seconds(images: int, captions: int, rates: dict[str, float], decode: float) -> float:
    return images / decode + images / rates["image_model"] + captions / rates["text_model"]


# --------------------------------------------------------------------------- end to end
def build(
    pattern: str, out: Path, image: Any, text: Any, workers: int, **options: Any
) -> dict[str, Any]:
    from asif.build import build_anchor_set

    shutil.rmtree(out, ignore_errors=True)
    anchors, seconds = timed(
        lambda: build_anchor_set(
            [pattern],
            out,
            image_encoder=image,
            text_encoder=text,
            batch_size=BATCH,
            workers=workers,
            show_progress_bar=False,
            **options,
        )
    )
    counts = anchors.provenance["counts"]
    return {
        "seconds": seconds,
        "pairs": len(anchors),
        "images": counts["images_encoded"],
        "captions": counts["texts_encoded"],
        "anchors": anchors,
    }


def fit(pairs: list[tuple[str, str]], image: Any, text: Any) -> float:
    from asif import RelativeSpace

    space = RelativeSpace(image_encoder=image, text_encoder=text, batch_size=BATCH, hubness=0)
    _, seconds = timed(lambda: space.fit([p for p, _ in pairs], [c for _, c in pairs]))
    return seconds


def end_to_end(
    name: str, pairs: list[tuple[str, str]], work: Path, image: Any, text: Any
) -> dict[str, Any]:
    from asif.build import write_webdataset

    pattern = write_webdataset(pairs, work / f"{name}-wds-{PER_TAR}", per_tar=PER_TAR)
    images = len({p for p, _ in pairs})
    files = list(dict.fromkeys(p for p, _ in pairs))[:512]
    before = {
        **model_rates(pairs, image, text),
        "decode": decode_rate(files, image.data_config, True),
    }
    rows = {}
    for label, workers in (("asif build, 1 decoding worker", 1), ("asif build, workers=0", 0)):
        rows[label] = build(pattern, work / f"{name}-built", image, text, workers)
        built = rows[label].pop("anchors")
    # the build's last step, timed again on its result: what the serial bound leaves out
    _, hub_s = timed(lambda: built.compute_hub_statistics("default"))
    fit_s = fit(pairs, image, text)
    after = {
        **model_rates(pairs, image, text),
        "decode": decode_rate(files, image.data_config, True),
    }
    # the machine is shared: the rates are measured before and after the runs, and averaged
    rates = {k: (before[k] + after[k]) / 2 for k in before}
    decode = rates.pop("decode")
    bound = bound_seconds(images, len(pairs), rates, decode)
    out = {
        "pairs": len(pairs),
        "images": images,
        "per_tar": PER_TAR,
        "rates": {**rates, "decode": decode},
        "rates_before": before,
        "rates_after": after,
        "bound_seconds": bound,
        "bound_pairs_per_s": len(pairs) / bound,
        "model_only_pairs_per_s": len(pairs)
        / (images / rates["image_model"] + len(pairs) / rates["text_model"]),
        "rows": [],
    }
    for label, r in rows.items():
        # a build deduplicates a unit's images by content, fit by path: two files of flickr8k
        # hold the same photo, and a unit holding both encodes it once
        assert images - 2 <= r["images"] <= images, (r["images"], images)
        out["rows"].append(
            {
                "path": label,
                "images_encoded": r["images"],
                "seconds": r["seconds"],
                "hub_seconds": hub_s,
                "pairs_per_s": len(pairs) / r["seconds"],
                "of_bound": bound / r["seconds"],
                "of_bound_less_hubs": bound / (r["seconds"] - hub_s),
            }
        )
    out["rows"].append(
        {
            "path": "RelativeSpace.fit (today; no hub statistics)",
            "seconds": fit_s,
            "hub_seconds": 0.0,
            "pairs_per_s": len(pairs) / fit_s,
            "of_bound": bound / fit_s,
            "of_bound_less_hubs": bound / fit_s,
        }
    )
    return out


# --------------------------------------------------------------------------- decode sizes
def large_jpegs(work: Path) -> dict[str, list[str]]:
    """scikit-image's real photos as JPEGs at their own size (PNGs re-encoded, never resized)."""
    import skimage
    from PIL import Image

    folder = Path(skimage.__file__).parent / "data"
    out: dict[str, list[str]] = {}
    names = [
        "retina.jpg",
        "hubble_deep_field.jpg",
        "rocket.jpg",
        "motorcycle_left.png",
        "coffee.png",
        "astronaut.png",
        "chelsea.png",
    ]
    for name in names:
        image = Image.open(folder / name).convert("RGB")
        path = folder / name
        if not name.endswith(".jpg"):
            path = work / (Path(name).stem + ".jpg")
            image.save(path, quality=90)
        out[f"{name} {image.size[0]}x{image.size[1]}"] = [str(path)]
    return out


def decode_table(work: Path, data_config: dict[str, Any]) -> list[dict[str, Any]]:
    from PIL import Image

    groups: dict[str, list[str]] = {
        "flickr8k (224 x 224)": [p for p, _ in flickr_pairs(256)][::5],
        "coco-mini (up to 512)": sorted({p for p, _ in coco_pairs()}),
    }
    groups.update(large_jpegs(work))
    rows = []
    for label, files in groups.items():
        repeat = max(1, 200 // len(files))
        full = decode_rate(files, data_config, draft=False, repeat=repeat)
        drafted = decode_rate(files, data_config, draft=True, repeat=repeat)
        sizes = [Image.open(f).size for f in files]
        rows.append(
            {
                "images": label,
                "n": len(files),
                "median_short_side": int(np.median([min(s) for s in sizes])),
                "full_img_s": full,
                "draft_img_s": drafted,
                "gain": drafted / full,
            }
        )
    return rows


# --------------------------------------------------------------------------- memory
_MEMORY_SCRIPT = """
import sys, json
from asif.build import build_anchor_set
from asif.encoders import load_image_encoder, load_text_encoder
a = build_anchor_set([sys.argv[1]], sys.argv[2], limit=int(sys.argv[3]), workers=1, batch_size=64,
                     image_encoder=load_image_encoder("default", device="cpu"),
                     text_encoder=load_text_encoder("default", device="cpu"))
print(json.dumps({"pairs": len(a)}))
"""


def peak_memory(pattern: str, out: Path, limit: int) -> dict[str, Any]:
    """Peak RSS (and its anonymous part) of a build process and its workers, sampled every 0.1 s."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _MEMORY_SCRIPT, pattern, str(out), str(limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    peak = {"rss": 0, "anon": 0, "main_rss": 0, "main_anon": 0}
    started = time.perf_counter()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            infos = [p.memory_info() for p in procs]
        except psutil.Error:
            time.sleep(0.1)
            continue
        rss = sum(i.rss for i in infos)
        anon = sum(i.rss - i.shared for i in infos)
        peak["rss"], peak["anon"] = max(peak["rss"], rss), max(peak["anon"], anon)
        peak["main_rss"] = max(peak["main_rss"], infos[0].rss)
        peak["main_anon"] = max(peak["main_anon"], infos[0].rss - infos[0].shared)
        time.sleep(0.1)
    pairs = json.loads(process.stdout.read().decode().strip().splitlines()[-1])["pairs"]
    return {
        "pairs": pairs,
        "seconds": time.perf_counter() - started,
        **{k: v / 2**20 for k, v in peak.items()},
    }


# --------------------------------------------------------------------------- swap
def swap(work: Path, n: int) -> dict[str, Any]:
    from asif import AnchorSet, RelativeSpace

    rng = np.random.default_rng(0)
    folder = work / f"swap-{n}"
    if not (folder / "manifest.json").is_file():
        rows = []
        for d in (1280, 384):
            x = rng.standard_normal((n, d), dtype=np.float32)
            rows.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        anchors = AnchorSet(*rows, captions=[f"synthetic pair {i}" for i in range(n)])
        del rows
        _, save_s = timed(lambda: anchors.save(folder, hub_ks="default"))
        del anchors
    else:
        save_s = None
    shard = folder / "shards" / "000000"
    query_i = rng.standard_normal((1, 1280)).astype(np.float32)
    query_t = rng.standard_normal((1, 384)).astype(np.float32)

    def np_load() -> None:
        np.load(shard / "image_embeddings.npy")
        np.load(shard / "text_embeddings.npy")

    def hot_swap(stored: bool) -> None:
        anchors = AnchorSet.load(folder)
        if not stored:
            anchors.hub_statistics.clear()
        space = RelativeSpace().set_anchors(anchors)
        space.transform_images(query_i)
        space.transform_texts(query_t)

    np_load()
    hot_swap(True)  # warm the page cache
    np_s = min(timed(np_load)[1] for _ in range(3))
    swap_s = min(timed(lambda: hot_swap(True))[1] for _ in range(3))
    bare_s = timed(lambda: hot_swap(False))[1]
    return {
        "n": n,
        "save_with_hub_statistics_s": save_s,
        "np_load_s": np_s,
        "swap_stored_s": swap_s,
        "swap_without_s": bare_s,
        "ratio": swap_s / np_s,
        "ks": sorted({k for _, k in AnchorSet.load(folder).hub_statistics}),
    }


# --------------------------------------------------------------------------- precision
def precision(image: Any, text: Any, n_images: int, n_test: int) -> list[dict[str, Any]]:
    """bf16 / fp16 (autocast; emulated on a CPU without them) against fp32."""
    import torch

    from asif import RelativeSpace
    from asif.data import read_image_folder
    from asif.encoders import load_image_encoder, load_text_encoder
    from asif.encoders.image import ImagePreprocessor
    from asif.encoders.precision import apply_precision
    from asif.eval.run import balanced_subset
    from asif.templates import get_templates

    pairs = coco_pairs()
    anchors_paths = list(dict.fromkeys(p for p, _ in pairs))
    space = RelativeSpace(image_encoder=image, text_encoder=text, cache=True)
    space.fit([p for p, _ in pairs], [c for _, c in pairs])
    folder = read_image_folder(DATA / "cifar10-test")
    chosen = balanced_subset(np.asarray(folder.labels), n_test, 0)
    tests = [folder.paths[i] for i in chosen]
    labels = np.asarray(folder.classnames)[np.asarray(folder.labels)[chosen]]  # predict: names
    templates = get_templates("cifar")
    prompts = [t.format(c) for c in folder.classnames for t in templates]
    preprocess = ImagePreprocessor(image.data_config)
    probe = torch.stack([preprocess(p) for p in anchors_paths[:n_images]])
    test_pixels = torch.stack([preprocess(p) for p in tests])
    reference = {
        "probe": image.encode_preprocessed(probe),
        "test": image.encode_preprocessed(test_pixels),
        "prompts": text.encode(prompts, batch_size=BATCH),
        "captions": text.encode([c for _, c in pairs[:256]], batch_size=BATCH),
    }

    def predict(test_rows: np.ndarray, prompt_rows: np.ndarray) -> np.ndarray:
        clf = space.zero_shot_classifier(
            folder.classnames,
            templates,
            prompt_embeddings=prompt_rows.reshape(len(folder.classnames), len(templates), -1),
        )
        return clf.predict(test_rows)

    base = predict(reference["test"], reference["prompts"])
    rows = [{"precision": "fp32", "top1": float((base == labels).mean())}]
    for p in ("bf16", "fp16"):
        low_i = apply_precision(load_image_encoder("default", device="cpu"), p)
        low_t = apply_precision(load_text_encoder("default", device="cpu"), p)
        (probe_rows, test_rows), seconds = timed(
            lambda: (low_i.encode_preprocessed(probe), low_i.encode_preprocessed(test_pixels))  # noqa: B023
        )
        prompt_rows = low_t.encode(prompts, batch_size=BATCH)
        caption_rows = low_t.encode([c for _, c in pairs[:256]], batch_size=BATCH)
        cos_i = _cosines(probe_rows, reference["probe"])
        cos_t = _cosines(caption_rows, reference["captions"])
        predicted = predict(test_rows, prompt_rows)
        rows.append(
            {
                "precision": p,
                "image_cos_min": float(cos_i.min()),
                "image_cos_mean": float(cos_i.mean()),
                "text_cos_min": float(cos_t.min()),
                "text_cos_mean": float(cos_t.mean()),
                "changed": float((predicted != base).mean()),
                "top1": float((predicted == labels).mean()),
                "image_s_per_img": seconds / (len(probe) + len(test_pixels)),
            }
        )
    return rows


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosines (reduced-precision rows are unit vectors only to their rounding)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- report
def _seconds(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def report(result: dict[str, Any]) -> str:
    lines = [
        "# bench_build: `asif build` at the speed of the encoder",
        "",
        f"{result['machine']}; load average {result['load']:.1f} at the start (the machine is shared: compare ratios within this run).",
        f"Default encoders, batch size {BATCH}, torch threads {result.get('threads')}. Command: `{result['command']}`.",
        *(
            f"Updated: {', '.join(u['parts'])} by `{u['command']}` (load average {u['load']:.1f})."
            for u in result.get("updates", [])
        ),
        "",
    ]
    for name in ("flickr", "coco"):
        r = result.get(name)
        if not r:
            continue
        lines += [
            f"## {name}: {r['pairs']} pairs over {r['images']} images (WebDataset tars of "
            f"{r.get('per_tar', 1000):,} samples written here)",
            "",
            f"Model-only: image {r['rates']['image_model']:.1f} img/s, text {r['rates']['text_model']:.0f} captions/s "
            f"({r['model_only_pairs_per_s']:.1f} pairs/s); decode + transform {r['rates']['decode']:.0f} img/s (one process). "
            f"Serial bound: {r['bound_seconds']:.1f} s = {r['bound_pairs_per_s']:.1f} pairs/s.",
            "",
            "| path | seconds | of which hub statistics | pairs/s | of the serial bound | of the bound, less hub statistics |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {x['path']} | {x['seconds']:.1f} | {_seconds(x.get('hub_seconds'))} | {x['pairs_per_s']:.1f} | "
            f"{x['of_bound']:.3f} | {_ratio(x.get('of_bound_less_hubs'))} |"
            for x in r["rows"]
        ]
        lines += [
            "",
            "Hub statistics (computed once per built set, stored with it: issue item 7) are timed again on the built set; "
            "the serial bound counts decoding and the encoders only.",
            "",
        ]
    if result.get("decode"):
        lines += [
            "## Decode + transform, one process, per image size",
            "",
            "| images | n | median short side | full decode img/s | reduced (draft) img/s | gain |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {x['images']} | {x['n']} | {x['median_short_side']} | {x['full_img_s']:.0f} | {x['draft_img_s']:.0f} | {x['gain']:.2f}x |"
            for x in result["decode"]
        ]
        lines += [
            "",
            "Draft decodes a JPEG at 1/2, 1/4 or 1/8 when its short side stays >= 256 (the resize size): it pays from a 512 px short side.",
            "The large photos are scikit-image's real ones (PNGs re-encoded as JPEG at their own size); no larger photos are here.",
            "",
        ]
    if result.get("memory"):
        lines += [
            "## Peak memory of a build (process + its decoding worker)",
            "",
            "| pairs | seconds | RSS MiB | anonymous MiB | main RSS MiB | main anonymous MiB |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {x['pairs']} | {x['seconds']:.0f} | {x['rss']:.0f} | {x['anon']:.0f} | {x['main_rss']:.0f} | {x['main_anon']:.0f} |"
            for x in result["memory"]
        ]
        lines += [
            "",
            "Anonymous = RSS less file-backed pages (the memory-mapped shards read for the hub statistics are file-backed).",
            "",
        ]
    if result.get("swap"):
        s = result["swap"]
        lines += [
            f"## Hot swap of a built {s['n']:,}-pair set (1280 + 384 dims, hub statistics for k = {s['ks']} stored)",
            "",
            "| what | seconds | / np.load |",
            "|---|---:|---:|",
            f"| np.load of both arrays | {s['np_load_s']:.2f} | 1.00 |",
            f"| AnchorSet.load + set_anchors + first query (stored hub statistics) | {s['swap_stored_s']:.2f} | {s['ratio']:.2f} |",
            f"| the same without stored hub statistics | {s['swap_without_s']:.2f} | {s['swap_without_s'] / s['np_load_s']:.2f} |",
            "",
        ]
    if result.get("precision"):
        lines += [
            "## Precision against fp32 (autocast; emulated on this CPU, so its speed is not a measure)",
            "",
            "| precision | image cos min / mean | caption cos min / mean | zero-shot predictions changed | top-1 | s per image |",
            "|---|---|---|---:|---:|---:|",
        ]
        for x in result["precision"]:
            if x["precision"] == "fp32":
                lines.append(f"| fp32 | 1 | 1 | 0 | {x['top1']:.3f} | |")
            else:
                lines.append(
                    f"| {x['precision']} | {x['image_cos_min']:.4f} / {x['image_cos_mean']:.4f} | {x['text_cos_min']:.4f} / {x['text_cos_mean']:.4f} | {x['changed']:.3f} | {x['top1']:.3f} | {x['image_s_per_img']:.1f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--quick", action="store_true", help="1,000 flickr8k images; no 35k memory run, swap at 20k"
    )
    parser.add_argument("--swap-n", type=int, default=150_000)
    parser.add_argument(
        "--flickr-images", type=int, help="the first N flickr8k images (default: all)"
    )
    parser.add_argument("--precision-images", type=int, default=6)
    parser.add_argument("--precision-tests", type=int, default=30)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--name", default="bench_build")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the parts not run now from the existing results/<name>.json",
    )
    args = parser.parse_args()

    import torch

    from asif.encoders import load_image_encoder, load_text_encoder

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-build-"))
    work.mkdir(parents=True, exist_ok=True)
    image = load_image_encoder("default", device="cpu")
    text = load_text_encoder("default", device="cpu")
    command = "python benchmarks/bench_build.py " + " ".join(sys.argv[1:])
    load = os.getloadavg()[0]
    result: dict[str, Any] = {
        "machine": machine(),
        "load": load,
        "threads": torch.get_num_threads(),
        "command": command,
    }
    if "flickr" in args.only:
        result["flickr"] = end_to_end(
            "flickr8k", flickr_pairs(1000 if args.quick else None), work, image, text
        )
        print(json.dumps(result["flickr"]["rows"], indent=1), flush=True)
    if "coco" in args.only:
        result["coco"] = end_to_end("coco-mini", coco_pairs(), work, image, text)
        print(json.dumps(result["coco"]["rows"], indent=1), flush=True)
    if "decode" in args.only:
        result["decode"] = decode_table(work, image.data_config)
        print(json.dumps(result["decode"], indent=1), flush=True)
    if "memory" in args.only:
        from asif.build import write_webdataset

        pattern = write_webdataset(flickr_pairs(None), work / "memory-wds", per_tar=1000)
        sizes = [2_000, 5_000] if args.quick else [10_000, 35_455]
        result["memory"] = [peak_memory(pattern, work / f"memory-{n}", n) for n in sizes]
        print(json.dumps(result["memory"], indent=1), flush=True)
    if "swap" in args.only:
        result["swap"] = swap(work, 20_000 if args.quick else args.swap_n)
        print(json.dumps(result["swap"], indent=1), flush=True)
    if "precision" in args.only:
        result["precision"] = precision(image, text, args.precision_images, args.precision_tests)
        print(json.dumps(result["precision"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / f"{args.name}.json"
    if args.update and previous.exists():
        old = json.loads(previous.read_text())
        updated = [part for part in PARTS if part in args.only]
        result = {**old, **{part: result[part] for part in updated if part in result}}
        result["updates"] = [
            *old.get("updates", []),
            {"parts": updated, "command": command, "machine": machine(), "load": load},
        ]
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (RESULTS / f"{args.name}.md").write_text(report(result) + "\n")
    print(report(result))


if __name__ == "__main__":
    main()
