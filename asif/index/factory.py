"""FAISS index factory strings, search parameters and GPU placement: the helpers every index uses.

FAISS itself is imported on first use, so ``import asif`` stays light.

GPU placement follows what FAISS's cloner does (``faiss/gpu/GpuCloner.cpp``), decided when the
index is built, never at its first query:

- Only flat, ``IVF*,Flat``, ``IVF*,SQ*``, ``IVF*,PQ*`` (and fp16 flat scalar quantisers), possibly
  behind a pre-transform, have GPU versions. For anything else (``HNSW32``, flat ``SQ8``, ``PQ``,
  a refine stage) FAISS raises on one GPU and, on several, silently keeps a CPU copy:
  :func:`gpu_placement` refuses them with ``gpu=True`` and keeps them on the CPU, saying so,
  with ``gpu="auto"``.
- A GPU IVF index needs a GPU coarse quantiser: an HNSW one (``IVF4096_HNSW32,...``, what
  :func:`auto_factory` returns above 2M anchors) raises unless ``allowCpuCoarseQuantizer`` is
  set, and FAISS's cloner does not pass that flag on for ``IVF*,SQ*`` at all.
  :func:`index_to_gpus` clones such indexes with a flat quantiser holding the same centroids
  (exact assignment on the GPU; the CPU index keeps its HNSW quantiser).
- GPU indexes select at most :data:`GPU_MAX_K` results and probe at most as many lists: the
  index reports it as ``max_k`` and ``nprobe`` is checked when it is set.
- Several GPUs share one index (``shard=True``, each holds 1/n of the anchors) unless asked to
  replicate it; ``float16=True`` halves the memory of flat and IVF-flat storage.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "GPU_MAX_K",
    "FaissPlacement",
    "auto_factory",
    "build_faiss_index",
    "check_gpu_params",
    "concatenate_chunks",
    "faiss_index",
    "gpu_available",
    "gpu_placement",
    "gpu_unsupported",
    "index_to_gpus",
    "resolve_gpu",
    "set_search_params",
]

GPU_MAX_K = 2048
"""The largest k and nprobe FAISS's GPU indexes take: ``GPU_MAX_SELECTION_K``
(``faiss/gpu/utils/DeviceDefs.cuh``), checked by ``validateKSelect`` and ``validateNProbe``
(``faiss/gpu/impl/IndexUtils.cu``) at every search."""

_log = logging.getLogger("asif")


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
    if on_gpu:
        check_gpu_params(params)
    faiss = _faiss()
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    try:
        space.set_index_parameters(index, params)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot set {params!r} on {factory!r}: {error}") from error


def check_gpu_params(params: str) -> None:
    """Refuse search parameters that FAISS's GPU indexes cannot take (``nprobe`` above 2,048).

    Example:
        >>> check_gpu_params("nprobe=4096")
        Traceback (most recent call last):
        ...
        ValueError: nprobe=4096 is above 2048, the most FAISS's GPU indexes probe: ...
    """
    for item in params.split(","):
        name, _, value = item.partition("=")
        if name.strip() == "nprobe" and value.strip().isdigit() and int(value) > GPU_MAX_K:
            raise ValueError(
                f"nprobe={int(value)} is above {GPU_MAX_K}, the most FAISS's GPU indexes probe: "
                f"lower it, or pass gpu=False to search on the CPU."
            )


def gpu_unsupported(index: Any) -> str | None:
    """Why FAISS cannot search ``index`` on a GPU, or None when it can.

    FAISS clones flat indexes, fp16 flat scalar quantisers, ``IndexIVFFlat``,
    ``IndexIVFScalarQuantizer`` and ``IndexIVFPQ`` (behind pre-transforms and id maps); any
    other index raises on one GPU and is copied to the CPU on several (``GpuCloner.cpp``).

    Example:
        >>> gpu_unsupported(faiss_index(8, "IVF4,SQ8")) is None
        True
        >>> gpu_unsupported(faiss_index(8, "HNSW32"))
        'FAISS has no GPU version of IndexHNSWFlat'
    """
    faiss = _faiss()
    found = faiss.downcast_index(index)  # a view: `index` keeps the object alive
    if isinstance(found, (faiss.IndexPreTransform, faiss.IndexIDMap)):
        return gpu_unsupported(found.index)
    supported = (faiss.IndexFlat, faiss.IndexIVFFlat, faiss.IndexIVFScalarQuantizer)
    if isinstance(found, (*supported, faiss.IndexIVFPQ)):
        return None
    if (
        isinstance(found, faiss.IndexScalarQuantizer)
        and found.sq.qtype == faiss.ScalarQuantizer.QT_fp16
    ):
        return None
    return f"FAISS has no GPU version of {type(found).__name__}"


class FaissPlacement(NamedTuple):
    """Where a FAISS index searches: ``on_gpu`` and a description (``placement``)."""

    on_gpu: bool
    placement: str


def gpu_placement(
    index: Any, gpu: bool | str, *, shard: bool = True, what: str = "the index"
) -> FaissPlacement:
    """Decide where FAISS ``index`` searches for a ``gpu`` argument, before it is filled.

    Raises:
        RuntimeError: ``gpu=True`` and FAISS sees no GPU.
        ValueError: ``gpu=True`` and FAISS has no GPU version of this index.

    Example:
        >>> gpu_placement(faiss_index(8, "HNSW32"), False)
        FaissPlacement(on_gpu=False, placement='cpu')
    """
    if not resolve_gpu(gpu):
        return FaissPlacement(False, "cpu")
    reason = gpu_unsupported(index)
    if reason is not None:
        if gpu is True:
            raise ValueError(
                f"{what} cannot search on a GPU: {reason}. Use an index FAISS has on GPUs "
                "('Flat', 'IVF4096,Flat', 'IVF4096,SQ8', 'IVF4096,PQ32'), or pass gpu='auto' "
                "(it then searches on the CPU) or gpu=False."
            )
        _log.warning("%s searches on the CPU: %s.", what, reason)
        return FaissPlacement(False, f"cpu ({reason})")
    n = _faiss().get_num_gpus()
    spread = "" if n == 1 else (", sharded" if shard else ", replicated")
    return FaissPlacement(True, f"gpu (FAISS, {n} GPU{'s' if n > 1 else ''}{spread})")


@contextlib.contextmanager
def _flat_coarse_quantizer(index: Any) -> Iterator[None]:
    """Inside the block, the IVF inside ``index`` has a flat coarse quantiser (a copy of its
    centroids); its own quantiser (e.g. HNSW) is put back afterwards."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat):
        yield
        return
    old = ivf.quantizer
    flat = faiss.IndexFlat(ivf.d, ivf.metric_type)
    flat.add(old.reconstruct_n(0, ivf.nlist))
    ivf.quantizer = flat
    try:
        yield
    finally:
        ivf.quantizer = old


def index_to_gpus(index: Any, *, shard: bool = True, float16: bool = False) -> Any:
    """``index`` (a filled CPU index) cloned onto all GPUs FAISS sees.

    ``GpuMultipleClonerOptions``: ``shard`` splits the anchors over the GPUs (else each GPU holds
    them all), ``float16`` stores flat and IVF-flat vectors (and IVF-PQ lookup tables) in
    float16. An IVF whose coarse quantiser is not flat (HNSW) is cloned with a flat copy of its
    centroids: FAISS's GPU IVF indexes need one on the GPU.

    Raises:
        ValueError: FAISS has no GPU version of this index (:func:`gpu_unsupported`).
    """
    reason = gpu_unsupported(index)
    if reason is not None:
        raise ValueError(f"cannot clone the index onto GPUs: {reason}.")
    faiss = _faiss()
    options = faiss.GpuMultipleClonerOptions()
    options.shard = bool(shard)
    options.useFloat16 = bool(float16)
    with _flat_coarse_quantizer(index):
        return faiss.index_cpu_to_all_gpus(index, co=options)


def build_faiss_index(
    vectors: np.ndarray,
    factory: str,
    gpu: bool | str = False,
    *,
    shard: bool = True,
    float16: bool = False,
) -> tuple[Any, FaissPlacement]:
    """A FAISS index over ``vectors`` (trained on them when it needs training), searchable now.

    ``factory`` is a ``faiss.index_factory`` string, optionally followed by ``";"`` and search
    parameters. Where it searches is decided first (:func:`gpu_placement`): on GPUs it is
    built on the CPU, then cloned (:func:`index_to_gpus`).

    Returns:
        ``(index, placement)``.

    Example:
        >>> x = np.eye(4, dtype=np.float32)
        >>> index, placed = build_faiss_index(x, "Flat")
        >>> index.search(x[:1], 1)[1].tolist(), placed.placement
        ([[0]], 'cpu')
    """
    faiss = _faiss()
    d = vectors.shape[1]
    spec, _, params = factory.partition(";")
    index = faiss.IndexFlatIP(d) if spec == "Flat" else faiss_index(d, spec)
    placed = gpu_placement(index, gpu, shard=shard, what=f"index {factory!r}")
    if placed.on_gpu:
        check_gpu_params(params)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    if placed.on_gpu:
        index = index_to_gpus(index, shard=shard, float16=float16)
    set_search_params(index, params, on_gpu=placed.on_gpu, factory=spec)
    return index, placed


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
