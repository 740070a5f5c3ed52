"""Approximate FAISS indexes on real embeddings: recall of the top-k set and zero-shot accuracy.

Anchors: flickr8k's 35,455 pairs, queries: the 10,000 CIFAR-10 test images (18 CIFAR templates),
embedded once with an encoder pair (from the embedding cache; encoded on a first run). For each
index-factory string, with asif's default setting (``RelativeSpace()``: k="auto", p=3.5, hub
weights, max over templates):

- recall@k: the share of the exact top-k anchors (image side, ``--recall-queries`` CIFAR images)
  that the index returns, and the same on the text side (the 180 prompts);
- CIFAR-10 top-1 of the zero-shot classifier and its change against exact search;
- image-side throughput of ``transform_images`` (queries/s) and the index build time.

Usage:
    python benchmarks/bench_index.py                    # default pair
    python benchmarks/bench_index.py --pairs large

Results: ``benchmarks/results/bench_index_<pair>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure

from asif import AnchorSet, RelativeSpace
from asif.data import read_image_folder
from asif.encoders import load_image_encoder, load_text_encoder
from asif.eval.metrics import top_k_accuracy
from asif.eval.sources import load_anchor_pairs
from asif.index import AnchorIndex
from asif.templates import CIFAR_TEMPLATES, format_prompts
from asif.transforms import resolve_k

from common import DATA, RESULTS, machine

FACTORIES = (
    "Flat",
    "IVF256,Flat;nprobe=64",
    "IVF256,Flat;nprobe=16",
    "IVF256,SQ8;nprobe=64",
    "IVF256,PQ64;nprobe=64",
    "HNSW32;efSearch=2048",
)


def embed(pair: str) -> dict:
    image_encoder = load_image_encoder(pair, device="cpu")
    text_encoder = load_text_encoder(pair, device="cpu")
    flickr = load_anchor_pairs("flickr8k")
    cifar = read_image_folder(DATA / "cifar10-test")
    prompts = text_encoder.encode(
        format_prompts(cifar.classnames, CIFAR_TEMPLATES), batch_size=64, cache=True
    )
    return {
        "anchors": AnchorSet(
            image_encoder.encode(flickr.image_paths, batch_size=64, cache=True),
            text_encoder.encode(flickr.captions, batch_size=64, cache=True),
            image_encoder=image_encoder.name,
            text_encoder=text_encoder.name,
        ),
        "images": image_encoder.encode(cifar.paths, batch_size=64, cache=True),
        "labels": np.asarray(cifar.labels),
        "classes": list(cifar.classnames),
        "prompts": prompts.reshape(len(cifar.classnames), len(CIFAR_TEMPLATES), -1),
    }


def recall(exact: np.ndarray, approx: np.ndarray) -> float:
    """Mean share of each row's exact top-k set found in the approximate one (FAISS's
    ``knn_intersection_measure``; -1 padding never matches an anchor)."""
    return float(knn_intersection_measure(exact, approx))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="default", help="encoder pair (default, large)")
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--factories", nargs="+", default=list(FACTORIES))
    args = parser.parse_args()
    data = embed(args.pairs)
    anchors: AnchorSet = data["anchors"]
    k = resolve_k("auto", len(anchors))
    sample = data["images"][:: max(1, len(data["images"]) // args.recall_queries)]
    prompts = data["prompts"].reshape(-1, data["prompts"].shape[-1])
    exact_img = AnchorIndex(anchors.image_embeddings, gpu=False).search(sample, k)[1]
    exact_txt = AnchorIndex(anchors.text_embeddings, gpu=False).search(prompts, k)[1]
    lines = [
        f"bench_index: {anchors.image_encoder} + {anchors.text_encoder}; flickr8k anchors "
        f"N = {len(anchors):,}, k = {k}, p = 3.5, hub = 0.5, max over 18 templates; "
        f"CIFAR-10 test ({len(data['labels']):,} images)",
        f"command: python benchmarks/bench_index.py {' '.join(sys.argv[1:])}",
        f"machine: {machine()}",
        "",
        "| index | build s | image q/s | recall@k image | recall@k text | CIFAR top-1 | change |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    rows, base = [], None
    for factory in args.factories:
        t = time.perf_counter()
        space = RelativeSpace(index=factory, gpu=False).set_anchors(anchors)
        snap = space.snapshot()
        build = time.perf_counter() - t
        r_img = recall(exact_img, snap.neighbours(sample, "image")[1])
        r_txt = recall(exact_txt, snap.neighbours(prompts, "text")[1])
        clf = space.zero_shot_classifier(data["classes"], prompt_embeddings=data["prompts"])
        clf.decision_function(data["images"][:10])  # hub weights and class vectors, once
        t = time.perf_counter()
        scores = clf.decision_function(data["images"])
        qps = len(data["images"]) / (time.perf_counter() - t)
        top1 = top_k_accuracy(scores, data["labels"], 1)
        base = top1 if base is None else base
        row = {
            "factory": factory,
            "build_s": build,
            "image_qps": qps,
            "recall_image": r_img,
            "recall_text": r_txt,
            "top1": top1,
            "change": top1 - base,
        }
        rows.append(row)
        line = (
            f"| `{factory}` | {build:.1f} | {qps:.0f} | {r_img:.3f} | {r_txt:.3f} | "
            f"{top1:.1%} | {100 * (top1 - base):+.1f} |"
        )
        lines.append(line)
        print(line, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench_index_{args.pairs}"
    stem.with_suffix(".md").write_text("# bench_index\n\n" + "\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"k": k, "rows": rows}, indent=1) + "\n")
    print(f"wrote {stem}.md/.json")


if __name__ == "__main__":
    main()
