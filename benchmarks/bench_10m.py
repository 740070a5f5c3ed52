"""Ten million anchors in 24 GiB: CompressedIndex built block by block, its recall and speed.

At N = 10M the float32 anchors take 51 GB (image, d = 1280) + 15 GB (text, d = 384): neither
fits this machine, so the anchors are generated block by block, added to one
:class:`asif.compressed.CompressedIndex` per modality (uncentred projection, IVF with an HNSW
coarse quantiser, SQ8 codes) and dropped.

The anchors: no 10M-pair dataset is on this machine, so each synthetic pair mixes two real
flickr8k pairs (the default encoder pair's embeddings, from the embedding cache) with a weight
``w ~ U(0.5, 1)`` on both sides, plus Gaussian noise of norm 0.25 in a fixed random
128-dimensional subspace per modality. Blocks are regenerated from their seed, so nothing is
stored.

In the same pass the exact top-k of the recall queries is computed over every block
(:func:`asif.topk.exact_topk` per block, merged by ``faiss.ResultHeap``): the ground truth.

Classification runs through the public model: ``RelativeSpace(k, p, hubness=0, index={image:
CompressedIndex, text: CompressedIndex})`` over an ``AnchorSet`` whose rows are the synthetic
blocks (regenerated on demand, never held), and its zero-shot classifier. The exact reference is
the same space with indexes that answer the known queries with the ground truth
(:class:`asif.eval.CachedSearch` filled by ``remember``).

Queries (real): CIFAR-10 test images for the image side (every 20th: 500), the 180 CIFAR prompts
(10 classes x 18 templates) for the text side. Reported for each ``nprobe``:

- recall@k of the top-k sets against exact search, image and text side;
- zero-shot CIFAR-10 top-1 on those 500 images with exact and with approximate top-k
  (k = 800 and p = 8, max over templates), and how often the two predictions agree;
- throughput of the relative transform (search + sparse vectors), image and text queries/s;
- build time (generation, training, adding), the codes' size and the peak RSS.

Usage:
    python benchmarks/bench_10m.py                   # 10M anchors, ~30 min on 2 cores
    python benchmarks/bench_10m.py --anchors 1000000 # a quicker check

Results: ``benchmarks/results/bench_10m.{md,json}`` (``bench_10m_<N>`` for other sizes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time

import faiss
import numpy as np
from bench_index import embed, recall

from asif import AnchorSet, RelativeSpace
from asif.eval import CachedSearch
from asif.index import CompressedIndex
from asif.topk import exact_topk

from common import RESULTS, machine

BLOCK = 1 << 16
NOISE_NORM, NOISE_RANK = 0.25, 128


class SyntheticPairs:
    """Block ``b`` of the synthetic anchor pairs, regenerated from ``(seed, b)`` on demand."""

    def __init__(self, image_base: np.ndarray, text_base: np.ndarray, seed: int = 0) -> None:
        self.bases = (np.ascontiguousarray(image_base), np.ascontiguousarray(text_base))
        self.seed = seed
        rng = np.random.default_rng([seed, 2**31])
        self.noise_bases = [
            np.linalg.qr(rng.standard_normal((b.shape[1], NOISE_RANK)))[0].T.astype(np.float32)
            for b in self.bases
        ]

    def block(self, b: int, rows: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, b])
        n = self.bases[0].shape[0]
        i, j = rng.integers(n, size=rows), rng.integers(n, size=rows)
        w = rng.uniform(0.5, 1.0, size=(rows, 1)).astype(np.float32)
        out = []
        for base, noise_basis in zip(self.bases, self.noise_bases, strict=True):
            x = base[i]
            x *= w
            other = base[j]
            other *= 1 - w
            x += other
            z = rng.standard_normal((rows, NOISE_RANK), dtype=np.float32)
            z *= NOISE_NORM / np.sqrt(NOISE_RANK)
            x += z @ noise_basis
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out.append(x)
        return out[0], out[1]


class SyntheticRows:
    """One side of the synthetic pairs as an ``AnchorSet`` row source: blocks made on demand."""

    def __init__(self, pairs: SyntheticPairs, side: int, sizes: list[int]) -> None:
        self.pairs, self.side, self.sizes = pairs, side, sizes
        self.n, self.d = sum(sizes), pairs.bases[side].shape[1]

    def iter_vectors(self):  # type: ignore[no-untyped-def]
        for b, rows in enumerate(self.sizes):
            yield self.pairs.block(b, rows)[self.side]

    def vectors(self) -> np.ndarray:
        raise MemoryError(f"{self.n:,} x {self.d} float32 anchors are not held, only their codes.")


class ExactTopK:
    """The exact top-k of fixed queries over blocks seen one at a time (a FAISS ResultHeap)."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.seen = queries, 0
        self.heap = faiss.ResultHeap(queries.shape[0], k, keep_max=True)

    def update(self, block: np.ndarray) -> None:
        cos, idx = exact_topk(self.queries, [block], min(self.heap.k, block.shape[0]))
        self.heap.add_result(cos, idx + self.seen)
        self.seen += block.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.heap.finalize()
        return self.heap.D, self.heap.I


def transform_qps(space: RelativeSpace, queries: np.ndarray, modality: str) -> float:
    t = time.perf_counter()
    if modality == "image":
        space.transform_images(queries)
    else:
        space.transform_texts(queries)
    return queries.shape[0] / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchors", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=800)
    parser.add_argument("--p", type=float, default=8.0)
    parser.add_argument("--image-factory", default="IVF4096_HNSW32,SQ8")
    parser.add_argument("--image-dims", type=int, default=256, help="0: no projection")
    parser.add_argument("--image-refine", default="SQ6", help="'none': no re-scoring")
    parser.add_argument("--text-factory", default="IVF4096_HNSW32,SQ8")
    parser.add_argument("--text-dims", type=int, default=256)
    parser.add_argument("--text-refine", default="none")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--k-factor", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--train-rows", type=int, default=1 << 17)
    parser.add_argument("--throughput-queries", type=int, default=1000)
    args = parser.parse_args()
    t_start = time.perf_counter()

    data = embed("default")
    anchors = data["anchors"]
    pairs = SyntheticPairs(anchors.image_embeddings, anchors.text_embeddings)
    image_queries = np.ascontiguousarray(data["images"][::20])
    labels = data["labels"][::20]
    prompts = np.ascontiguousarray(data["prompts"].reshape(-1, data["prompts"].shape[-1]))
    n_classes = data["prompts"].shape[0]
    truth = {"image": ExactTopK(image_queries, args.k), "text": ExactTopK(prompts, args.k)}

    n_blocks = -(-args.anchors // BLOCK)
    sizes = [min(BLOCK, args.anchors - b * BLOCK) for b in range(n_blocks)]
    timing = {"generate": 0.0, "exact": 0.0, "train": 0.0, "add": 0.0}

    # Train each side on its first blocks, then one pass adds both and the ground truth.
    t = time.perf_counter()
    head = [pairs.block(b, sizes[b]) for b in range(min(n_blocks, -(-args.train_rows // BLOCK)))]
    timing["generate"] += time.perf_counter() - t
    indexes = {}
    for side, (name, factory, dims, refine) in enumerate(
        [
            ("image", args.image_factory, args.image_dims, args.image_refine),
            ("text", args.text_factory, args.text_dims, args.text_refine),
        ]
    ):
        sample = np.concatenate([block[side] for block in head])[: args.train_rows]
        t = time.perf_counter()
        indexes[name] = CompressedIndex(
            sample,
            factory,
            dims=dims or None,
            refine=None if refine == "none" else refine,
            gpu=False,
        )
        indexes[name].reserve(args.anchors)
        timing["train"] += time.perf_counter() - t
    del head, sample
    for b, rows in enumerate(sizes):
        t = time.perf_counter()
        image_block, text_block = pairs.block(b, rows)
        timing["generate"] += time.perf_counter() - t
        t = time.perf_counter()
        truth["image"].update(image_block)
        truth["text"].update(text_block)
        timing["exact"] += time.perf_counter() - t
        t = time.perf_counter()
        indexes["image"].add(image_block)
        indexes["text"].add(text_block)
        timing["add"] += time.perf_counter() - t
        if b % 16 == 0 or b == n_blocks - 1:
            print(
                f"block {b + 1}/{n_blocks}: {dict((k, round(v)) for k, v in timing.items())}",
                flush=True,
            )
    n = indexes["image"].n
    truths = {name: t.result() for name, t in truth.items()}
    rows_image, rows_text = SyntheticRows(pairs, 0, sizes), SyntheticRows(pairs, 1, sizes)
    synthetic = AnchorSet(
        rows_image,
        rows_text,
        image_encoder=anchors.image_encoder,
        text_encoder=anchors.text_encoder,
    )
    classes = [str(c) for c in range(n_classes)]
    prompt_embeddings = prompts.reshape(n_classes, -1, prompts.shape[-1])

    def model(index: dict) -> RelativeSpace:
        return RelativeSpace(
            k=args.k,
            p=args.p,
            hubness=0,
            index=index,
            image_encoder=anchors.image_encoder,
            text_encoder=anchors.text_encoder,
        ).set_anchors(synthetic)

    def predict(space: RelativeSpace) -> np.ndarray:
        clf = space.zero_shot_classifier(classes, prompt_embeddings=prompt_embeddings)
        return clf.decision_function(image_queries).argmax(axis=1)

    # The exact reference: the same model, its indexes answering these queries with the truth.
    exact_indexes = {name: CachedSearch(index) for name, index in indexes.items()}
    exact_space = model(exact_indexes)
    snap = exact_space.snapshot()
    for name, queries in (("image", image_queries), ("text", prompts)):
        encoded = (
            exact_space.encode_images(queries)
            if name == "image"
            else exact_space.encode_texts(queries)
        )
        exact_indexes[name].remember(snap.prepare(encoded, name), args.k, truths[name])
    exact_pred = predict(exact_space)
    assert exact_indexes["image"].misses == 0 and exact_indexes["text"].misses == 0
    exact_top1 = float(np.mean(exact_pred == labels))
    space = model(dict(indexes))

    rng = np.random.default_rng(1)
    tp_images = data["images"][
        rng.choice(len(data["images"]), args.throughput_queries, replace=False)
    ]
    tp_texts = np.asarray(anchors.text_embeddings)[
        rng.choice(len(anchors), args.throughput_queries, replace=False)
    ]
    memory = {name: index.code_bytes for name, index in indexes.items()}
    lines = [
        f"bench_10m: N = {n:,} synthetic anchor pairs (mixes of real flickr8k pairs, "
        f"{anchors.image_encoder} d = {indexes['image'].d} + {anchors.text_encoder} "
        f"d = {indexes['text'].d}), k = {args.k}, p = {args.p:g}",
        f"command: python benchmarks/bench_10m.py {' '.join(sys.argv[1:])}",
        f"machine: {machine()}",
        *(
            f"{name} index: {index!r}; codes and ids {memory[name] / 2**30:.2f} GiB"
            for name, index in indexes.items()
        ),
        f"build: generate {timing['generate']:.0f} s, train {timing['train']:.0f} s, add "
        f"{timing['add']:.0f} s; exact ground truth {timing['exact']:.0f} s",
        f"CIFAR-10 top-1 on {len(labels)} images with the exact top-k: {exact_top1:.1%}",
        "",
        "| nprobe | k_factor_rf | recall@k image | recall@k text | top-1 | agrees with exact "
        "| image q/s | text q/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    for nprobe, k_factor in itertools.product(args.nprobe, args.k_factor):
        for index in indexes.values():
            index.set_search_params(
                f"nprobe={nprobe}" + (f",k_factor_rf={k_factor}" if index.refine else "")
            )
        snap = space.snapshot()
        pred = predict(space)  # a new classifier: its prompts searched with these parameters
        row = {
            "nprobe": nprobe,
            "k_factor_rf": k_factor,
            "recall_image": recall(truths["image"][1], snap.neighbours(image_queries, "image")[1]),
            "recall_text": recall(truths["text"][1], snap.neighbours(prompts, "text")[1]),
            "top1": float(np.mean(pred == labels)),
            "agreement": float(np.mean(pred == exact_pred)),
            "image_qps": transform_qps(space, tp_images, "image"),
            "text_qps": transform_qps(space, tp_texts, "text"),
        }
        rows.append(row)
        line = (
            f"| {nprobe} | {k_factor} | {row['recall_image']:.3f} | {row['recall_text']:.3f} | "
            f"{row['top1']:.1%} | {row['agreement']:.1%} | {row['image_qps']:.0f} | "
            f"{row['text_qps']:.0f} |"
        )
        lines.append(line)
        print(line, flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines += ["", f"peak RSS {rss:.2f} GiB; whole run {time.perf_counter() - t_start:.0f} s"]
    print(lines[-1])
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / ("bench_10m" if args.anchors == 10_000_000 else f"bench_10m_{args.anchors}")
    stem.with_suffix(".md").write_text("# bench_10m\n\n" + "\n".join(lines) + "\n")
    result = {
        "args": vars(args),
        "n": n,
        "timing_s": timing,
        "codes_bytes": memory,
        "exact_top1": exact_top1,
        "peak_rss_gib": rss,
        "rows": rows,
    }
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {stem}.md/.json")


if __name__ == "__main__":
    main()
