"""The switchable improvements' pieces: adaptive k, hub weights, centring, k-occurrence."""

from __future__ import annotations

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.relative import reweight_columns
from asif.transforms import Centering, adaptive_k, hub_weights, k_occurrence


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "images": np.abs(rng.normal(size=(1200, 24))),
        "texts": rng.normal(size=(1200, 16)),
        "queries": np.abs(rng.normal(size=(30, 24))),
    }


def _anchors(data: dict[str, np.ndarray]) -> AnchorSet:
    return AnchorSet(data["images"], data["texts"])


def test_transform_pieces() -> None:
    assert adaptive_k(1) == 1
    assert adaptive_k(10**9) == 1600
    assert [adaptive_k(n) for n in (100, 2_195, 10_000)] == [5, 110, 500]
    assert adaptive_k(100, fraction=10) == 10
    with pytest.raises(ValueError, match="n_anchors"):
        adaptive_k(0)
    np.testing.assert_array_equal(hub_weights(np.array([3, 0, 9]), 0.0), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="hubness must be"):
        hub_weights(np.array([1]), -1.0)
    assert k_occurrence(np.array([[1, 1], [2, -1]]), 3).tolist() == [0, 2, 1]
    import scipy.sparse as sp

    v = sp.csr_array(np.array([[0.6, 0.8], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(reweight_columns(v, np.ones(2)).toarray(), v.toarray())
    c = Centering().fit(np.array([[2.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(c.mean_, [0.5, 0.5])
    np.testing.assert_allclose(
        c.transform(np.array([[3.0, 0.0]])), [[2**-0.5, -(2**-0.5)]], atol=1e-6
    )


def test_relative_space_auto_k_is_adaptive_k_of_n(data: dict[str, np.ndarray]) -> None:
    anchors = _anchors(data)
    auto = RelativeSpace(k="auto", p=4.0).set_anchors(anchors)
    fixed = RelativeSpace(k=adaptive_k(len(anchors)), p=4.0).set_anchors(anchors)
    a, b = auto.transform_images(data["queries"]), fixed.transform_images(data["queries"])
    np.testing.assert_array_equal(a.toarray(), b.toarray())
    assert np.diff(a.indptr).max() == adaptive_k(len(anchors))
    with pytest.raises(ValueError, match="'auto'"):
        RelativeSpace(k="many").set_anchors(anchors)  # type: ignore[arg-type]


def test_hub_weights_follow_the_anchors(data: dict[str, np.ndarray]) -> None:
    """After a swap the weights are those of the new anchors, not a stale cache."""
    anchors = _anchors(data)
    half = anchors.select(np.arange(len(anchors)) < len(anchors) // 2)
    space = RelativeSpace(k=30, p=4.0).set_anchors(anchors)
    space.transform_images(data["queries"])  # fills the cache for the full set
    space.set_anchors(half)
    fresh = RelativeSpace(k=30, p=4.0).set_anchors(half)
    np.testing.assert_allclose(
        space.transform_images(data["queries"]).toarray(),
        fresh.transform_images(data["queries"]).toarray(),
        atol=1e-6,
    )
    assert not np.allclose(
        fresh.transform_images(data["queries"]).toarray(),
        RelativeSpace(k=30, p=4.0, hubness=0)
        .set_anchors(half)
        .transform_images(data["queries"])
        .toarray(),
    )
    with pytest.raises(ValueError, match="hubness"):
        RelativeSpace(hubness=-1).set_anchors(half)


def test_extreme_hub_weights_stay_finite() -> None:
    """alpha of 147 overflowed ((c + 1) / mean) ** -alpha to inf and gave NaN vectors."""
    counts = np.array([0, 1, 5, 400])
    w = hub_weights(counts, 147.0)
    assert np.isfinite(w).all() and w.max() == 1.0
    rng = np.random.default_rng(1)
    anchors = AnchorSet(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)))
    space = RelativeSpace(k=50, p=3, hubness=147.0).set_anchors(anchors)
    vectors = space.transform_images(rng.normal(size=(20, 8)))
    assert np.isfinite(vectors.data).all()
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    space.hubness = float("nan")  # set after set_anchors: refused when used
    with pytest.raises(ValueError, match="hubness must be a finite number"):
        space.transform_images(rng.normal(size=(2, 8)))
