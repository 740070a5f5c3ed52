"""GPU paths without a GPU: the options asif passes to FAISS's cloner (a fake FAISS with GPUs),
torch's exact kernel run on CPU devices, and, with the ``gpu`` marker, the real thing."""

from __future__ import annotations

import logging
import types
from typing import Any

import faiss
import numpy as np
import pytest

import asif.index.gpu as gpu_module
from asif import AnchorSet, RelativeSpace
from asif.index import GPU_MAX_K, AnchorIndex, CompressedIndex, ShardedIndex, gpu_available
from asif.index.factory import gpu_unsupported, index_to_gpus
from asif.index.gpu import TorchExact, cuda_devices, pack_keys, unpack_keys
from asif.topk import select_topk
from tests.index.conftest import lattice


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return _unit(rng.standard_normal((3000, 32))), _unit(rng.standard_normal((20, 32)))


class FakeGpus:
    """FAISS as it looks with ``ngpu`` GPUs: clones are recorded (and searched on the CPU)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ngpu: int) -> None:
        self.clones: list[dict[str, Any]] = []
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: ngpu)
        monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", self.clone, raising=False)
        monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", types.SimpleNamespace, raising=False)
        monkeypatch.setattr(faiss, "GpuParameterSpace", faiss.ParameterSpace, raising=False)

    def clone(self, index: Any, co: Any = None, ngpu: int = -1) -> Any:
        ivf = faiss.try_extract_index_ivf(index)
        quantizer = None if ivf is None else type(faiss.downcast_index(ivf.quantizer)).__name__
        self.clones.append({"options": vars(co), "quantizer": quantizer})
        return faiss.clone_index(index)


# --------------------------------------------------------------------------- FAISS cloner options
def test_ivf_with_hnsw_quantiser_goes_to_gpus_with_a_flat_one(monkeypatch, vectors) -> None:
    gpus = FakeGpus(monkeypatch, 2)
    a, q = vectors
    index = AnchorIndex(a, factory="IVF16_HNSW8,SQ8;nprobe=16", gpu=True)
    assert index.on_gpu and index.placement == "gpu (FAISS, 2 GPUs, sharded)"
    (clone,) = gpus.clones
    assert clone["quantizer"] == "IndexFlat"  # FAISS's GPU IVF needs a GPU quantiser
    assert clone["options"] == {"shard": True, "useFloat16": False}
    cpu = AnchorIndex(a, factory="IVF16_HNSW8,SQ8;nprobe=16", gpu=False)
    # all lists probed: the flat quantiser changes nothing but where the lists are chosen
    np.testing.assert_array_equal(np.sort(index.search(q, 50)[1]), np.sort(cpu.search(q, 50)[1]))


def test_the_cpu_index_keeps_its_own_quantiser(monkeypatch, vectors) -> None:
    FakeGpus(monkeypatch, 1)
    a, _ = vectors
    cpu = faiss.index_factory(32, "IVF16_HNSW8,Flat", faiss.METRIC_INNER_PRODUCT)
    cpu.train(a)
    cpu.add(a)
    index_to_gpus(cpu)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(cpu).quantizer)
    assert isinstance(quantizer, faiss.IndexHNSWFlat) and quantizer.ntotal == 16


def test_float16_storage_and_replicas_are_options(monkeypatch, vectors) -> None:
    gpus = FakeGpus(monkeypatch, 4)
    a, _ = vectors
    index = AnchorIndex(a, factory="IVF8,Flat", gpu=True, gpu_dtype="float16", gpu_shard=False)
    assert gpus.clones[0]["options"] == {"shard": False, "useFloat16": True}
    assert index.placement == "gpu (FAISS, 4 GPUs, replicated)"
    with pytest.raises(ValueError, match="bfloat16"):
        AnchorIndex(a, factory="IVF8,Flat", gpu=True, gpu_dtype="bfloat16")


@pytest.mark.parametrize(
    ("factory", "kind"),
    [("HNSW16", "IndexHNSWFlat"), ("SQ8", "IndexScalarQuantizer"), ("PQ4x4", "IndexPQ")],
)
def test_indexes_without_a_gpu_version(monkeypatch, caplog, vectors, factory, kind) -> None:
    """FAISS raises on one GPU and silently copies to the CPU on several: asif says so first."""
    assert (
        gpu_unsupported(faiss.index_factory(32, factory)) == f"FAISS has no GPU version of {kind}"
    )
    gpus = FakeGpus(monkeypatch, 2)
    a = vectors[0][:600]
    with pytest.raises(
        ValueError, match=f"cannot search on a GPU: FAISS has no GPU version of {kind}"
    ):
        AnchorIndex(a, factory=factory, gpu=True)
    with caplog.at_level(logging.WARNING, logger="asif"):
        index = AnchorIndex(a, factory=factory, gpu="auto")
    assert not index.on_gpu and index.placement == f"cpu (FAISS has no GPU version of {kind})"
    assert index.max_k is None and "searches on the CPU" in caplog.text
    assert gpus.clones == []


def test_gpu_k_and_nprobe_limits_are_checked_before_any_query(monkeypatch, vectors) -> None:
    gpus = FakeGpus(monkeypatch, 1)
    a, q = vectors
    with pytest.raises(ValueError, match="nprobe=4096 is above 2048"):
        AnchorIndex(a, factory="IVF16,Flat;nprobe=4096", gpu=True)
    assert gpus.clones == []  # refused before training
    index = AnchorIndex(a, factory="IVF16,Flat;nprobe=16", gpu=True)
    assert index.max_k == GPU_MAX_K == 2048
    with pytest.raises(ValueError, match="at most k = 2048"):
        index.search(q, 2049)
    anchors = AnchorSet(a, a)
    with pytest.raises(ValueError, match="the image index searches at most k = 2048"):
        RelativeSpace(k=2500, index="IVF16,Flat", gpu=True).set_anchors(anchors)
    space = RelativeSpace(k=2048, p=8, hubness=0, index="IVF16,Flat;nprobe=16", gpu=True)
    assert space.set_anchors(anchors).snapshot().neighbours(q, "image")[1].shape == (20, 2048)
    sharded = ShardedIndex([index, AnchorIndex(a, gpu=False)])
    assert sharded.max_k == 2048 and not sharded.on_gpu


def test_compressed_index_clones_when_built_and_loaded(monkeypatch, tmp_path, vectors) -> None:
    gpus = FakeGpus(monkeypatch, 2)
    a, q = vectors
    index = CompressedIndex.build(
        [a[:1500], a[1500:]], "IVF16_HNSW8,SQ8;nprobe=16", dims=24, gpu=True
    )
    assert len(gpus.clones) == 1  # at build, not at the first query
    assert gpus.clones[0] == {
        "options": {"shard": True, "useFloat16": False},
        "quantizer": "IndexFlat",
    }
    assert index.on_gpu and index.max_k == 2048
    index.search(q, 10)
    index.set_search_params("nprobe=8")  # parameters change on the GPU copy, no new clone
    assert len(gpus.clones) == 1
    with pytest.raises(ValueError, match="nprobe=3000 is above 2048"):
        index.set_search_params("nprobe=3000")
    folder = CompressedIndex.build([a], "IVF16,Flat", gpu=False).save(tmp_path / "ix")
    loaded = CompressedIndex.load(folder, gpu=True)
    assert loaded.on_gpu and len(gpus.clones) == 2
    refined = CompressedIndex.build([a], "IVF16,Flat", refine="SQ8", gpu="auto")
    assert (
        not refined.on_gpu and refined.placement == "cpu (FAISS has no GPU version of IndexRefine)"
    )
    hnsw = CompressedIndex.build([a], "HNSW16", gpu="auto")
    assert not hnsw.on_gpu and len(gpus.clones) == 2


def test_no_gpu_means_cpu_or_an_error(vectors) -> None:
    if gpu_available():
        pytest.skip("FAISS sees a GPU here")
    a, _ = vectors
    assert AnchorIndex(a, factory="IVF8,Flat", gpu="auto").placement == "cpu"
    with pytest.raises(RuntimeError, match="sees no GPU"):
        AnchorIndex(a, factory="IVF8,Flat", gpu=True)


# --------------------------------------------------------------------------- torch exact kernel
def test_keys_order_like_select_topk() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    scores = rng.choice(np.float32([-1.0, -0.5, -0.0, 0.0, 1e-30, 0.25, 0.5, 1.0]), (16, 300))
    first = 2**31 + 5  # positions above int32 keep working
    keys = pack_keys(torch.from_numpy(scores), first)
    best = torch.topk(keys, 40, dim=1, sorted=True).values
    got = unpack_keys(best)
    ref = select_topk(scores, first + np.arange(300), 40)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu", "cpu"]])
def test_torch_kernel_equals_cpu_search(devices) -> None:
    pytest.importorskip("torch")
    a, q = lattice(2500, 32), lattice(30, 32, seed=5)
    for work in (1 << 31, 24 * 30 * 700):  # one tile per device, or tiles of 700 rows
        index = TorchExact([a[:900], a[900:]], devices, work_bytes=work)
        for k in (1, 64, 801, 2500):
            got = index.search(q, k)
            ref = AnchorIndex(a, gpu=False).search(q, k)
            np.testing.assert_array_equal(got[1], ref[1])
            np.testing.assert_array_equal(got[0], ref[0])


def test_exact_index_routes_to_torch_where_it_sees_gpus(monkeypatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr(gpu_module, "cuda_devices", lambda: ["cpu", "cpu"])
    a, q = lattice(1200, 32), lattice(10, 32, seed=8)
    index = AnchorIndex(a, gpu=True).without(np.arange(0, 1200, 5))
    assert index.on_gpu and index.max_k is None
    assert index.placement == "cpu (torch cpu, cpu, float32)"
    ref = AnchorIndex(a, gpu=False).without(np.arange(0, 1200, 5))
    for got, want in zip(index.search(q, 1000), ref.search(q, 1000), strict=True):
        np.testing.assert_array_equal(got, want)
    bf16 = AnchorIndex(
        _unit(np.random.default_rng(1).standard_normal((500, 16))), gpu=True, gpu_dtype="bfloat16"
    )
    assert bf16.placement.endswith("bfloat16)")
    anchors = AnchorSet(a, a)
    on = RelativeSpace(k=900, p=8, hubness=0, gpu=True).set_anchors(anchors)
    off = RelativeSpace(k=900, p=8, hubness=0, gpu=False).set_anchors(anchors)
    assert (on.transform_texts(q) != off.transform_texts(q)).nnz == 0


def test_exact_search_that_does_not_fit_stays_on_the_cpu(monkeypatch, caplog) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(gpu_module, "cuda_devices", lambda: ["cuda:0"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 20, 1 << 30))
    a = lattice(1000, 32)
    with caplog.at_level(logging.WARNING, logger="asif"):
        index = AnchorIndex(a, gpu="auto")
    assert not index.on_gpu and index.placement.startswith("cpu (1000 anchors of dimension 32 need")
    assert "stays on the CPU" in caplog.text
    with pytest.raises(MemoryError, match="cuda:0"):
        AnchorIndex(a, gpu=True)


def test_gpu_true_without_a_torch_gpu_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(gpu_module, "cuda_devices", lambda: [])
    with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
        AnchorIndex(np.eye(3, dtype=np.float32), gpu=True)
    assert AnchorIndex(np.eye(3, dtype=np.float32), gpu="auto").placement == "cpu"


# --------------------------------------------------------------------------- on a real GPU
needs_torch_gpu = pytest.mark.skipif(not cuda_devices(), reason="needs torch with a CUDA GPU")
needs_faiss_gpu = pytest.mark.skipif(not gpu_available(), reason="needs faiss with a GPU")


@pytest.mark.gpu
@needs_torch_gpu
def test_real_gpu_exact_search(vectors) -> None:
    a, q = lattice(20_000, 32), lattice(64, 32, seed=2)
    index = AnchorIndex([a[:7000], a[7000:]], gpu=True)
    assert index.on_gpu and index.placement.startswith("gpu (torch cuda:")
    for got, want in zip(
        index.search(q, 800), AnchorIndex(a, gpu=False).search(q, 800), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    half = AnchorIndex(a, gpu=True, gpu_dtype="float16").search(q, 800)[1]
    assert np.mean([len(set(x) & set(y)) / 800 for x, y in zip(half, want, strict=True)]) > 0.95


@pytest.mark.gpu
@needs_faiss_gpu
def test_real_gpu_faiss_indexes(vectors) -> None:
    a, q = vectors
    hnsw_coarse = AnchorIndex(a, factory="IVF16_HNSW8,SQ8;nprobe=16", gpu=True)
    assert hnsw_coarse.on_gpu and hnsw_coarse.search(q, 2048)[1].shape == (20, 2048)
    with pytest.raises(ValueError, match="at most k = 2048"):
        hnsw_coarse.search(q, 2049)
    with pytest.raises(ValueError, match="no GPU version of IndexHNSWFlat"):
        AnchorIndex(a, factory="HNSW32", gpu=True)
    compressed = CompressedIndex.build([a], "IVF16_HNSW8,Flat;nprobe=16", gpu=True)
    cpu = CompressedIndex.build([a], "IVF16_HNSW8,Flat;nprobe=16", gpu=False)
    np.testing.assert_array_equal(
        np.sort(compressed.search(q, 50)[1]), np.sort(cpu.search(q, 50)[1])
    )
