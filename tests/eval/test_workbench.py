"""Improvements over the paper's algorithm: each one off gives the paper's output exactly.

The dense reference (``tests/reference.py``) is the paper's algorithm; the evaluation engine with
``PAPER`` (or any setting with every improvement off) must reproduce it, and must agree with
``RelativeSpace``. Each improvement switched on is checked against a dense version of itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.eval import PAPER, Setting, Workbench, parse_setting
from asif.relative import reweight_columns
from asif.transforms import Centering, adaptive_k, hub_weights, k_occurrence
from tests.reference import dense_relative, dense_zero_shot_scores, unit


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n, di, dt = 1200, 24, 16
    # non-negative image features, like pooled CNN features: centring then matters
    return {
        "images": np.abs(rng.normal(size=(n, di))),
        "texts": rng.normal(size=(n, dt)),
        "queries": np.abs(rng.normal(size=(30, di))),
        "prompts": rng.normal(size=(4, 3, dt)),
    }


def _anchors(data: dict[str, np.ndarray]) -> AnchorSet:
    return AnchorSet(data["images"], data["texts"])


def _reference(data, k, p, combine, center=False, image_w=None, text_w=None):  # type: ignore[no-untyped-def]
    images, texts = data["images"], data["texts"]
    queries, prompts = data["queries"], data["prompts"].reshape(-1, data["texts"].shape[1])
    if center:
        mi, mt = unit(images).mean(0), unit(texts).mean(0)
        images, queries = unit(unit(images) - mi), unit(unit(queries) - mi)
        texts, prompts = unit(unit(texts) - mt), unit(unit(prompts) - mt)
    q = dense_relative(queries, images, k, p)
    t = dense_relative(prompts, texts, k, p)
    if image_w is not None:
        q = unit(q * image_w)
    if text_w is not None:
        t = unit(t * text_w)
    return dense_zero_shot_scores(q, t, data["prompts"].shape[0], combine)


def test_paper_setting_is_the_dense_reference(data: dict[str, np.ndarray]) -> None:
    assert (PAPER.k, PAPER.p, PAPER.combine, PAPER.center, PAPER.hubness) == (
        800,
        8.0,
        "max",
        False,
        0.0,
    )
    scores = Workbench(_anchors(data)).zero_shot_scores(data["queries"], data["prompts"], PAPER)
    np.testing.assert_allclose(scores, _reference(data, 800, 8.0, "max"), atol=1e-5)


@pytest.mark.parametrize("combine", ["mean", "max"])
@pytest.mark.parametrize(("k", "p"), [(800, 8.0), (50, 3.0), (5000, 1.0)])
def test_improvements_off_match_reference_and_relative_space(
    data: dict[str, np.ndarray], combine: str, k: int, p: float
) -> None:
    setting = Setting("off", k=k, p=p, combine=combine)  # type: ignore[arg-type]
    scores = Workbench(_anchors(data)).zero_shot_scores(data["queries"], data["prompts"], setting)
    np.testing.assert_allclose(scores, _reference(data, k, p, combine), atol=1e-5)

    space = RelativeSpace(k=k, p=p, hubness=0).set_anchors(_anchors(data))
    clf = space.zero_shot_classifier(
        list("abcd"), combine=combine, prompt_embeddings=data["prompts"]
    )  # type: ignore[arg-type]
    np.testing.assert_allclose(scores, clf.decision_function(data["queries"]), atol=1e-6)


def test_centring_matches_a_dense_centred_reference(data: dict[str, np.ndarray]) -> None:
    setting = Setting("c", k=60, p=4.0, combine="mean", center=True)
    scores = Workbench(_anchors(data)).zero_shot_scores(data["queries"], data["prompts"], setting)
    expected = _reference(data, 60, 4.0, "mean", center=True)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not np.allclose(scores, _reference(data, 60, 4.0, "mean"), atol=1e-3)


def test_hub_weighting_matches_a_dense_reweighted_reference(data: dict[str, np.ndarray]) -> None:
    setting = Setting("h", k=60, p=4.0, combine="max", hubness=0.5)
    bench = Workbench(_anchors(data))
    scores = bench.zero_shot_scores(data["queries"], data["prompts"], setting)
    # hub counts: each anchor's occurrences in the anchors' own top-60 lists (N < sample size)
    wi = hub_weights(_dense_k_occurrence(data["images"], 60), 0.5)
    wt = hub_weights(_dense_k_occurrence(data["texts"], 60), 0.5)
    expected = _reference(data, 60, 4.0, "max", image_w=wi, text_w=wt)
    np.testing.assert_allclose(scores, expected, atol=1e-5)

    # RelativeSpace applies the same weights, to images and prompts alike.
    space = RelativeSpace(k=60, p=4.0, hubness=0.5).set_anchors(_anchors(data))
    clf = space.zero_shot_classifier(list("abcd"), prompt_embeddings=data["prompts"])
    np.testing.assert_allclose(clf.decision_function(data["queries"]), expected, atol=1e-5)


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


def _dense_k_occurrence(x: np.ndarray, k: int) -> np.ndarray:
    cos = unit(x) @ unit(x).T
    top = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return np.bincount(top.reshape(-1), minlength=x.shape[0])


def test_sweeps_reuse_one_search_and_agree_with_fresh_engines(data: dict[str, np.ndarray]) -> None:
    bench = Workbench(_anchors(data))
    queries = data["queries"]
    big = bench.zero_shot_scores(queries, data["prompts"], Setting("a", k=300, p=2.0))
    small = bench.zero_shot_scores(queries, data["prompts"], Setting("b", k=20, p=2.0))
    fresh = Workbench(_anchors(data)).zero_shot_scores(
        queries, data["prompts"], Setting("b", k=20, p=2.0)
    )
    np.testing.assert_allclose(small, fresh, atol=1e-6)
    assert not np.allclose(big, small)


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


def test_parse_setting_round_trip_and_errors() -> None:
    s = parse_setting("x=auto,4,mean,center,hub=0.5")
    assert (s.name, s.k, s.p, s.combine, s.center, s.hubness) == (
        "x",
        "auto",
        4.0,
        "mean",
        True,
        0.5,
    )
    assert parse_setting("paper") == PAPER
    for bad in ("x=1,2", "x=1,2,median", "x=a,2,max", "x=1,2,max,fast"):
        with pytest.raises(ValueError, match="bad setting"):
            parse_setting(bad)


def test_relative_space_auto_k_is_adaptive_k_of_n(data: dict[str, np.ndarray]) -> None:
    anchors = _anchors(data)
    auto = RelativeSpace(k="auto", p=4.0).set_anchors(anchors)
    fixed = RelativeSpace(k=adaptive_k(len(anchors)), p=4.0).set_anchors(anchors)
    a, b = auto.transform_images(data["queries"]), fixed.transform_images(data["queries"])
    np.testing.assert_array_equal(a.toarray(), b.toarray())
    assert np.diff(a.indptr).max() == adaptive_k(len(anchors))
    with pytest.raises(ValueError, match="'auto'"):
        RelativeSpace(k="many").set_anchors(anchors)  # type: ignore[arg-type]
