"""FAISS index factory strings, search parameters and GPU placement: the helpers every index uses.

FAISS itself is imported on first use, so ``import asif`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "auto_factory",
    "build_faiss_index",
    "concatenate_chunks",
    "faiss_index",
    "gpu_available",
    "resolve_gpu",
    "set_search_params",
]


def _faiss() -> Any:
    import faiss

    return faiss


def gpu_available() -> bool:
    """True when the installed FAISS was built with GPU support and sees at least one GPU.

    Example:
        >>> isinstance(gpu_available(), bool)
        True
    """
    faiss = _faiss()
    return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


def resolve_gpu(gpu: bool | str) -> bool:
    """Check a ``gpu`` argument (``"auto"``, True, False); True when search runs on GPUs.

    Example:
        >>> resolve_gpu(False)
        False
    """
    if gpu not in ("auto", True, False):
        raise ValueError(f"gpu must be 'auto', True or False, got {gpu!r}.")
    if gpu is True and not gpu_available():
        raise RuntimeError(
            "gpu=True but the installed FAISS sees no GPU. Install faiss-gpu on a machine with "
            "CUDA, or pass gpu='auto' / gpu=False to search on the CPU."
        )
    return gpu is not False and gpu_available()


def auto_factory(n: int, d: int, memory_budget: float | None = None) -> str:
    """The index ``factory="auto"`` builds for ``n`` anchors of dimension ``d``.

    Exact search (``"Flat"``) while ``n <= 2M`` and the float32 vectors fit the budget. Then an
    inverted file of about ``sqrt(n)`` lists whose coarse quantiser is an HNSW graph (assigning
    an anchor to its list costs a graph walk, not ``nlist * d`` flops), over float32 codes
    (``Flat``), 1 byte per dimension (``SQ8``) or ``n * m`` bytes of product-quantised codes
    (``OPQ``/``PQ``), whichever is the first to fit; ``nprobe`` visits 1/16 of the lists.

    ``benchmarks/bench_10m.py`` measured the ``SQ8`` choice's family at 10M anchors
    (``IVF4096_HNSW32,SQ8``, through :class:`asif.index.CompressedIndex`): at k = 800
    recall is far from exact search, so pass an explicit string, or an exact index, where
    recall matters more than memory.

    Args:
        n: number of anchors.
        d: their dimension.
        memory_budget: bytes the index may use; default: half of this machine's memory.

    Example:
        >>> auto_factory(100_000, 384)
        'Flat'
        >>> auto_factory(10_000_000, 384, memory_budget=8e9)
        'IVF4096_HNSW32,SQ8;nprobe=256'
    """
    if memory_budget is None:
        memory_budget = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if n <= 2_000_000 and n * d * 4 <= memory_budget:
        return "Flat"
    nlist = int(min(16384, max(256, 2 ** round(np.log2(np.sqrt(n))))))
    coarse, probe = f"IVF{nlist}_HNSW32", f";nprobe={nlist // 16}"
    if n * (d * 4 + 8) <= memory_budget:
        return f"{coarse},Flat{probe}"
    if n * (d + 8) <= memory_budget:
        return f"{coarse},SQ8{probe}"
    fitting = [
        m for m in (128, 96, 64, 48, 32, 16, 8) if d % m == 0 and n * (m + 8) <= memory_budget
    ]
    if not fitting:
        raise ValueError(
            f"no index of {n} anchors of dimension {d} fits in {memory_budget / 2**30:.1f} GiB: "
            "raise memory_budget or pass an explicit factory string."
        )
    m = fitting[0]
    return f"OPQ{m},{coarse},PQ{m}{probe}"


def faiss_index(d: int, spec: str) -> Any:
    """``faiss.index_factory(d, spec)`` for inner products; a bad string is a ValueError.

    Example:
        >>> faiss_index(8, "Flat").d
        8
    """
    faiss = _faiss()
    try:
        return faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot build index {spec!r}: {error}") from error


def set_search_params(index: Any, params: str, *, on_gpu: bool, factory: str) -> None:
    """Apply FAISS search parameters (``"nprobe=64,efSearch=128"``); a bad one is a ValueError.

    Example:
        >>> index = faiss_index(4, "IVF2,Flat")
        >>> set_search_params(index, "nprobe=2", on_gpu=False, factory="IVF2,Flat")
        >>> index.nprobe
        2
    """
    if not params:
        return
    faiss = _faiss()
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    try:
        space.set_index_parameters(index, params)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot set {params!r} on {factory!r}: {error}") from error


def build_faiss_index(vectors: np.ndarray, factory: str, on_gpu: bool) -> Any:
    """A FAISS index over ``vectors`` (trained on them when it needs training), searchable now.

    ``factory`` is a ``faiss.index_factory`` string, optionally followed by ``";"`` and search
    parameters. With ``on_gpu`` the index is cloned onto all GPUs.

    Example:
        >>> x = np.eye(4, dtype=np.float32)
        >>> build_faiss_index(x, "Flat", on_gpu=False).search(x[:1], 1)[1].tolist()
        [[0]]
    """
    faiss = _faiss()
    d = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    spec, _, params = factory.partition(";")
    if spec == "Flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss_index(d, spec)
        if not index.is_trained:
            index.train(vectors)
    index.add(vectors)
    if on_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    set_search_params(index, params, on_gpu=on_gpu, factory=spec)
    return index


def concatenate_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(cosines, indices)`` pair from the per-chunk pairs of an ``iter_search``.

    Example:
        >>> c, i = concatenate_chunks([(np.ones((1, 2)), np.zeros((1, 2), np.int64))] * 2, 2)
        >>> c.shape, i.shape
        ((2, 2), (2, 2))
    """
    parts = list(chunks)
    if not parts:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return np.concatenate([c for c, _ in parts]), np.concatenate([i for _, i in parts])
