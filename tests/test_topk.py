"""The exact top-k kernel against a slow float64 reference: identical indices and scores."""

from __future__ import annotations

import numpy as np
import pytest

from asif.topk import exact_topk, max_row_norm


def reference_topk(queries: np.ndarray, anchors: np.ndarray, k: int):
    """Exact scores (float64 products rounded to float32), best first, ties by lower index."""
    scores = (queries.astype(np.float64) @ anchors.astype(np.float64).T).astype(np.float32)
    keep = ~np.zeros(anchors.shape[0], bool)
    return _ranked(scores, keep, k)


def _ranked(scores: np.ndarray, keep: np.ndarray, k: int):
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    scores = np.where(keep[None, :], scores, -np.inf)
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def _data(n_anchors: int, d: int, n_queries: int, seed: int = 0, unit: bool = True):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_anchors, d)).astype(np.float32)
    q = rng.standard_normal((n_queries, d)).astype(np.float32)
    if unit:
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, a


@pytest.mark.parametrize(
    ("n_anchors", "d", "k", "anchor_block", "query_batch"),
    [
        (3000, 32, 50, 256, 7),  # many tiles, small chunks
        (3000, 32, 50, 100_000, 1000),  # one tile
        (2000, 16, 300, 100, 3),  # tiles smaller than k
        (500, 8, 500, 128, 4),  # k = N
        (500, 8, 900, 128, 4),  # k > N: capped
    ],
)
def test_exact_topk_equals_reference(n_anchors, d, k, anchor_block, query_batch) -> None:
    q, a = _data(n_anchors, d, 40)
    ref_s, ref_i = reference_topk(q, a, k)
    s, i = exact_topk(q, a, k, anchor_block=anchor_block, query_batch=query_batch)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(s, ref_s)
    assert s.dtype == np.float32 and i.dtype == np.int64


def test_chunked_and_unchunked_identical() -> None:
    q, a = _data(5000, 48, 64, seed=1, unit=False)
    whole = exact_topk(q, a, 80, anchor_block=10_000, query_batch=10_000)
    for block, batch in [(1, 64), (97, 1), (1000, 13), (4096, 64)]:
        part = exact_topk(q, a, 80, anchor_block=block, query_batch=batch)
        np.testing.assert_array_equal(part[1], whole[1])
        np.testing.assert_array_equal(part[0], whole[0])
    # Blocks given separately count as one concatenated set.
    split = exact_topk(q, [a[:1234], a[1234:1234], a[1234:]], 80, anchor_block=500)
    np.testing.assert_array_equal(split[1], whole[1])
    np.testing.assert_array_equal(split[0], whole[0])


def test_ties_go_to_the_lower_index() -> None:
    rng = np.random.default_rng(2)
    a = np.round(rng.standard_normal((3000, 4))).astype(np.float32)  # many equal scores
    q = np.round(rng.standard_normal((12, 4))).astype(np.float32)
    ref = reference_topk(q, a, 100)
    for block in (64, 333, 5000):
        got = exact_topk(q, a, 100, anchor_block=block, query_batch=5)
        np.testing.assert_array_equal(got[1], ref[1])


def test_sorted_adversarial_order() -> None:
    """Anchors sorted by increasing score: every tile beats the last (worst case for the filter)."""
    q, a = _data(4000, 16, 3, seed=3)
    a = a[np.argsort(a @ q[0])]
    ref = reference_topk(q, a, 200)
    got = exact_topk(q, a, 200, anchor_block=128)
    np.testing.assert_array_equal(got[1], ref[1])


def test_duplicate_anchors() -> None:
    q, a = _data(300, 16, 5, seed=4)
    a = np.repeat(a, 10, axis=0)  # 10 copies of each: ties everywhere, candidates overflow
    ref = reference_topk(q, a, 120)
    np.testing.assert_array_equal(exact_topk(q, a, 120, anchor_block=256)[1], ref[1])


def test_exclude_masks() -> None:
    q, a = _data(2000, 16, 10, seed=5)
    dead = np.zeros(2000, bool)
    dead[::3] = True
    dead[1500:] = True  # whole tiles excluded too
    scores = (q.astype(np.float64) @ a.astype(np.float64).T).astype(np.float32)
    ref = _ranked(scores, ~dead, 100)
    got = exact_topk(
        q, [a[:1000], a[1000:]], 100, exclude=[dead[:1000], dead[1000:]], anchor_block=200
    )
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
    with pytest.raises(ValueError, match="excluded"):
        exact_topk(q, a, 5, exclude=[np.ones(2000, bool)])


def test_bf16_path_identical_to_float32() -> None:
    pytest.importorskip("torch")
    q, a = _data(1500, 32, 12, seed=6)
    ref = reference_topk(q, a, 60)
    got = exact_topk(q, a, 60, precision="bf16", anchor_block=256)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


def test_bf16_path_on_near_ties() -> None:
    """Anchors closer to each other than bfloat16 can tell apart: the re-rank must decide."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    base = rng.standard_normal((1, 16)).astype(np.float32)
    a = base + 1e-4 * rng.standard_normal((800, 16)).astype(np.float32)
    q = base + 1e-3 * rng.standard_normal((4, 16)).astype(np.float32)
    ref = reference_topk(q, a, 50)
    got = exact_topk(q, a, 50, precision="bf16", anchor_block=128)
    np.testing.assert_array_equal(got[1], ref[1])


def test_validation_and_norms() -> None:
    q, a = _data(10, 4, 2)
    with pytest.raises(ValueError, match="k must be"):
        exact_topk(q, a, 0)
    with pytest.raises(ValueError, match="precision"):
        exact_topk(q, a, 1, precision="fp8")
    with pytest.raises(ValueError, match="match the queries"):
        exact_topk(q, a[:, :3], 1)
    assert max_row_norm([a * 2]) == pytest.approx(2.0)
