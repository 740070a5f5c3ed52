"""GPU against CPU in one run: building pairs/s, exact k = 800 search q/s, the compressed index.

Three parts, each measured on the GPU and on the CPU path of the same machine:

1. build: synthetic photo-sized JPEG pairs written as WebDataset tars, built into an anchor set
   by ``asif build`` (:func:`asif.build.build_anchor_set`: decoding in worker processes, the
   default encoder pair at ``precision`` fp32 / bf16 / fp16). Without :mod:`asif.build` the
   public encoders' ``encode`` runs instead (fp32, decoding in the main process). pairs/s is
   pairs over wall time, encoders loaded beforehand.
2. exact search: N random unit anchors (d = 384, float32, made on the GPU where there is one)
   searched for k = 800 by :class:`asif.index.AnchorIndex`: ``gpu=True`` (torch, rows resident)
   against ``gpu=False`` (the streamed CPU kernel over the same arrays); also the upload time
   and whether both give the same top-k.
3. compressed: :class:`asif.index.CompressedIndex` (``IVF_HNSW32,SQ8``: an HNSW coarse quantiser,
   cloned to the GPU with a flat one) over clustered unit vectors (256 random centres), built
   on the CPU, searched there and, loaded with ``gpu=True``, on FAISS's GPUs (needs faiss-gpu);
   recall@800 against exact search.

Without a GPU only the CPU column runs, at the reduced sizes ``--cpu-sizes`` (the table says so).
On one GPU the whole run takes under 8 minutes (``--budget`` seconds: a part that would start
after it is skipped and marked).

Usage:
    python benchmarks/bench_gpu.py                     # GPU machine: N = 1e6, 5e6, 2e7
    python benchmarks/bench_gpu.py --sizes 1e6 2e6     # smaller
    python benchmarks/bench_gpu.py --cpu-only          # the CPU part only

Results: ``benchmarks/results/bench_gpu.{md,json}`` (``bench_gpu_cpu.{md,json}`` without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asif.index import AnchorIndex, CompressedIndex, exact_kernel, gpu_available
from asif.index.gpu import cuda_devices

from common import RESULTS, machine

K = 800
D = 384
BLOCK = 1 << 20
GPU_DEVICE = "cuda"
CENTRES = 256
"""Clusters of the compressed part's anchors and queries."""


# --------------------------------------------------------------------------- helpers
class Clock:
    """Wall time since the start, against a budget."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def unit_blocks(
    n: int, d: int, seed: int, on_gpu: bool, centres: np.ndarray | None = None
) -> list[np.ndarray]:
    """n random unit rows in float32 blocks of 2**20 rows, made by torch (on the GPU if asked).

    With ``centres`` (m, d): each row is a random centre plus noise of half its norm (data an
    inverted file can index); else uniform on the sphere.
    """
    import torch

    device = GPU_DEVICE if on_gpu else "cpu"
    gen = torch.Generator(device=device).manual_seed(seed)
    middle = None if centres is None else torch.as_tensor(centres, device=device)
    blocks = []
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        x = torch.randn((m, d), generator=gen, device=device) * (0.5 / d**0.5)
        if middle is not None:
            pick = torch.randint(0, middle.shape[0], (m,), generator=gen, device=device)
            x += middle[pick]
        blocks.append(torch.nn.functional.normalize(x, dim=1).cpu().numpy())
    return blocks


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of each row of ``a`` found in the same row of ``b`` (recall@k)."""
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)]))


def gpu_name() -> str:
    devices = cuda_devices()
    if not devices:
        return "no GPU"
    import torch

    names = {torch.cuda.get_device_name(i) for i in range(len(devices))}
    return f"{len(devices)} x {', '.join(sorted(names))}, torch {torch.__version__}"


# --------------------------------------------------------------------------- 1. build
def synthetic_pairs(folder: Path, n: int) -> list[tuple[str, str]]:
    """n JPEG photos (320 x 240, smooth colour fields plus noise) and captions."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    pairs = []
    for i in range(n):
        a, b, c = rng.random(3) * 6
        base = np.stack(
            [np.sin(xx / 40 * a + b), np.cos(yy / 30 * b + c), np.sin((xx + yy) / 50 * c)], -1
        )
        pixels = np.clip((base * 0.5 + 0.5) * 220 + rng.normal(0, 12, base.shape), 0, 255)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        pairs.append((str(path), f"a synthetic photo of pattern {i % 97} in colour {i % 13}"))
    return pairs


def build_rates(
    pairs: list[tuple[str, str]], work: Path, device: str, precisions: list[str], workers: int
) -> list[dict[str, Any]]:
    """pairs/s of building ``pairs`` on ``device`` at each precision (encoders loaded first)."""
    from asif.encoders import load_image_encoder, load_text_encoder

    try:
        from asif.build import build_anchor_set, write_webdataset
        from asif.encoders.precision import apply_precision
    except ImportError:  # a checkout without asif build: the public encoders, fp32
        return [encode_rate(pairs, device)]
    pattern = write_webdataset(pairs, work / "wds", per_tar=500)
    rows = []
    for precision in precisions:
        image = apply_precision(load_image_encoder("default", device=device), precision)
        text = apply_precision(load_text_encoder("default", device=device), precision)
        out = work / f"built-{device.replace(':', '')}-{precision}"
        _, seconds = timed(
            lambda: build_anchor_set(  # called at once: the loop variables are current
                [pattern],
                out,  # noqa: B023
                image_encoder=image,  # noqa: B023
                text_encoder=text,  # noqa: B023
                batch_size=256,
                workers=workers,
                device=device,
                hub_ks=None,
                show_progress_bar=False,
            )
        )
        model_s = model_only_seconds(pairs, image, text)
        rows.append(
            {
                "device": device,
                "precision": precision,
                "pairs": len(pairs),
                "seconds": seconds,
                "pairs_per_s": len(pairs) / seconds,
                "model_only_pairs_per_s": len(pairs) / model_s,
                "of_model_only": model_s / seconds,
                "how": f"asif build, {workers} decoding worker{'s' * (workers != 1)}",
            }
        )
        shutil.rmtree(out, ignore_errors=True)
    return rows


def model_only_seconds(pairs: list[tuple[str, str]], image: Any, text: Any) -> float:
    """Seconds of the same forwards on pixels decoded beforehand (the build's batch size): the
    image encoder on every distinct image, the text encoder on every caption."""
    import torch

    from asif.encoders.image import ImagePreprocessor

    preprocess = ImagePreprocessor(image.data_config)
    paths = list(dict.fromkeys(p for p, _ in pairs))
    pixels = torch.stack([preprocess(p) for p in paths])
    captions = [c for _, c in pairs]
    image.encode_preprocessed(pixels[:256], batch_size=256)  # warm up (kernels, allocator)
    text.encode(captions[:256], batch_size=256)
    _, image_s = timed(lambda: image.encode_preprocessed(pixels, batch_size=256))
    _, text_s = timed(lambda: text.encode(captions, batch_size=256))
    return image_s + text_s


def encode_rate(pairs: list[tuple[str, str]], device: str) -> dict[str, Any]:
    """pairs/s of the public encoders' ``encode`` (decoding in this process), fp32."""
    from asif.encoders import load_image_encoder, load_text_encoder

    image = load_image_encoder("default", device=device)
    text = load_text_encoder("default", device=device)
    paths, captions = [p for p, _ in pairs], [c for _, c in pairs]
    _, seconds = timed(lambda: (image.encode(paths, 128), text.encode(captions, 128)))
    return {
        "device": device,
        "precision": "fp32",
        "pairs": len(pairs),
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "how": "encode(), decoding in the main process (no asif.build here)",
    }


# --------------------------------------------------------------------------- 2. exact search
def exact_rows(n: int, gpu: bool, cpu_queries: int, gpu_queries: int) -> list[dict[str, Any]]:
    blocks, made = timed(lambda: unit_blocks(n, D, seed=n % 1000, on_gpu=gpu))
    queries = np.concatenate(unit_blocks(max(cpu_queries, gpu_queries), D, seed=1, on_gpu=False))
    rows = []
    cpu = AnchorIndex(blocks, gpu=False)
    (_, ref), seconds = timed(lambda: cpu.search(queries[:cpu_queries], K))
    rows.append(
        {
            "part": "exact",
            "N": n,
            "path": f"CPU ({cpu.placement}, {exact_kernel(cpu.n_stored)} kernel)",
            "queries": cpu_queries,
            "seconds": seconds,
            "q_per_s": cpu_queries / seconds,
            "setup_s": 0.0,
            "same_topk": 1.0,
        }
    )
    if gpu:
        index, upload = timed(lambda: AnchorIndex(blocks, gpu=True))
        index.search(queries[:64], K)  # warm-up (kernels, allocator)
        (_, got), seconds = timed(lambda: index.search(queries[:gpu_queries], K))
        rows.append(
            {
                "part": "exact",
                "N": n,
                "path": f"GPU ({index.placement})",
                "queries": gpu_queries,
                "seconds": seconds,
                "q_per_s": gpu_queries / seconds,
                "setup_s": upload,
                "same_topk": agreement(got[:cpu_queries], ref),
            }
        )
    rows[0]["made_s"] = made
    return rows


# --------------------------------------------------------------------------- 3. compressed
def compressed_rows(n: int, work: Path, faiss_gpu: bool, queries_n: int) -> list[dict[str, Any]]:
    nlist = 1024 if n >= 1_000_000 else 256
    factory = f"IVF{nlist}_HNSW32,SQ8;nprobe={nlist // 16}"
    centres = np.random.default_rng(99).standard_normal((CENTRES, D), dtype=np.float32) / D**0.5
    blocks = unit_blocks(n, D, seed=7, on_gpu=bool(cuda_devices()), centres=centres)
    queries = np.concatenate(unit_blocks(queries_n, D, seed=8, on_gpu=False, centres=centres))
    exact = AnchorIndex(blocks, gpu=bool(cuda_devices())).search(queries, K)[1]
    built, build_s = timed(lambda: CompressedIndex.build(blocks, factory, gpu=False))
    folder = built.save(work / "compressed")
    rows = []
    (_, got), seconds = timed(lambda: built.search(queries, K))
    rows.append(
        {
            "part": "compressed",
            "N": n,
            "path": f"CPU ({built.placement})",
            "factory": factory,
            "queries": queries_n,
            "seconds": seconds,
            "q_per_s": queries_n / seconds,
            "setup_s": build_s,
            "recall": agreement(got, exact),
        }
    )
    if faiss_gpu:
        on_gpu, load_s = timed(lambda: CompressedIndex.load(folder, gpu=True))
        on_gpu.search(queries[:64], K)
        (_, got), seconds = timed(lambda: on_gpu.search(queries, K))
        rows.append(
            {
                "part": "compressed",
                "N": n,
                "path": f"GPU ({on_gpu.placement})",
                "factory": factory,
                "queries": queries_n,
                "seconds": seconds,
                "q_per_s": queries_n / seconds,
                "setup_s": load_s,
                "recall": agreement(got, exact),
            }
        )
    return rows


# --------------------------------------------------------------------------- report
def table(result: dict[str, Any]) -> str:
    lines = [
        "# bench_gpu",
        "",
        f"`{result['command']}`",
        "",
        f"Machine: {result['machine']} (load average {result['load']} at the start); GPU: "
        f"{result['gpu']}; FAISS GPUs: {result['faiss_gpus']}.",
    ]
    if result["reduced"]:
        lines += [
            "",
            f"**No GPU here: CPU part only, at reduced N ({', '.join(map(str, result['sizes']))})."
            " The GPU column needs a CUDA machine (the script is the same).**",
        ]
    lines += [
        "",
        "## Build (pairs/s, wall time, encoders loaded)",
        "",
        "| device | precision | pairs | s | pairs/s | model-only pairs/s | of model-only | how |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["build"]:
        model, share = r.get("model_only_pairs_per_s"), r.get("of_model_only")
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['pairs']} | {r['seconds']:.1f} | "
            f"{r['pairs_per_s']:.1f} | {'' if model is None else f'{model:.1f}'} | "
            f"{'' if share is None else f'{share:.2f}'} | {r['how']} |"
        )
    lines += [
        "",
        "Model-only: the same forwards on pixels decoded beforehand, batch size 256 (issue 13's "
        "GPU goal: a build at >= 0.85 of it).",
    ]
    lines += [
        "",
        f"## Exact search, k = {K}, d = {D}",
        "",
        "| N | path | queries | q/s | setup s | top-k equal to CPU |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["exact"]:
        lines.append(
            f"| {r['N']:,} | {r['path']} | {r['queries']} | {r['q_per_s']:.1f} | "
            f"{r['setup_s']:.1f} | {r['same_topk']:.4f} |"
        )
    lines += [
        "",
        f"## Compressed index, k = {K}, d = {D}",
        "",
        "| N | path | factory | queries | q/s | build/load s | recall@800 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["compressed"]:
        lines.append(
            f"| {r['N']:,} | {r['path']} | `{r['factory']}` | {r['queries']} | {r['q_per_s']:.1f} | "
            f"{r['setup_s']:.1f} | {r['recall']:.3f} |"
        )
    if result["skipped"]:
        lines += ["", "Skipped (time budget): " + "; ".join(result["skipped"])]
    if "seconds" in result:
        lines += ["", f"Total wall time: {result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 5e6, 2e7])
    parser.add_argument("--cpu-sizes", type=float, nargs="+", default=[1e5, 2e5])
    parser.add_argument("--compressed-size", type=float, default=1e6)
    parser.add_argument("--build-pairs", type=int, default=2000)
    parser.add_argument("--cpu-build-pairs", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (cores - 1)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds (default 7.5 min)")
    parser.add_argument("--out", default=None, help="result name (default bench_gpu[_cpu])")
    args = parser.parse_args(argv)
    clock = Clock(args.budget)
    gpu = bool(cuda_devices()) and not args.cpu_only
    faiss_gpu = gpu and gpu_available()
    reduced = not gpu
    sizes = [int(s) for s in (args.sizes if gpu else args.cpu_sizes)]
    workers = args.workers or max(1, min(15, (os.cpu_count() or 2) - 1))
    result: dict[str, Any] = {
        "command": " ".join(["python benchmarks/bench_gpu.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "load": round(os.getloadavg()[0], 1),
        "gpu": gpu_name() if gpu else "none used",
        "faiss_gpus": faiss_gpu,
        "python": platform.python_version(),
        "reduced": reduced,
        "sizes": sizes,
        "build": [],
        "exact": [],
        "compressed": [],
        "skipped": [],
    }
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        n_pairs = args.build_pairs if gpu else args.cpu_build_pairs
        pairs = synthetic_pairs(work / "photos", n_pairs)
        if gpu:
            result["build"] += build_rates(pairs, work, "cuda", ["fp32", "bf16", "fp16"], workers)
        result["build"] += build_rates(
            pairs[: args.cpu_build_pairs], work, "cpu", ["fp32"], workers
        )
        print(table(result), flush=True)
        for n in sizes:
            if clock.left() < 60 + n / 2e5:
                result["skipped"].append(f"exact N={n:,}")
                continue
            result["exact"] += exact_rows(
                n, gpu, cpu_queries=64 if n > 2e6 else 256, gpu_queries=4096
            )
            print(table(result), flush=True)
        n = int(args.compressed_size) if gpu else sizes[-1]
        if clock.left() > 60:
            result["compressed"] += compressed_rows(n, work, faiss_gpu, queries_n=256)
        else:
            result["skipped"].append(f"compressed N={n:,}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = clock.budget - clock.left()
    name = args.out or ("bench_gpu" if gpu else "bench_gpu_cpu")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
