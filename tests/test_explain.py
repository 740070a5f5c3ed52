"""Explanations against the dense reference, and their consequences."""

from __future__ import annotations

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from tests.reference import dense_relative


@pytest.fixture
def setup() -> tuple[RelativeSpace, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    anchors = AnchorSet(
        rng.normal(size=(400, 24)),
        rng.normal(size=(400, 12)),
        captions=[f"caption {i}" for i in range(400)],
        ids=np.arange(1000, 1400),
    )
    space = RelativeSpace(hubness=0, k=60, p=4).set_anchors(anchors)
    return space, rng.normal(size=(5, 3, 12)), rng.normal(size=(8, 24))


@pytest.mark.parametrize("combine", ["mean", "max"])
def test_contributions_sum_to_the_class_score(setup, combine: str) -> None:
    space, prompts, images = setup
    clf = space.zero_shot_classifier(list("abcde"), combine=combine, prompt_embeddings=prompts)
    for image in images:
        explanation = clf.explain(image, top=None)
        scores = clf.decision_function(image[None, :])[0]
        assert explanation.label == clf.predict(image[None, :])[0]
        assert explanation.score == pytest.approx(scores.max(), abs=1e-5)
        assert sum(c.value for c in explanation.contributions) == pytest.approx(
            scores.max(), abs=1e-5
        )


def test_top_contributor_is_the_largest_dense_product(setup) -> None:
    space, prompts, images = setup
    clf = space.zero_shot_classifier(list("abcde"), prompt_embeddings=prompts, combine="mean")
    image_rel = dense_relative(images[:1], space.anchors_.image_embeddings, 60, 4.0)[0]
    prompt_rel = dense_relative(prompts.reshape(15, 12), space.anchors_.text_embeddings, 60, 4.0)
    class_vectors = prompt_rel.reshape(5, 3, -1).mean(axis=1)
    class_vectors /= np.linalg.norm(class_vectors, axis=1, keepdims=True)
    predicted = int(np.argmax(class_vectors @ image_rel))
    best_anchor = int(np.argmax(image_rel * class_vectors[predicted]))

    explanation = clf.explain(images[0], top=3)

    assert explanation.contributions[0].anchor_id == 1000 + best_anchor
    assert explanation.contributions[0].caption == f"caption {best_anchor}"
    values = [c.value for c in explanation.contributions]
    assert values == sorted(values, reverse=True)
    assert len(values) == 3


def test_removing_the_top_anchors_lowers_the_score(setup) -> None:
    space, prompts, images = setup
    clf = space.zero_shot_classifier(list("abcde"), prompt_embeddings=prompts, combine="mean")
    explanation = clf.explain(images[0], top=5)
    label = explanation.label
    column = list(clf.classes_).index(label)
    before = clf.decision_function(images[:1])[0, column]

    removed = {c.anchor_id for c in explanation.contributions}
    keep = np.array([i not in removed for i in space.anchors_.ids])
    space.set_anchors(space.anchors_.select(keep))

    after = clf.decision_function(images[:1])[0, column]
    assert after < before


def test_against_explains_the_margin(setup) -> None:
    space, prompts, images = setup
    clf = space.zero_shot_classifier(list("abcde"), prompt_embeddings=prompts, combine="mean")
    scores = clf.decision_function(images[:1])[0]
    predicted = clf.predict(images[:1])[0]
    other = next(c for c in clf.classes_ if c != predicted)
    explanation = clf.explain(images[0], top=None, against=other)
    margin = scores[list(clf.classes_).index(predicted)] - scores[list(clf.classes_).index(other)]
    assert explanation.score == pytest.approx(margin, abs=1e-5)
    assert "margin over" in str(explanation)
    with pytest.raises(ValueError, match="unknown class"):
        clf.explain(images[0], against="zebra")


def test_explain_similarity_sums_to_the_score_and_matches_the_dense_reference(setup) -> None:
    space, prompts, images = setup
    text = prompts[2, 1]
    explanation = space.explain_similarity(images[0], text, top=None)
    score = space.similarity(images[:1], text[None, :])[0, 0]
    assert explanation.score == pytest.approx(score, abs=1e-5)
    assert sum(c.value for c in explanation.contributions) == pytest.approx(score, abs=1e-5)

    image_rel = dense_relative(images[:1], space.anchors_.image_embeddings, 60, 4.0)[0]
    text_rel = dense_relative(text[None, :], space.anchors_.text_embeddings, 60, 4.0)[0]
    best = int(np.argmax(image_rel * text_rel))
    top = space.explain_similarity(images[0], text[None, :], top=2)
    assert top.contributions[0].anchor_id == 1000 + best
    assert top.contributions[0].caption == f"caption {best}"
    assert len(top.contributions) == 2


def test_removing_the_top_pairs_lowers_the_similarity(setup) -> None:
    space, prompts, images = setup
    text = prompts[0, 0]
    before = space.similarity(images[:1], text[None, :])[0, 0]
    explanation = space.explain_similarity(images[0], text, top=3)
    space.remove_anchors([c.anchor_id for c in explanation.contributions])
    assert space.similarity(images[:1], text[None, :])[0, 0] < before


def test_explain_similarity_takes_one_input(setup) -> None:
    space, prompts, images = setup
    with pytest.raises(ValueError, match="one image embedding"):
        space.explain_similarity(images[:2], prompts[0, 0])
    with pytest.raises(ValueError, match="one text"):
        space.explain_similarity(images[0], ["a", "b"])
