"""Every index type against exact search: identical for exhaustive ones, recall for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from asif.index import AnchorIndex, auto_factory, gpu_available

K = 50


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """2000 anchors in 40 clusters (d = 32) and 30 queries near them, unit rows."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    a = centres[rng.integers(0, 40, 2000)] + 0.6 * rng.standard_normal((2000, 32))
    q = centres[rng.integers(0, 40, 30)] + 0.6 * rng.standard_normal((30, 32))
    a = (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return q, a


def _exact(q: np.ndarray, a: np.ndarray) -> np.ndarray:
    return AnchorIndex(a, gpu=False).search(q, K)[1]


def _recall(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref, strict=True)]))


@pytest.mark.parametrize("factory", ["IVF1,Flat", "IVF16,Flat;nprobe=16", "HNSW16;efSearch=2000"])
def test_exhaustive_indexes_equal_exact(clustered, factory: str) -> None:
    q, a = clustered
    got = AnchorIndex(a, factory=factory, gpu=False).search(q, K)[1]
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(_exact(q, a), axis=1))


@pytest.mark.parametrize(
    ("factory", "min_recall"),
    [
        ("IVF64,Flat;nprobe=16", 0.8),
        ("HNSW32;efSearch=256", 0.9),
        ("IVF64,SQ8;nprobe=64", 0.9),
        ("IVF16_HNSW16,SQ8;nprobe=16", 0.9),  # auto_factory's family above 2M anchors
        ("IVF32,PQ16x4;nprobe=32", 0.5),
    ],
)
def test_approximate_recall(clustered, factory: str, min_recall: float) -> None:
    q, a = clustered
    index = AnchorIndex(a, factory=factory, gpu=False)
    assert index.factory_ == factory
    assert _recall(index.search(q, K)[1], _exact(q, a)) >= min_recall


def test_auto_is_exact_for_small_sets(clustered) -> None:
    q, a = clustered
    index = AnchorIndex(a, factory="auto", gpu=False)
    assert index.factory_ == "Flat"
    np.testing.assert_array_equal(index.search(q, K)[1], _exact(q, a))


def test_auto_factory_by_size_and_budget() -> None:
    assert auto_factory(1_000_000, 1280, memory_budget=16e9) == "Flat"
    assert auto_factory(4_000_000, 384, memory_budget=16e9) == "IVF2048_HNSW32,Flat;nprobe=128"
    assert auto_factory(10_000_000, 384, memory_budget=8e9) == "IVF4096_HNSW32,SQ8;nprobe=256"
    assert auto_factory(10_000_000, 1280, memory_budget=8e9).startswith("OPQ128,IVF4096_HNSW32,")
    assert auto_factory(10**9, 384, memory_budget=1e12).startswith("IVF16384_HNSW32,SQ8;")
    with pytest.raises(ValueError, match="fits"):
        auto_factory(10_000_000, 1280, memory_budget=1e6)


def test_bad_factory_or_parameters(clustered) -> None:
    _, a = clustered
    with pytest.raises(ValueError, match="cannot build"):
        AnchorIndex(a, factory="NoSuchIndex", gpu=False)
    with pytest.raises(ValueError, match="cannot set"):
        AnchorIndex(a, factory="IVF4,Flat;nosuchparam=3", gpu=False)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss with a GPU")
def test_gpu_flat_equals_exact(clustered) -> None:
    q, a = clustered
    index = AnchorIndex(a, gpu=True)
    assert index.on_gpu
    np.testing.assert_array_equal(
        np.sort(index.search(q, K)[1], axis=1), np.sort(_exact(q, a), axis=1)
    )
    big_k = AnchorIndex(a, gpu=True).search(q, 800)[1]  # the paper's k, within FAISS-GPU limits
    np.testing.assert_array_equal(
        np.sort(big_k, axis=1), np.sort(AnchorIndex(a, gpu=False).search(q, 800)[1], axis=1)
    )


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss with a GPU")
def test_gpu_ivf_recall(clustered) -> None:
    q, a = clustered
    index = AnchorIndex(a, factory="IVF64,Flat;nprobe=64", gpu=True)
    assert _recall(index.search(q, K)[1], _exact(q, a)) >= 0.99


def _brute_force(q: np.ndarray, a: np.ndarray, alive: np.ndarray, k: int) -> tuple:
    """Every score, sorted by (cosine desc, position asc) over the alive rows: the tie rule."""
    scores = q @ a[alive].T
    positions = np.broadcast_to(np.arange(alive.size), scores.shape)
    order = np.lexsort((positions, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("removed", [0, 37])
@pytest.mark.parametrize("k", [1, 7, 50, 300])
def test_faiss_kernel_ties_from_repeated_rows(k: int, removed: int) -> None:
    """Anchors repeat (5 captions share an image; one row 40 times, more than FAISS is asked
    beyond k): the cut among equal scores follows the tie rule, as an exhaustive sort does."""
    from tests.index.conftest import lattice

    rows = lattice(120, seed=3)
    a = np.concatenate([np.repeat(rows[:100], 5, axis=0), np.repeat(rows[100:101], 40, axis=0)])
    a = np.concatenate([a, rows[101:]])
    q = np.concatenate([lattice(40, seed=4), rows[95:101]])
    index = AnchorIndex(a, gpu=False, kernel="faiss")
    alive = np.arange(len(a))
    if removed:
        gone = np.random.default_rng(1).choice(len(a), removed, replace=False)
        index = index.without(gone)
        alive = np.setdiff1d(alive, gone)
    scores, positions = index.search(q, k)
    want_scores, want_positions = _brute_force(q, a, alive, k)
    np.testing.assert_array_equal(positions, want_positions)
    np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.parametrize("removed", [0, 57])
def test_many_small_blocks_search_as_one_array(clustered, removed: int) -> None:
    """The shards of a set on disk (many small blocks) are searched joined: the same neighbours
    and the same scores, to the last bit, as the rows in one array; removed rows stay out."""
    q, a = clustered
    blocks = [a[i : i + 90] for i in range(0, len(a), 90)]
    sharded, whole = AnchorIndex(blocks, gpu=False), AnchorIndex(a, gpu=False)
    if removed:
        gone = np.random.default_rng(2).choice(len(a), removed, replace=False)
        sharded, whole = sharded.without(gone), whole.without(gone)
    for k in (5, 300, 1990):
        got, want = sharded.search(q, k), whole.search(q, k)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    if removed:  # positions are among the alive rows: none of them is a removed row
        alive = np.setdiff1d(np.arange(len(a)), gone)
        top = sharded.search(q, 1)[1][:, 0]
        np.testing.assert_allclose(
            np.sum(q * a[alive[top]], axis=1), sharded.search(q, 1)[0][:, 0], rtol=1e-5
        )
