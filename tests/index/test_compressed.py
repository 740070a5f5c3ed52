"""CompressedIndex: built block by block, exact where the codes are exact, recall where not."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from asif.data import read_caption_pairs
from asif.index import AnchorIndex, gpu_available
from asif.index.compressed import CompressedIndex, uncentred_projection

K = 50


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """3000 anchors in 40 clusters around a common mean (d = 48) and 30 queries near them."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 48)) + 2.0  # a large mean, like real embeddings
    a = centres[rng.integers(0, 40, 3000)] + 0.6 * rng.standard_normal((3000, 48))
    q = centres[rng.integers(0, 40, 30)] + 0.6 * rng.standard_normal((30, 48))
    return _unit(q), _unit(a)


def _exact(q: np.ndarray, a: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    return AnchorIndex(a, gpu=False).search(q, k)


def _recall(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref, strict=True)]))


def _blocks(a: np.ndarray, rows: int) -> list[np.ndarray]:
    return [a[start : start + rows] for start in range(0, a.shape[0], rows)]


@pytest.mark.parametrize("dims", [None, 48])
def test_flat_codes_equal_exact_search(clustered, dims: int | None) -> None:
    """Flat codes with no projection, or a full-rank one (a rotation), are exact search."""
    q, a = clustered
    index = CompressedIndex.build(_blocks(a, 700), "Flat", dims=dims, gpu=False)
    assert (index.n, index.d) == a.shape
    cos, idx = index.search(q, K)
    ref_cos, ref_idx = _exact(q, a)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(cos, ref_cos, atol=1e-5)


def test_blocked_build_equals_one_block(clustered) -> None:
    """Adding in blocks gives the index one add of everything gives (same training rows)."""
    q, a = clustered
    factory = "IVF16,SQ8;nprobe=4"
    one = CompressedIndex.build([a], factory, dims=32, train_rows=1000, gpu=False)
    many = CompressedIndex.build(_blocks(a, 256), factory, dims=32, train_rows=1000, gpu=False)
    for got, want in zip(many.search(q, K), one.search(q, K), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("factory", "dims", "min_recall"),
    [
        ("IVF16,Flat;nprobe=16", 32, 0.85),
        ("IVF16,SQ8;nprobe=8", None, 0.9),
        ("IVF16_HNSW16,SQ8;nprobe=8", 32, 0.8),
        ("IVF16,PQ12;nprobe=8", None, 0.5),
    ],
)
def test_approximate_recall(clustered, factory: str, dims: int | None, min_recall: float) -> None:
    q, a = clustered
    index = CompressedIndex.build(_blocks(a, 1000), factory, dims=dims, gpu=False)
    assert index.factory_ == factory and index.dims == dims
    assert _recall(index.search(q, K)[1], _exact(q, a)[1]) >= min_recall


def test_reserve_changes_nothing_but_memory(clustered) -> None:
    q, a = clustered
    plain = CompressedIndex(a[:1000], "IVF16,SQ8;nprobe=8", dims=32, refine="SQ8", gpu=False)
    reserved = CompressedIndex(a[:1000], "IVF16,SQ8;nprobe=8", dims=32, refine="SQ8", gpu=False)
    reserved.reserve(a.shape[0])
    for block in _blocks(a, 700):
        plain.add(block)
        reserved.add(block)
    assert reserved.n == plain.n == a.shape[0]
    for got, want in zip(reserved.search(q, K), plain.search(q, K), strict=True):
        np.testing.assert_array_equal(got, want)


def test_refine_rescores_with_full_vectors(clustered) -> None:
    """Coarse candidates from 8 projected dims, re-scored with SQ8 codes of all 48."""
    q, a = clustered
    ref = _exact(q, a)[1]
    coarse = CompressedIndex.build([a], "Flat", dims=8, gpu=False)
    refined = CompressedIndex.build([a], "Flat;k_factor_rf=4", dims=8, refine="SQ8", gpu=False)
    assert _recall(refined.search(q, K)[1], ref) > _recall(coarse.search(q, K)[1], ref) + 0.1
    assert _recall(refined.search(q, K)[1], ref) >= 0.8
    cos = refined.search(q, K)[0]
    assert np.all(np.diff(cos, axis=1) <= 0)


def test_uncentred_projection_keeps_inner_products_of_a_subspace() -> None:
    """Data in a 6-dim subspace: the 6-dim projection keeps every inner product."""
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((20, 6)))[0].T
    x = _unit(rng.standard_normal((200, 6)) @ basis)
    p = uncentred_projection(x, 6)
    np.testing.assert_allclose(p @ p.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose((x @ p.T) @ (x @ p.T).T, x @ x.T, atol=1e-5)


def test_uncentred_projection_ranks_better_than_faiss_pca(clustered) -> None:
    """FAISS's PCA subtracts the mean, which re-ranks inner products even at full rank;
    ours is then a rotation and keeps them (and at 16 of 48 dims it still ranks better)."""
    q, a = clustered
    ref = _exact(q, a)[1]
    ours = CompressedIndex.build([a], "Flat", dims=48, gpu=False).search(q, K)[1]
    np.testing.assert_array_equal(ours, ref)
    ours16 = CompressedIndex.build([a], "Flat", dims=16, gpu=False).search(q, K)[1]
    pca = faiss.index_factory(48, "PCA48,Flat", faiss.METRIC_INNER_PRODUCT)
    pca.train(a)
    pca.add(a)
    centred = pca.search(q, K)[1]
    assert _recall(centred, ref) < 0.9
    pca16 = faiss.index_factory(48, "PCA16,Flat", faiss.METRIC_INNER_PRODUCT)
    pca16.train(a)
    pca16.add(a)
    assert _recall(ours16, ref) > _recall(pca16.search(q, K)[1], ref) + 0.03


def test_real_caption_embeddings(data_dir, text_encoder) -> None:
    """Real MiniLM caption embeddings: 96 of 384 dims and SQ8 codes keep most of the top-k."""
    captions = read_caption_pairs(data_dir / "coco-mini" / "captions.jsonl").captions
    x = text_encoder.encode(list(captions[:1200]), batch_size=64)
    q, a = x[:40], x[40:]
    index = CompressedIndex.build(_blocks(a, 300), "IVF8,SQ8;nprobe=4", dims=96, gpu=False)
    assert _recall(index.search(q, 20)[1], _exact(q, a, 20)[1]) >= 0.8


def test_save_and_load(tmp_path, clustered) -> None:
    q, a = clustered
    index = CompressedIndex.build([a], "IVF16,SQ8;nprobe=8", dims=32, gpu=False)
    index.save(tmp_path / "anchors.faiss")
    loaded = CompressedIndex.load(tmp_path / "anchors.faiss", gpu=False)
    assert (loaded.n, loaded.d, loaded.dims, loaded.factory_) == (3000, 48, 32, index.factory_)
    for got, want in zip(loaded.search(q, K), index.search(q, K), strict=True):
        np.testing.assert_array_equal(got, want)


def test_failed_save_keeps_the_previous_index(tmp_path, clustered, monkeypatch) -> None:
    _, a = clustered
    path = tmp_path / "anchors.faiss"  # a folder: index.faiss and a sealed manifest.json
    CompressedIndex.build([a[:1000]], "Flat", gpu=False).save(path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError, match="disk full"):
        CompressedIndex.build([a], "Flat", gpu=False).save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["anchors.faiss"]  # no temporary left
    assert CompressedIndex.load(path, gpu=False).n == 1000


def test_bad_input(clustered) -> None:
    q, a = clustered
    with pytest.raises(ValueError, match="no anchor blocks"):
        CompressedIndex.build([], "Flat", gpu=False)
    with pytest.raises(ValueError, match="cannot build"):
        CompressedIndex(a, "NoSuchIndex", gpu=False)
    with pytest.raises(ValueError, match="cannot set"):
        CompressedIndex(a, "IVF4,Flat;nosuchparam=3", gpu=False)
    with pytest.raises(ValueError, match="dims"):
        CompressedIndex(a, "Flat", dims=49, gpu=False)
    index = CompressedIndex(a, "Flat", gpu=False)
    with pytest.raises(ValueError, match="no anchors yet"):
        index.search(q, K)
    with pytest.raises(ValueError, match=r"shape \(m, 48\)"):
        index.add(a[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((2, 48), np.nan, np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss with a GPU")
def test_gpu_search_equals_cpu_search(clustered) -> None:
    q, a = clustered
    gpu = CompressedIndex.build(_blocks(a, 1000), "IVF16,Flat;nprobe=16", dims=32, gpu=True)
    cpu = CompressedIndex.build(_blocks(a, 1000), "IVF16,Flat;nprobe=16", dims=32, gpu=False)
    assert gpu.on_gpu
    np.testing.assert_array_equal(
        np.sort(gpu.search(q, K)[1], axis=1), np.sort(cpu.search(q, K)[1], axis=1)
    )
