"""The relative layer against a dense numpy reference, invariances, and its unit-level math."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asif import AnchorSet, RelativeSpace
from asif.relative import check_k, check_p, relative_from_topk, sparse_scores
from tests.reference import dense_relative, dense_topk_support, random_orthogonal, unit

GRID = [
    (n, d, k, p)
    for n in (50, 1000, 20000)
    for d in (16, 384)
    for k in (1, 8, 800, None)  # None = N
    for p in (1.0, 8.0)
]


def _space(images: np.ndarray, texts: np.ndarray, k: int, p: float) -> RelativeSpace:
    return RelativeSpace(hubness=0, k=k, p=p).set_anchors(AnchorSet(images, texts))


def _cosines(queries: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    return unit(queries) @ unit(anchors).T


@pytest.mark.parametrize(("n", "d", "k", "p"), GRID)
def test_matches_dense_reference(n: int, d: int, k: int | None, p: float) -> None:
    rng = np.random.default_rng([n, d, k or 0, int(p)])
    anchors = rng.normal(size=(n, d)).astype(np.float32)
    queries = rng.normal(size=(40, d)).astype(np.float32)
    k = n if k is None else k
    space = _space(anchors, rng.normal(size=(n, 4)), k, p)

    out = space.transform_images(queries)

    assert isinstance(out, sp.csr_array)
    assert out.shape == (40, n)
    assert out.dtype == np.float32
    expected = dense_relative(queries, anchors, k, p)
    supports = dense_topk_support(queries, anchors, k)
    cos = _cosines(queries, anchors)
    kth = np.sort(cos, axis=1)[:, ::-1][:, min(k, n) - 1]
    tie_rows = 0
    for row in range(40):
        got = set(out.indices[out.indptr[row] : out.indptr[row + 1]].tolist())
        if got != supports[row]:
            # Only a float32 near-tie at the k-th place may swap a column in or out.
            swapped = np.array(sorted(got ^ supports[row]))
            assert np.all(np.abs(cos[row, swapped] - kth[row]) < 1e-5), (row, swapped)
            tie_rows += 1
            continue
        np.testing.assert_allclose(out[[row]].toarray()[0], expected[row], atol=1e-5)
    assert tie_rows <= 1


def test_rows_are_unit_norm_with_at_most_k_nonzeros() -> None:
    rng = np.random.default_rng(1)
    space = _space(rng.normal(size=(500, 32)), rng.normal(size=(500, 8)), k=20, p=8)
    out = space.transform_texts(rng.normal(size=(30, 8)))
    assert np.diff(out.indptr).max() <= 20
    np.testing.assert_allclose(sp.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("p", [1.0, 8.0])
def test_invariant_to_rotation_and_scale(p: float) -> None:
    rng = np.random.default_rng(2)
    images, texts = rng.normal(size=(300, 24)), rng.normal(size=(300, 12))
    queries = rng.normal(size=(25, 24))
    before = _space(images, texts, k=30, p=p).transform_images(queries).toarray()

    rotation = random_orthogonal(24, rng)
    rotated = _space(images @ rotation, texts, k=30, p=p).transform_images(queries @ rotation)
    np.testing.assert_allclose(rotated.toarray(), before, atol=1e-5)

    scales = rng.uniform(0.1, 10.0, size=(300, 1))
    scaled = _space(images * scales, texts, k=30, p=p).transform_images(queries * 3.5)
    np.testing.assert_allclose(scaled.toarray(), before, atol=1e-5)


def test_negative_cosines_are_clamped_not_powered() -> None:
    # With p = 2, an unclamped -0.9 would outweigh +0.5; clamping drops it.
    out = relative_from_topk(np.array([[0, 1]]), np.array([[0.5, -0.9]]), 2, p=2.0)
    np.testing.assert_allclose(out.toarray(), [[1.0, 0.0]])
    assert out.nnz == 1


def test_power_and_normalisation_values() -> None:
    out = relative_from_topk(np.array([[3, 1]]), np.array([[0.8, 0.4]]), 4, p=2.0)
    w = np.array([0.0, 0.16, 0.0, 0.64])
    np.testing.assert_allclose(out.toarray()[0], w / np.linalg.norm(w), rtol=1e-6)


def test_padding_and_all_negative_rows_are_empty() -> None:
    out = relative_from_topk(
        np.array([[-1, -1], [0, 1]]), np.array([[0.9, 0.9], [-0.1, -0.2]]), 2, 8
    )
    assert out.nnz == 0
    assert out.shape == (2, 2)


def test_large_p_does_not_underflow_the_top_entry() -> None:
    out = relative_from_topk(np.array([[0, 1]]), np.array([[1e-3, 5e-4]]), 2, p=64.0)
    assert out.toarray()[0, 0] == pytest.approx(1.0)


def test_k_is_capped_at_n() -> None:
    rng = np.random.default_rng(3)
    anchors, queries = rng.normal(size=(10, 8)), rng.normal(size=(4, 8))
    out = _space(anchors, rng.normal(size=(10, 8)), k=800, p=1).transform_images(queries)
    np.testing.assert_allclose(out.toarray(), dense_relative(queries, anchors, 10, 1.0), atol=1e-6)


def test_chunked_search_equals_one_chunk() -> None:
    rng = np.random.default_rng(4)
    anchors = AnchorSet(rng.normal(size=(2000, 32)), rng.normal(size=(2000, 8)))
    queries = rng.normal(size=(1001, 32))
    space = RelativeSpace(hubness=0, k=50, p=8).set_anchors(anchors)
    whole = space.transform_images(queries)
    space.snapshot().image_index.query_batch = 97
    chunked = space.transform_images(queries)
    assert (whole != chunked).nnz == 0


def test_sparse_scores_equal_dense_product() -> None:
    rng = np.random.default_rng(5)
    space = _space(rng.normal(size=(400, 16)), rng.normal(size=(400, 16)), k=40, p=8)
    a = space.transform_images(rng.normal(size=(7, 16)))
    b = space.transform_texts(rng.normal(size=(9, 16)))
    np.testing.assert_allclose(sparse_scores(a, b), a.toarray() @ b.toarray().T, atol=1e-6)
    with pytest.raises(ValueError, match="different anchor sets"):
        sparse_scores(a, sp.csr_array((1, 3), dtype=np.float32))


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "8"])
def test_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        check_k(k)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0, -1.0, float("nan"), float("inf"), "8"])
def test_bad_p(p: object) -> None:
    with pytest.raises(ValueError, match="p must be"):
        check_p(p)  # type: ignore[arg-type]
