"""Hot swap: set/add/remove anchors while other threads query; exact results; stable ids."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import asif.index.exact
import asif.topk
from asif import AnchorSet, RelativeSpace
from asif.index import AnchorIndex
from tests.reference import dense_relative


@pytest.fixture(params=["faiss-per-segment", "streaming"])
def small_segments(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 32 rows, so small sets exercise multi-segment search, merging, compaction;
    searched both ways exact search can run (FAISS per segment, asif.topk streaming)."""
    monkeypatch.setattr(asif.index.exact, "SEGMENT_ROWS", 32)
    if request.param == "streaming":
        monkeypatch.setattr(asif.index.exact, "_STREAM_MIN_ROWS", 0)
        monkeypatch.setattr(asif.topk, "SAMPLE", 8)


def _anchors(n: int, seed: int, first_id: int = 0) -> AnchorSet:
    rng = np.random.default_rng(seed)
    return AnchorSet(
        rng.normal(size=(n, 24)),
        rng.normal(size=(n, 12)),
        captions=[f"pair {first_id + i}" for i in range(n)],
        ids=first_id + np.arange(n),
    )


def _assert_matches_reference(space: RelativeSpace, anchors: AnchorSet, k: int = 15) -> None:
    rng = np.random.default_rng(123)
    queries = rng.normal(size=(30, 24))
    got = space.transform_images(queries).toarray()
    np.testing.assert_allclose(
        got, dense_relative(queries, anchors.image_embeddings, k, 8.0), atol=1e-5
    )
    texts = rng.normal(size=(30, 12))
    got = space.transform_texts(texts).toarray()
    np.testing.assert_allclose(
        got, dense_relative(texts, anchors.text_embeddings, k, 8.0), atol=1e-5
    )


def test_concurrent_predict_sees_one_set_or_the_other() -> None:
    rng = np.random.default_rng(0)
    a, b = _anchors(400, seed=1), _anchors(250, seed=2)
    queries = rng.normal(size=(20, 24))
    space = RelativeSpace(hubness=0, p=8, k=20).set_anchors(a)
    clf = space.zero_shot_classifier(list("abcde"), prompt_embeddings=rng.normal(size=(5, 2, 12)))
    expected_a = clf.decision_function(queries)
    space.set_anchors(b)
    expected_b = clf.decision_function(queries)
    assert not np.array_equal(expected_a, expected_b)

    answers: list[np.ndarray] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def predict() -> None:
        try:
            while not stop.is_set():
                answers.append(clf.decision_function(queries))
        except BaseException as error:  # surfaced below
            errors.append(error)

    reader = threading.Thread(target=predict)
    reader.start()
    try:
        swaps, deadline = 0, time.monotonic() + 20
        while (swaps < 60 or len(answers) < 40) and time.monotonic() < deadline:
            space.set_anchors(a if swaps % 2 == 0 else b)
            swaps += 1
            time.sleep(0.0005)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert len(answers) >= 40
    for answer in answers:
        assert np.array_equal(answer, expected_a) or np.array_equal(answer, expected_b)


def test_remove_then_add_keeps_ids_stable_and_results_exact(small_segments: None) -> None:
    anchors = _anchors(300, seed=3)
    space = RelativeSpace(hubness=0, p=8, k=15).set_anchors(anchors)
    rng = np.random.default_rng(4)
    removed = rng.choice(anchors.ids, size=40, replace=False)
    space.remove_anchors(removed)
    expected = anchors.select(~np.isin(anchors.ids, removed))
    assert space.anchors_.ids.tolist() == expected.ids.tolist()
    assert space.anchors_.captions == expected.captions
    _assert_matches_reference(space, expected)

    added = _anchors(70, seed=5, first_id=space.next_id_)
    space.add_anchors(added)
    expected = expected.concat(added)
    assert space.n_anchors_ == 330
    assert space.anchors_.ids.tolist() == expected.ids.tolist()
    assert space.anchors_.captions == expected.captions
    np.testing.assert_array_equal(space.anchors_.image_embeddings, expected.image_embeddings)
    _assert_matches_reference(space, expected)
    # A surviving id still names the same pair.
    survivor = int(expected.ids[5])
    assert (
        space.anchors_.captions[int(space.anchors_.positions([survivor])[0])] == f"pair {survivor}"
    )


def test_heavy_removal_compacts_segments_and_stays_exact(small_segments: None) -> None:
    anchors = _anchors(200, seed=6)
    space = RelativeSpace(hubness=0, p=8, k=15).set_anchors(anchors)
    removed = np.arange(10, 150)  # whole segments and most of others
    space.remove_anchors(removed)
    index = space.snapshot().image_index
    assert all(s.ranks is None or s.n_removed * 8 <= s.vectors.shape[0] for s in index._segments)
    _assert_matches_reference(space, anchors.select(~np.isin(anchors.ids, removed)))


def test_many_small_adds_are_merged_and_stay_exact(small_segments: None) -> None:
    space = RelativeSpace(hubness=0, p=8, k=15).set_anchors(_anchors(40, seed=7))
    expected = _anchors(40, seed=7)
    for i in range(20):
        more = _anchors(3, seed=100 + i, first_id=space.next_id_)
        space.add_anchors(more)
        expected = expected.concat(more)
    assert len(space.snapshot().image_index._segments) < 15
    _assert_matches_reference(space, expected)


def test_classifier_follows_add_and_remove() -> None:
    rng = np.random.default_rng(8)
    prompts = rng.normal(size=(4, 2, 12))
    queries = rng.normal(size=(10, 24))
    space = RelativeSpace(hubness=0, p=8, k=10).set_anchors(_anchors(200, seed=9))
    clf = space.zero_shot_classifier(list("abcd"), prompt_embeddings=prompts)
    for change in (
        lambda: space.remove_anchors(np.arange(0, 200, 3)),
        lambda: space.add_anchors(_anchors(50, seed=10, first_id=space.next_id_)),
    ):
        change()
        fresh = space.zero_shot_classifier(list("abcd"), prompt_embeddings=prompts)
        np.testing.assert_array_equal(
            clf.decision_function(queries), fresh.decision_function(queries)
        )


def test_unknown_or_bad_ids_are_clear_errors_and_change_nothing() -> None:
    space = RelativeSpace(hubness=0, p=8, k=5).set_anchors(_anchors(20, seed=11))
    state = space.snapshot()
    with pytest.raises(KeyError, match=r"unknown anchor ids: \[99\]"):
        space.remove_anchors([3, 99])
    with pytest.raises(ValueError, match="more than once"):
        space.remove_anchors([3, 3])
    with pytest.raises(ValueError, match="every anchor"):
        space.remove_anchors(np.arange(20))
    with pytest.raises(ValueError, match=r"ids already in use: \[0, 1\]"):
        space.add_anchors(_anchors(2, seed=12))
    with pytest.raises(ValueError, match="dims"):
        space.add_anchors(AnchorSet(np.eye(3), np.eye(3), ids=[50, 51, 52]))
    assert space.snapshot().key == state.key
    assert space.remove_anchors([]).n_anchors_ == 20


def test_save_after_add_and_remove_round_trips(small_segments: None, tmp_path: Path) -> None:
    space = RelativeSpace(hubness=0, p=8, k=15).set_anchors(_anchors(100, seed=13))
    space.remove_anchors(np.arange(5, 60, 2)).add_anchors(_anchors(30, seed=14, first_id=1000))
    queries = np.random.default_rng(15).normal(size=(12, 24))
    before = space.transform_images(queries).toarray()
    loaded = RelativeSpace.load(space.save(tmp_path / "space"))
    np.testing.assert_array_equal(loaded.anchors_.ids, space.anchors_.ids)
    np.testing.assert_allclose(loaded.transform_images(queries).toarray(), before, atol=1e-6)


def test_anchor_index_is_immutable_and_copies_nothing() -> None:
    vectors = np.ascontiguousarray(_anchors(50, seed=16).image_embeddings)
    index = AnchorIndex(vectors)
    assert index.vectors() is vectors  # searched in place, no copy
    smaller = index.without([0, 1])
    bigger = index.with_added(vectors[:3])
    assert (index.n, smaller.n, bigger.n) == (50, 48, 53)
    np.testing.assert_array_equal(smaller.vectors(), vectors[2:])
    np.testing.assert_array_equal(index.search(vectors[:2], 1)[1], [[0], [1]])
    with pytest.raises(IndexError, match="positions must lie"):
        index.without([50])


def test_approximate_index_rebuilds_on_add_and_remove() -> None:
    anchors = _anchors(120, seed=17)
    space = RelativeSpace(hubness=0, p=8, k=15, index="IVF1,Flat").set_anchors(
        anchors
    )  # one list: exhaustive
    space.remove_anchors(np.arange(0, 30)).add_anchors(_anchors(10, seed=18, first_id=500))
    expected = anchors.select(np.arange(30, 120)).concat(_anchors(10, seed=18, first_id=500))
    assert space.snapshot().image_index._faiss is not None
    _assert_matches_reference(space, expected)
