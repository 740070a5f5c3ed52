"""Improvements over the paper's algorithm: each one off gives the paper's output exactly.

The dense reference (``tests/reference.py``) is the paper's algorithm; the evaluation engine with
``PAPER`` (or any setting with every improvement off) must reproduce it, and must agree with
``RelativeSpace``. Each improvement switched on is checked against a dense version of itself.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.eval import PAPER, CachedSearch, Setting, Workbench
from asif.index import AnchorIndex
from asif.transforms import hub_weights
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
    # k = 20 was answered from the k = 300 search of the same queries
    assert bench.indexes[("image", False)].misses == 1


def test_a_smaller_k_is_the_first_columns_of_a_larger_search() -> None:
    rng = np.random.default_rng(3)
    rows = np.round(rng.normal(size=(40, 8)) * 2) / 4  # coarse values: many equal cosines
    anchors = unit(np.repeat(rows, 5, axis=0)).astype(np.float32)  # and repeated rows
    queries = unit(np.round(rng.normal(size=(25, 8)) * 2) / 4).astype(np.float32)
    index = AnchorIndex(anchors, gpu=False)
    cached = CachedSearch(AnchorIndex(anchors, gpu=False), prefixes=True)
    cached.search(queries, 60)
    for k in (1, 13, 60, 500):
        for got, want in zip(cached.search(queries, k), index.search(queries, k), strict=True):
            np.testing.assert_array_equal(got, want)
    assert cached.misses == 2  # k = 500 > k = 60 searched again
    plain = CachedSearch(AnchorIndex(anchors, gpu=False))
    plain.search(queries, 60), plain.search(queries, 13)
    assert plain.misses == 2


def test_every_workbench_score_is_the_public_api_score_on_real_data(
    data_dir, image_encoder, text_encoder
) -> None:  # type: ignore[no-untyped-def]
    """The harness caches neighbours but computes nothing itself: on real embeddings, its
    scores equal those of a fresh public RelativeSpace for each setting, to the bit."""
    from asif.data import read_caption_pairs, read_image_folder
    from asif.eval import DEFAULT
    from asif.templates import CIFAR_TEMPLATES, format_prompts

    pairs = read_caption_pairs(data_dir / "coco-mini" / "captions.jsonl")
    space = RelativeSpace(image_encoder=image_encoder, text_encoder=text_encoder)
    space.fit(pairs.image_paths[:300], pairs.captions[:300])
    anchors = space.anchors_
    cifar = read_image_folder(data_dir / "cifar10-test")
    images = space.encode_images(cifar.paths[::100])
    prompts = space.encode_texts(format_prompts(cifar.classnames, CIFAR_TEMPLATES[:4]))
    prompts = prompts.reshape(10, 4, -1)
    bench = Workbench(anchors)
    settings = [
        PAPER,
        DEFAULT,
        Setting("c", k=30, p=3.0, combine="mean", center=True, hubness=0.5),
    ]
    for setting in settings:
        public = RelativeSpace(**setting.space_params()).set_anchors(anchors)
        clf = public.zero_shot_classifier(
            list(cifar.classnames), prompt_embeddings=prompts, combine=setting.combine
        )
        expected = clf.decision_function(images)
        np.testing.assert_array_equal(bench.zero_shot_scores(images, prompts, setting), expected)
        np.testing.assert_array_equal(
            bench.retrieval_scores(images, anchors.text_embeddings[:50], setting),
            public.similarity(images, anchors.text_embeddings[:50]),
        )
    searches = {key: index.misses for key, index in bench.indexes.items()}
    bench.zero_shot_scores(images, prompts, replace(PAPER, name="p=4", p=4.0))
    assert {key: index.misses for key, index in bench.indexes.items()} == searches  # cached
