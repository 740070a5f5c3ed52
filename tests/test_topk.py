"""The streaming exact top-k kernel against a slow, obvious reference (score all, sort all)."""

from __future__ import annotations

import numpy as np
import pytest

import asif.topk
from asif.topk import exact_topk


def reference_topk(queries: np.ndarray, anchors: np.ndarray, k: int, live=None):
    """Score every anchor in float64, sort each row by (score desc, index asc), keep k."""
    scores = queries.astype(np.float64) @ anchors.astype(np.float64).T
    if live is not None:
        scores[:, ~live] = -np.inf
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def integer_data(n_anchors: int, d: int, n_queries: int, seed: int = 0, scale: int = 3):
    """Small-integer vectors: every inner product is exact in float32, so results must match
    the reference exactly (ties included), whatever the blocking."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-scale, scale + 1, (n_anchors, d)).astype(np.float32)
    q = rng.integers(-scale, scale + 1, (n_queries, d)).astype(np.float32)
    return q, a


@pytest.fixture
def small_sample(monkeypatch):
    """Sample few scores so that the threshold path runs on small test data."""
    monkeypatch.setattr(asif.topk, "SAMPLE", 64)


@pytest.mark.parametrize(
    ("n_anchors", "d", "k", "n_blocks", "query_chunk"),
    [
        (3000, 16, 50, 1, 512),
        (3000, 16, 50, 5, 7),  # many blocks, small chunks
        (2000, 8, 300, 40, 3),  # blocks smaller than k
        (500, 8, 500, 3, 4),  # k = N
        (20000, 32, 800, 3, 64),  # the paper's k
    ],
)
def test_equals_reference_exactly(small_sample, n_anchors, d, k, n_blocks, query_chunk) -> None:
    q, a = integer_data(n_anchors, d, 40)
    ref_s, ref_i = reference_topk(q, a, k)
    blocks = np.array_split(a, n_blocks)
    s, i = exact_topk(q, blocks, k, query_chunk=query_chunk)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(s, ref_s.astype(np.float32))
    assert s.dtype == np.float32 and i.dtype == np.int64


def test_real_valued_data_matches_reference(small_sample) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5000, 64)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    q = a[:50] + 0.1 * rng.standard_normal((50, 64)).astype(np.float32)
    ref_s, ref_i = reference_topk(q, a, 200)
    s, i = exact_topk(q, [a[:2000], a[2000:]], 200)
    np.testing.assert_allclose(s, ref_s, atol=1e-5)
    # float32 rounding may swap two anchors within 1e-5 of each other, nothing more.
    kth = ref_s[:, -1:]
    for row in range(q.shape[0]):
        assert set(i[row]) ^ set(ref_i[row]) <= set(
            np.flatnonzero(np.abs(q[row] @ a.T - kth[row]) < 1e-5)
        )


def test_chunked_and_unchunked_identical(small_sample) -> None:
    q, a = integer_data(6000, 24, 64, seed=2)
    whole = exact_topk(q, [a], 300, query_chunk=10_000)
    for chunk, n_blocks in [(1, 1), (13, 4), (64, 60), (7, 2)]:
        part = exact_topk(q, np.array_split(a, n_blocks), 300, query_chunk=chunk)
        np.testing.assert_array_equal(part[1], whole[1])
        np.testing.assert_array_equal(part[0], whole[0])


def test_ties_go_to_the_lower_position(small_sample) -> None:
    q, a = integer_data(3000, 3, 12, seed=3, scale=1)  # few distinct scores: ties everywhere
    ref = reference_topk(q, a, 100)
    for n_blocks in (1, 7, 30):
        got = exact_topk(q, np.array_split(a, n_blocks), 100, query_chunk=5)
        np.testing.assert_array_equal(got[1], ref[1])


def test_misleading_sample_falls_back_to_all_scores(small_sample) -> None:
    """Best anchors placed exactly on the sampled columns: the sampled threshold is too high,
    fewer than k scores pass, and the row must be redone unfiltered."""
    q, a = integer_data(4096, 8, 2, seed=4)
    order = np.argsort(-(a @ q[0]), kind="stable")
    stride = a.shape[0] // asif.topk.SAMPLE
    placed = np.empty_like(order)
    on_sample = np.arange(0, a.shape[0], stride)
    placed[on_sample] = order[: on_sample.size]
    placed[np.setdiff1d(np.arange(a.shape[0]), on_sample)] = order[on_sample.size :]
    a = a[placed]
    ref = reference_topk(q, a, 300)
    got = exact_topk(q, [a], 300)
    np.testing.assert_array_equal(got[1], ref[1])


def test_positions_skip_removed_rows(small_sample) -> None:
    q, a = integer_data(3000, 16, 10, seed=5)
    live = np.ones(3000, bool)
    live[::3] = False
    live[2500:] = False  # a whole block removed
    ranks = np.where(live, np.cumsum(live) - 1, -1)
    ref_s, ref_rows = reference_topk(q, a, 150, live=live)
    blocks = [a[:1000], a[1000:2500], a[2500:]]
    maps = [ranks[:1000], ranks[1000:2500], ranks[2500:]]
    s, pos = exact_topk(q, blocks, 150, positions=maps)
    np.testing.assert_array_equal(pos, ranks[ref_rows])
    np.testing.assert_array_equal(s, ref_s.astype(np.float32))
