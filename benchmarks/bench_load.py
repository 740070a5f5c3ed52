"""What a safe load costs: ``AnchorSet.load`` (checksums, header and row checks) against ``np.load``.

One synthetic set of N random unit pairs (1280-d images, 384-d texts, like the default encoders,
with ids and captions) is written once per dtype; every measurement then reads it from a warm
page cache (the files were just written or read), best of ``--repeats``:

- ``np.load mmap``: ``np.load(mmap_mode="r")`` of both arrays: the zero-copy floor.
- ``np.load``: both arrays read into memory (the reference, ``/ np.load``); then the same plus
  ``json.loads`` of the ids and captions, what any loader of the whole set must at least do.
- ``load(verify=False)``: mapped; sizes, headers and the sealed manifest checked, metadata parsed.
- ``load()``: the default: as above, plus the metadata checksums; the embeddings are checked later.
- ``load() + first read``: the default, then ``blocks()`` of both modalities, which checks their
  checksums (xxh3-128) and that their rows are unit vectors: the whole cost of a safe load.
- ``load(verify=True)``: everything checked at load.
- ``load(mmap=False)``: read into memory, then checked on first read.

The raw rates of the checksums (xxh3-128, blake2b, sha256 of format 1) over the same bytes are
reported beside them.

Usage:
    python benchmarks/bench_load.py                     # N = 500,000 (about 5 GB of disk)
    python benchmarks/bench_load.py --n 100000 --repeats 5 --workdir /tmp/load
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asif import AnchorSet, storage

from common import RESULTS, machine

D_IMAGE, D_TEXT = 1280, 384


class _RandomRows:
    """Random unit rows made chunk by chunk, so writing a set never holds it in memory."""

    def __init__(self, n: int, d: int, seed: int) -> None:
        self.n, self.d, self.seed = n, d, seed

    def iter_vectors(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.n, 65536):
            x = rng.standard_normal((min(65536, self.n - start), self.d), dtype=np.float32)
            yield x / np.linalg.norm(x, axis=1, keepdims=True)

    def vectors(self) -> np.ndarray:
        return np.concatenate(list(self.iter_vectors()))


def write_set(folder: Path, n: int, dtype: str, shard_size: int) -> float:
    anchors = AnchorSet(
        _RandomRows(n, D_IMAGE, 0),
        _RandomRows(n, D_TEXT, 1),
        captions=[
            f"a photo of anchor number {i}, with a caption of typical length" for i in range(n)
        ],
    )
    t = time.perf_counter()
    anchors.save(folder, dtype=dtype, shard_size=shard_size)
    return time.perf_counter() - t


def best(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(folder: Path, repeats: int) -> list[dict[str, Any]]:
    arrays = sorted(folder.glob("shards/*/*_embeddings.npy"))
    nbytes = sum(p.stat().st_size for p in arrays)

    def np_load(mmap: bool) -> None:
        for path in arrays:
            a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            assert a.shape[0] > 0

    def np_load_and_json() -> None:
        np_load(False)
        for path in sorted(folder.glob("shards/*/*.jsonl")):
            text = path.read_text(encoding="utf-8")
            assert json.loads("[" + text[:-1].replace("\n", ",") + "]")

    def first_read(**kwargs: Any) -> None:
        anchors = AnchorSet.load(folder, **kwargs)
        anchors.blocks("image")
        anchors.blocks("text")

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("np.load mmap (floor)", lambda: np_load(True)),
        ("np.load (read)", lambda: np_load(False)),
        ("np.load (read) + json.loads of ids, captions", np_load_and_json),
        ("AnchorSet.load(verify=False)", lambda: AnchorSet.load(folder, verify=False)),
        ("AnchorSet.load() (default)", lambda: AnchorSet.load(folder)),
        ("AnchorSet.load() + first read", lambda: first_read()),
        ("AnchorSet.load(verify=True)", lambda: AnchorSet.load(folder, verify=True)),
        ("AnchorSet.load(mmap=False) + first read", lambda: first_read(mmap=False)),
    ]
    rows = []
    reference = None
    for name, fn in cases:
        seconds = best(fn, repeats)
        if name == "np.load (read)":
            reference = seconds
        rows.append({"method": name, "seconds": seconds, "gb_per_s": nbytes / seconds / 1e9})
    for row in rows:
        row["vs_np_load"] = row["seconds"] / reference if reference else None
    return rows


def checksum_rates(folder: Path, repeats: int) -> dict[str, float]:
    path = sorted(folder.glob("shards/*/image_embeddings.npy"))[0]
    data = np.load(path, mmap_mode="r")
    rates = {}
    for name, make in (
        ("xxh3_128", lambda: storage.Checksum("xxh3_128")),
        ("blake2b", lambda: storage.Checksum("blake2b")),
        ("sha256 (format 1)", lambda: storage.Checksum("sha256")),
    ):
        rates[name] = data.nbytes / best(lambda make=make: make().update_array(data), repeats) / 1e9
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=1 << 17)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", default="bench_load")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_load-"))
    results: dict[str, Any] = {
        "machine": machine(),
        "n": args.n,
        "dims": [D_IMAGE, D_TEXT],
        "shard_size": args.shard_size,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "checksum": storage.CHECKSUM,
        "sets": {},
    }
    print(f"{machine()}; N = {args.n:,}, shards of {args.shard_size:,} rows, warm page cache")
    try:
        for dtype in ("float32", "float16"):
            folder = workdir / dtype
            shutil.rmtree(folder, ignore_errors=True)
            written = write_set(folder, args.n, dtype, args.shard_size)
            print(f"  wrote {dtype} set in {written:.1f} s")
            results["sets"][dtype] = {
                "save_s": written,
                "embedding_bytes": sum(
                    p.stat().st_size for p in folder.glob("shards/*/*_embeddings.npy")
                ),
                "rows": measure(folder, args.repeats),
            }
            if dtype == "float32":
                results["checksum_gb_per_s"] = checksum_rates(folder, args.repeats)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_report(results, RESULTS / args.out)


def write_report(results: dict[str, Any], stem: Path) -> None:
    lines = [
        "# bench_load: what a safe AnchorSet.load costs against np.load",
        "",
        f"{results['machine']}; load average {results['load_average']:.1f} at the start.",
        f"N = {results['n']:,} pairs ({results['dims'][0]} + {results['dims'][1]} dims, ids and "
        f"captions), shards of {results['shard_size']:,} rows, warm page cache, best of "
        f"{results['repeats']}. Checksum: {results['checksum']}.",
        "",
    ]
    for dtype, entry in results["sets"].items():
        gb = entry["embedding_bytes"] / 1e9
        lines += [
            f"## {dtype}: {gb:.2f} GB of embeddings (saved in {entry['save_s']:.1f} s)",
            "",
            "| method | seconds | GB/s | / np.load |",
            "|---|---:|---:|---:|",
        ]
        for row in entry["rows"]:
            lines.append(
                f"| {row['method']} | {row['seconds']:.3f} | {row['gb_per_s']:.1f} | "
                f"{row['vs_np_load']:.2f} |"
            )
        lines.append("")
    lines += ["## checksum rates over the same float32 bytes (GB/s, one core)", ""]
    lines += [f"- {name}: {rate:.2f}" for name, rate in results["checksum_gb_per_s"].items()]
    text = "\n".join(lines) + "\n"
    print(text)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {stem}.md/.json")


if __name__ == "__main__":
    main()
