"""Retrieval benchmark: Flickr8k dev recall@1/5/10 both ways, and search speed on a 10^5 gallery.

- flickr8k: anchors = the Flickr8k train split (6,000 images x 5 captions = 30,000 pairs), gallery and
  queries = the dev split (1,000 images, 5,000 captions), default encoders, embeddings from the cache
  (``$ASIF_CACHE``; encoded on the first run). Text→image: a caption's own image in the top k;
  image→text: any of the image's five captions in the top k.
- speed: ``space.search`` of 1,000 queries against a gallery of 100,000 items on synthetic anchors
  (``--n-anchors`` pairs, k non-zeros per vector): index time and search time.

Prints a table and writes ``benchmarks/results/bench_retrieval.json`` (and ``.md``).

Usage:
    python benchmarks/bench_retrieval.py                 # both parts
    python benchmarks/bench_retrieval.py --only flickr8k -k 800 400 200 --p 8
    python benchmarks/bench_retrieval.py --only speed --gallery 100000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from asif import AnchorSet, RelativeSpace
from asif.eval.sources import load_anchor_pairs

from common import ROOT, machine


def recall(
    indices: np.ndarray, relevant: Any, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[int, float]:
    hit = relevant(indices)
    return {k: float(hit[:, :k].any(axis=1).mean()) for k in ks}


def flickr8k(
    ks: list[int], p: float, hubness: float, image_encoder: str, text_encoder: str
) -> list[dict]:
    train = load_anchor_pairs("flickr8k", split="train")
    dev = load_anchor_pairs("flickr8k", split="dev")
    space = RelativeSpace(
        k=ks[0],
        p=p,
        hubness=hubness,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        cache=True,
    )
    t = time.perf_counter()
    space.fit(train.image_paths, train.captions)
    fit_s = time.perf_counter() - t
    dev_images = sorted(set(dev.image_paths))
    position = {path: i for i, path in enumerate(dev_images)}
    owner = np.array([position[path] for path in dev.image_paths])
    image_embeddings = space.encode_images(dev_images)
    text_embeddings = space.encode_texts(dev.captions)
    rows = []
    for k in ks:
        space.k = k  # a new snapshot key: galleries re-vectorise with this k
        t = time.perf_counter()
        images = space.index_gallery(image_embeddings, modality="image")
        texts = space.index_gallery(text_embeddings, modality="text")
        index_s = time.perf_counter() - t
        t = time.perf_counter()
        t2i = space.search(texts, images, top_k=10)
        i2t = space.search(images, texts, top_k=10)
        search_s = time.perf_counter() - t
        row = {
            "anchors": f"flickr8k train ({space.n_anchors_} pairs)",
            "gallery": f"flickr8k dev ({len(dev_images)} images, {len(dev.captions)} captions)",
            "encoders": f"{image_encoder}/{text_encoder}",
            "k": k,
            "p": p,
            "text_to_image": recall(t2i.indices, lambda idx: idx == owner[:, None]),
            "image_to_text": recall(
                i2t.indices, lambda idx: owner[idx] == np.arange(len(dev_images))[:, None]
            ),
            "fit_s": round(fit_s, 2),
            "index_s": round(index_s, 3),
            "search_s": round(search_s, 3),
        }
        rows.append(row)
        r1, r2 = row["text_to_image"], row["image_to_text"]
        print(
            f"k={k:<5} p={p:<4} text->image R@1/5/10 {r1[1]:.1%} {r1[5]:.1%} {r1[10]:.1%}   "
            f"image->text {r2[1]:.1%} {r2[5]:.1%} {r2[10]:.1%}   "
            f"(index {index_s:.1f} s, search {search_s:.2f} s)",
            flush=True,
        )
    return rows


def speed(n_gallery: int, n_queries: int, n_anchors: int, k: int, d: int = 64) -> dict:
    rng = np.random.default_rng(0)
    space = RelativeSpace(k=k, p=8.0, hubness=0, gpu=False).set_anchors(
        AnchorSet(
            rng.normal(size=(n_anchors, d)).astype(np.float32),
            rng.normal(size=(n_anchors, d // 2)).astype(np.float32),
        )
    )
    t = time.perf_counter()
    gallery = space.index_gallery(
        rng.normal(size=(n_gallery, d // 2)).astype(np.float32), modality="text"
    )
    index_s = time.perf_counter() - t
    queries = space.transform_images(rng.normal(size=(n_queries, d)).astype(np.float32))
    space.search(queries[:10], gallery, top_k=10)  # warm-up
    t = time.perf_counter()
    result = space.search(queries, gallery, top_k=10)
    search_s = time.perf_counter() - t
    row = {
        "n_gallery": n_gallery,
        "n_queries": n_queries,
        "n_anchors": n_anchors,
        "k": k,
        "gallery_nnz": int(gallery.vectors.nnz),
        "index_s": round(index_s, 2),
        "search_s": round(search_s, 3),
        "queries_per_s": round(n_queries / search_s, 1),
    }
    assert result.indices.shape == (n_queries, 10)
    print(
        f"search {n_queries} queries in a gallery of {n_gallery} (N = {n_anchors}, k = {k}): "
        f"{search_s:.2f} s ({n_queries / search_s:.0f} queries/s); indexing the gallery "
        f"{index_s:.1f} s",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("flickr8k", "speed"))
    parser.add_argument("-k", nargs="+", type=int, default=[800], help="k values (default: 800)")
    parser.add_argument("--p", type=float, default=8.0)
    parser.add_argument("--hubness", type=float, default=0.0, help="hub weights alpha (paper: 0)")
    parser.add_argument("--image-encoder", default="default")
    parser.add_argument("--text-encoder", default="default")
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--n-anchors", type=int, default=30_000)
    parser.add_argument("--speed-k", type=int, default=800)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "platform": platform.platform()}
    if args.only in (None, "flickr8k"):
        results["flickr8k"] = flickr8k(
            args.k, args.p, args.hubness, args.image_encoder, args.text_encoder
        )
    if args.only in (None, "speed"):
        results["speed"] = speed(args.gallery, args.queries, args.n_anchors, args.speed_k)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bench_retrieval" if args.only is None else f"bench_retrieval_{args.only}"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = []
    if results.get("flickr8k"):
        first = results["flickr8k"][0]
        lines.append(f"{first['gallery']}; anchors: {first['anchors']}; {first['encoders']}\n")
        lines.append("| k | p | text→image R@1 | R@5 | R@10 | image→text R@1 | R@5 | R@10 |")
        lines.append("|" + "---|" * 8)
    for row in results.get("flickr8k", []):
        t2i, i2t = row["text_to_image"], row["image_to_text"]
        cells = [row["k"], row["p"], *(f"{r[k]:.1%}" for r in (t2i, i2t) for k in (1, 5, 10))]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if "speed" in results:
        s = results["speed"]
        lines.append(
            f"\nsearch: {s['n_queries']} queries x {s['n_gallery']} gallery items "
            f"(N = {s['n_anchors']}, k = {s['k']}): {s['search_s']} s; indexing the gallery "
            f"{s['index_s']} s ({results['machine']})"
        )
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"written to {args.out / name}.json")


if __name__ == "__main__":
    main()
