"""Throughput of the relative layer (top-k search + sparse relative vectors) against two yardsticks.

Per row (N anchors of dimension d, k = 800, p = 8, float32, random unit vectors):

- asif: ``RelativeSpace(k=800, p=8, hubness=0).transform_images`` on embeddings (exact search:
  FAISS per segment below 65,536 anchors, the streaming kernel of ``asif.topk`` above).
- asif top-k only: the search alone (``snapshot().neighbours``), to show where the time goes
  (the rest is building the sparse relative vectors).
- (a) paper: the approach of the paper's published code, written out here: a torch matmul of
  query chunks against all anchors, ``torch.topk``, ``** p``, normalise, a sparse COO tensor.
- (b) bound: 2 N d flops per query at the float32 matmul rate measured at the start of this run
  (the best of numpy and torch on a large product): no exact method can beat it in float32.

Each row runs in a child process (peak RSS is that process's, anchors included). The machine
may be shared: compare the ratios within one run, not absolute numbers across runs.

Usage:
    python benchmarks/bench_relative.py            # N in {10k, 100k, 1M}, d in {384, 1280}
    python benchmarks/bench_relative.py --queries-at-1m 2000   # fewer queries where N >= 1M
    python benchmarks/bench_relative.py --quick    # smoke run: small N, few queries
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from common import RESULTS, machine

K, P = 800, 8.0


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    """(n, d) float32 random unit vectors, generated in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + block.shape[0]] = block
    return out


def sgemm_rate(seconds: float = 3.0) -> dict[str, float]:
    """Sustained float32 matmul rate (GFLOP/s) of numpy and torch on a large product."""
    import torch

    a = unit_rows(2048, 1280, 1)
    b = unit_rows(16384, 1280, 2)
    out = np.empty((2048, 16384), np.float32)
    flops = 2 * a.shape[0] * b.shape[0] * a.shape[1]
    rates = {}
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
    for name, fn in [
        ("numpy", lambda: np.matmul(a, b.T, out=out)),
        ("torch", lambda: torch.mm(ta, tb.T, out=tout)),
    ]:
        fn()
        best, stop = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t = time.perf_counter()
            fn()
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
        rates[name] = best
    return rates


def _space(anchors: np.ndarray):  # type: ignore[no-untyped-def]
    """The paper's setting over ``anchors`` as both modalities, searched in place (no copy)."""
    from asif import AnchorSet, RelativeSpace
    from asif.index import AnchorIndex

    rows = AnchorIndex(anchors, gpu=False)  # a row source: the array itself, unnormalised
    return RelativeSpace(k=K, p=P, hubness=0, gpu=False).set_anchors(AnchorSet(rows, rows))


def run_asif(anchors: np.ndarray, queries: np.ndarray) -> None:
    _space(anchors).transform_images(queries)


def run_topk(anchors: np.ndarray, queries: np.ndarray) -> None:
    snap = _space(anchors).snapshot()
    for start in range(0, queries.shape[0], 4096):
        snap.neighbours(queries[start : start + 4096], "image")


def run_paper(anchors: np.ndarray, queries: np.ndarray, chunk: int = 256) -> None:
    """The paper's code: chunked torch matmul, torch.topk, power, normalise, sparse tensor."""
    import torch

    a = torch.from_numpy(anchors)
    n = a.shape[0]
    for start in range(0, queries.shape[0], chunk):
        q = torch.from_numpy(queries[start : start + chunk])
        sims = q @ a.T
        vals, idx = torch.topk(sims, min(K, n), dim=1)
        vals = vals.clamp(min=0) ** P
        vals = vals / vals.norm(dim=1, keepdim=True)
        rows = torch.arange(q.shape[0]).repeat_interleave(idx.shape[1])
        torch.sparse_coo_tensor(
            torch.stack([rows, idx.reshape(-1)]), vals.reshape(-1), (q.shape[0], n)
        ).coalesce()


METHODS = {"asif": run_asif, "topk": run_topk, "paper": run_paper}


def child(method: str, n: int, d: int, n_queries: int) -> dict:
    """One measurement in this (child) process."""
    anchors = unit_rows(n, d, seed=n + d)
    queries = unit_rows(n_queries, d, seed=7)
    METHODS[method](anchors, queries[: min(64, n_queries)])  # warm-up (threads, allocator)
    t = time.perf_counter()
    METHODS[method](anchors, queries)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB
    return {"qps": n_queries / seconds, "seconds": seconds, "peak_rss_gib": rss}


def measure(method: str, n: int, d: int, n_queries: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(n), str(d), str(n_queries)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{method} N={n} d={d} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, 500 queries")
    parser.add_argument("--queries", type=int, default=None, help="queries per row")
    parser.add_argument(
        "--queries-at-1m", type=int, default=None, help="queries per row where N >= 1M"
    )
    parser.add_argument("--sizes", type=str, default=None, help="comma-separated N values")
    parser.add_argument("--dims", type=str, default="384,1280")
    parser.add_argument(
        "--child", nargs=4, metavar=("METHOD", "N", "D", "Q"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        method, n, d, q = args.child
        print(json.dumps(child(method, int(n), int(d), int(q))))
        return
    sizes = [
        int(x)
        for x in (args.sizes or ("2000,20000" if args.quick else "10000,100000,1000000")).split(",")
    ]
    dims = [int(x) for x in args.dims.split(",")]
    n_queries = args.queries or (500 if args.quick else 10_000)
    rates = sgemm_rate()
    gflops = max(rates.values())
    rows = []
    header = (
        "| N | d | queries | asif q/s | top-k only q/s | paper (a) q/s | bound (b) q/s | asif/(a) "
        "| asif/(b) | top-k/(b) | asif RSS GiB | (a) RSS GiB |"
    )
    lines = [
        f"sgemm rate at start: numpy {rates['numpy']:.1f}, torch {rates['torch']:.1f} GFLOP/s "
        f"(bound uses {gflops:.1f}); k={K}, p={P:g}, float32; machine: {machine()}",
        "",
        header,
        "|" + "---|" * 12,
    ]
    print("\n".join(lines), flush=True)
    for n in sizes:
        for d in dims:
            q = args.queries_at_1m if n >= 1_000_000 and args.queries_at_1m else n_queries
            ours = measure("asif", n, d, q)
            topk = measure("topk", n, d, q)
            paper = measure("paper", n, d, q)
            bound = gflops * 1e9 / (2 * n * d)
            row = {
                "n": n,
                "d": d,
                "queries": q,
                "asif_qps": ours["qps"],
                "topk_qps": topk["qps"],
                "paper_qps": paper["qps"],
                "bound_qps": bound,
                "speedup_vs_paper": ours["qps"] / paper["qps"],
                "fraction_of_bound": ours["qps"] / bound,
                "topk_fraction_of_bound": topk["qps"] / bound,
                "asif_peak_rss_gib": ours["peak_rss_gib"],
                "paper_peak_rss_gib": paper["peak_rss_gib"],
            }
            rows.append(row)
            line = (
                f"| {n:,} | {d} | {q:,} | {row['asif_qps']:.1f} | {row['topk_qps']:.1f} "
                f"| {row['paper_qps']:.1f} | {bound:.1f} | {row['speedup_vs_paper']:.2f}x | "
                f"{100 * row['fraction_of_bound']:.0f}% | "
                f"{100 * row['topk_fraction_of_bound']:.0f}% | {row['asif_peak_rss_gib']:.2f} "
                f"| {row['paper_peak_rss_gib']:.2f} |"
            )
            lines.append(line)
            print(line, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "bench_relative_quick" if args.quick else "bench_relative"
    (RESULTS / f"{stem}.md").write_text(
        f"# bench_relative\n\n`python benchmarks/bench_relative.py {' '.join(sys.argv[1:])}`\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (RESULTS / f"{stem}.json").write_text(
        json.dumps(
            {"machine": machine(), "sgemm_gflops": rates, "k": K, "p": P, "rows": rows}, indent=1
        )
        + "\n"
    )
    print(f"wrote {RESULTS / stem}.md/.json")


if __name__ == "__main__":
    main()
