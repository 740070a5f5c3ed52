"""RelativeSpace, AnchorSet and the zero-shot classifier on precomputed embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from tests.reference import dense_relative, dense_zero_shot_scores


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "images": rng.normal(size=(600, 32)),
        "texts": rng.normal(size=(600, 16)),
        "queries": rng.normal(size=(50, 32)),
        "prompts": rng.normal(size=(6, 4, 16)),  # 6 classes x 4 templates
    }


def _space(data: dict[str, np.ndarray], k: int = 40, p: float = 8.0) -> RelativeSpace:
    return RelativeSpace(hubness=0, k=k, p=p).set_anchors(AnchorSet(data["images"], data["texts"]))


@pytest.mark.parametrize("combine", ["mean", "max"])
def test_zero_shot_matches_reference_argmax(data: dict[str, np.ndarray], combine: str) -> None:
    classes = [f"class{i}" for i in range(6)]
    clf = _space(data).zero_shot_classifier(
        classes,
        combine=combine,
        prompt_embeddings=data["prompts"],  # type: ignore[arg-type]
    )
    image_rel = dense_relative(data["queries"], data["images"], 40, 8.0)
    prompt_rel = dense_relative(data["prompts"].reshape(24, 16), data["texts"], 40, 8.0)
    expected = dense_zero_shot_scores(image_rel, prompt_rel, 6, combine)

    scores = clf.decision_function(data["queries"])

    np.testing.assert_allclose(scores, expected, atol=1e-5)
    np.testing.assert_array_equal(
        clf.predict(data["queries"]), np.array(classes)[expected.argmax(1)]
    )
    assert list(clf.classes_) == classes


def test_mean_and_max_differ_somewhere(data: dict[str, np.ndarray]) -> None:
    space = _space(data)
    mean = space.zero_shot_classifier(
        list("abcdef"), combine="mean", prompt_embeddings=data["prompts"]
    )
    best = space.zero_shot_classifier(
        list("abcdef"), combine="max", prompt_embeddings=data["prompts"]
    )
    assert not np.allclose(
        mean.decision_function(data["queries"]), best.decision_function(data["queries"])
    )


def test_predict_proba_rows_sum_to_one_and_agree_with_predict(data: dict[str, np.ndarray]) -> None:
    clf = _space(data).zero_shot_classifier(list("abcdef"), prompt_embeddings=data["prompts"])
    proba = clf.predict_proba(data["queries"])
    assert proba.shape == (50, 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(data["queries"]))


def test_similarity_matches_reference(data: dict[str, np.ndarray]) -> None:
    texts = data["prompts"][:, 0, :]
    scores = _space(data).similarity(data["queries"], texts)
    expected = (
        dense_relative(data["queries"], data["images"], 40, 8.0)
        @ dense_relative(texts, data["texts"], 40, 8.0).T
    )
    assert scores.shape == (50, 6)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_classifier_follows_new_anchors(data: dict[str, np.ndarray]) -> None:
    space = _space(data)
    clf = space.zero_shot_classifier(list("abcdef"), prompt_embeddings=data["prompts"])
    rng = np.random.default_rng(8)
    other = AnchorSet(rng.normal(size=(300, 32)), rng.normal(size=(300, 16)))
    space.set_anchors(other)
    fresh = space.zero_shot_classifier(list("abcdef"), prompt_embeddings=data["prompts"])
    np.testing.assert_array_equal(
        clf.decision_function(data["queries"]), fresh.decision_function(data["queries"])
    )


def test_anchor_set_normalises_and_keeps_metadata() -> None:
    anchors = AnchorSet(np.array([[3.0, 4.0]]), np.array([[0.0, 2.0]]), captions=["x"], ids=[9])
    np.testing.assert_allclose(anchors.image_embeddings, [[0.6, 0.8]])
    assert anchors.image_embeddings.dtype == np.float32
    assert anchors.captions == ["x"]
    assert anchors.ids.tolist() == [9]


def test_select_concat_and_positions() -> None:
    rng = np.random.default_rng(9)
    a = AnchorSet(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)), captions=list("abcde"))
    b = a.select([4, 1])
    assert b.captions == ["e", "b"] and b.ids.tolist() == [4, 1]
    np.testing.assert_array_equal(b.image_embeddings, a.image_embeddings[[4, 1]])
    c = b.concat(AnchorSet(rng.normal(size=(2, 4)), rng.normal(size=(2, 3)), ids=[10, 11]))
    assert c.ids.tolist() == [4, 1, 10, 11] and c.captions == ["e", "b", "", ""]
    assert c.positions([11, 4]).tolist() == [3, 0]
    with pytest.raises(KeyError, match="unknown anchor ids"):
        c.positions([2])
    with pytest.raises(ValueError, match="unique"):
        b.concat(b)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("images", "texts", "message"),
    [
        (np.ones((5, 4)), np.ones((4, 3)), "same N"),
        (np.ones(5), np.ones((5, 3)), "2-D"),
        (np.array([[1.0, np.nan]]), np.ones((1, 3)), "NaN"),
        (np.array([[1.0, np.inf]]), np.ones((1, 3)), "NaN or infinite"),
        (np.array([[0.0, 0.0], [1.0, 0.0]]), np.ones((2, 3)), "all-zero rows"),
        (np.ones((0, 4)), np.ones((0, 3)), "empty"),
    ],
)
def test_anchor_set_rejects_bad_embeddings(
    images: np.ndarray, texts: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AnchorSet(images, texts)


def test_anchor_set_rejects_bad_metadata() -> None:
    with pytest.raises(ValueError, match="captions has 1 entries"):
        AnchorSet(np.eye(2), np.eye(2), captions=["one"])
    with pytest.raises(ValueError, match="ids must be unique"):
        AnchorSet(np.eye(2), np.eye(2), ids=[1, 1])


def test_wrong_query_dimension(data: dict[str, np.ndarray]) -> None:
    space = _space(data)
    with pytest.raises(ValueError, match="dimension 31 but the anchors' image embeddings have 32"):
        space.transform_images(np.ones((2, 31)))
    with pytest.raises(ValueError, match=r"2-D \(n, d\) embedding array"):
        space.transform_texts(np.ones(16))
    with pytest.raises(ValueError, match="NaN"):
        space.transform_images(np.full((1, 32), np.nan))


def test_bad_k_and_p_are_reported_at_set_anchors(data: dict[str, np.ndarray]) -> None:
    anchors = AnchorSet(data["images"], data["texts"])
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        RelativeSpace(hubness=0, k=0).set_anchors(anchors)
    with pytest.raises(ValueError, match="p must be > 0"):
        RelativeSpace(p=0).set_anchors(anchors)
    with pytest.raises(ValueError, match="p must be"):
        RelativeSpace(p=-2).set_anchors(anchors)


def test_bad_classifier_input(data: dict[str, np.ndarray]) -> None:
    space = _space(data)
    with pytest.raises(ValueError, match="classnames is empty"):
        space.zero_shot_classifier([], prompt_embeddings=np.ones((0, 1, 16)))
    with pytest.raises(ValueError, match="duplicates"):
        space.zero_shot_classifier(["a", "a"], prompt_embeddings=data["prompts"][:2])
    with pytest.raises(ValueError, match="combine must be"):
        space.zero_shot_classifier(list("abcdef"), combine="sum", prompt_embeddings=data["prompts"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(n_classes, n_templates, d\)"):
        space.zero_shot_classifier(list("abc"), prompt_embeddings=data["prompts"])
    with pytest.raises(ValueError, match="dimension 15"):
        space.zero_shot_classifier(list("abcdef"), prompt_embeddings=data["prompts"][..., :15])


def test_unfitted_space_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="set_anchors"):
        RelativeSpace().transform_images(np.ones((1, 4)))


# ----------------------------------------------------------------- encoders, names and inputs
def test_concat_and_add_anchors_agree_on_encoder_aliases() -> None:
    from asif.encoders import canonical_encoder_name

    canonical = canonical_encoder_name("default", "image")
    a = AnchorSet(np.eye(3), np.eye(3), image_encoder="default")
    b = AnchorSet(np.eye(3), np.eye(3), ids=[3, 4, 5], image_encoder=canonical)
    assert len(a.concat(b)) == 6  # one encoder under two of its names
    RelativeSpace(k=2).set_anchors(a).add_anchors(b)
    with pytest.raises(ValueError, match="image encoders"):
        a.concat(AnchorSet(np.eye(3), np.eye(3), ids=[7, 8, 9], image_encoder="large"))


class NamelessEncoder:
    def encode(self, texts, batch_size=32, show_progress_bar=None):  # type: ignore[no-untyped-def]
        return np.ones((len(texts), 3))


class NamedEncoder(NamelessEncoder):
    name = "my-text-encoder"


def test_save_records_cache_and_encoders_or_asks_for_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    anchors = AnchorSet(np.eye(3), np.eye(3))
    space = RelativeSpace(k=2, cache=str(tmp_path / "cache"), text_encoder=NamedEncoder())
    loaded = RelativeSpace.load(space.set_anchors(anchors).save(tmp_path / "named"))
    assert loaded.cache == str(tmp_path / "cache")
    assert loaded.text_encoder == "my-text-encoder"

    space = RelativeSpace(k=2, text_encoder=NamelessEncoder()).set_anchors(anchors)
    folder = space.save(tmp_path / "nameless")
    with pytest.raises(ValueError, match="text_encoder="):
        RelativeSpace.load(folder)  # never silently 'default'
    assert isinstance(RelativeSpace.load(folder, text_encoder=NamelessEncoder()), RelativeSpace)


def test_an_image_array_is_not_taken_for_embeddings(image_encoder, data_dir) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    from PIL import Image

    paths = sorted((data_dir / "cifar10-test" / "cat").glob("*.jpg"))[:2]
    pictures = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    space = RelativeSpace(image_encoder=image_encoder)
    expected = space.encode_images([str(p) for p in paths])
    np.testing.assert_allclose(space.encode_images(pictures[0]), expected[:1], atol=1e-6)
    np.testing.assert_allclose(space.encode_images(np.stack(pictures)), expected, atol=1e-6)
    tensors = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2)  # n x 3 x H x W uint8
    np.testing.assert_allclose(space.encode_images(tensors), expected, atol=1e-6)
    np.testing.assert_allclose(space.encode_images(list(tensors)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="uint8 image array"):
        space.encode_images(np.zeros((2, 3, 4, 5, 6)))
