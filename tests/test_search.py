"""Search in the shared space (galleries, modalities, hot swap) against a dense brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asif import AnchorSet, RelativeSpace
from asif.retrieval import Gallery
from tests.reference import dense_relative

K, P = 25, 6.0


class _Lookup:
    """A fake encoder: each known string maps to a fixed embedding (records what it encoded)."""

    def __init__(self, table: dict[str, np.ndarray], name: str) -> None:
        self.table = table
        self.name = name
        self.calls: list[list[str]] = []

    def encode(self, inputs, batch_size=32, show_progress_bar=None):  # type: ignore[no-untyped-def]
        inputs = list(inputs)
        self.calls.append(inputs)
        return np.stack([self.table[x] for x in inputs])


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    return {
        "anchor_images": rng.normal(size=(300, 16)),
        "anchor_texts": rng.normal(size=(300, 8)),
        "images": rng.normal(size=(40, 16)),
        "texts": rng.normal(size=(120, 8)),
    }


@pytest.fixture
def space(data) -> RelativeSpace:
    anchors = AnchorSet(data["anchor_images"], data["anchor_texts"], ids=np.arange(300) + 7)
    return RelativeSpace(hubness=0, k=K, p=P).set_anchors(anchors)


def _dense(space: RelativeSpace, x: np.ndarray, modality: str) -> np.ndarray:
    anchors = space.anchors_
    side = anchors.image_embeddings if modality == "image" else anchors.text_embeddings
    return dense_relative(x, side, K, P)


def _check_against_brute_force(result, dense: np.ndarray, top_k: int) -> None:
    expected = np.argsort(-dense, axis=1, kind="stable")[:, :top_k]
    expected_scores = np.take_along_axis(dense, expected, axis=1)
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)
    # Indices agree wherever the brute-force scores are not (nearly) tied with a neighbour.
    ranked = -np.sort(-dense, axis=1)
    padded = np.hstack(
        [np.full((len(dense), 1), np.inf), ranked[:, : top_k + 1], [[-np.inf]] * len(dense)]
    )
    gaps = np.abs(np.diff(padded, axis=1))  # gap before each rank, then after the last
    clear = np.minimum(gaps[:, :top_k], gaps[:, 1 : top_k + 1]) > 1e-5
    np.testing.assert_array_equal(result.indices[clear], expected[clear])
    assert clear.mean() > 0.5


@pytest.mark.parametrize(
    ("query", "gallery"),
    [("image", "text"), ("text", "image"), ("image", "image"), ("text", "text")],
)
def test_search_matches_brute_force_in_every_direction(space, data, query, gallery) -> None:
    queries = data["images"] if query == "image" else data["texts"][:30]
    items = data["images"] if gallery == "image" else data["texts"]
    dense = _dense(space, queries, query) @ _dense(space, items, gallery).T

    indexed = space.index_gallery(items, modality=gallery)
    result = space.search(queries, indexed, top_k=7, query_modality=query)
    raw = space.search(queries, items, top_k=7, query_modality=query, gallery_modality=gallery)

    _check_against_brute_force(result, dense, 7)
    np.testing.assert_array_equal(result.indices, raw.indices)
    np.testing.assert_allclose(result.scores, raw.scores, atol=1e-6)
    assert result.scores.dtype == np.float32
    assert result.indices.dtype == np.int64


def test_search_agrees_with_similarity(space, data) -> None:
    scores = space.similarity(data["images"], data["texts"])
    result = space.search(data["images"], space.index_gallery(data["texts"]), top_k=5)
    np.testing.assert_allclose(result.scores, -np.sort(-scores, axis=1)[:, :5], atol=1e-5)


def test_chunks_and_top_k_cap_do_not_change_results(space, data) -> None:
    gallery = space.index_gallery(data["texts"], modality="text")
    whole = space.search(data["images"], gallery, top_k=200)
    assert whole.indices.shape == (40, 120)  # capped at the gallery size
    for chunk in (1, 7, 1000):
        part = space.search(data["images"], gallery, top_k=200, chunk=chunk)
        np.testing.assert_array_equal(part.indices, whole.indices)
    assert np.all(np.diff(whole.scores, axis=1) <= 0)


def test_gallery_keeps_embeddings_and_follows_hot_swap(space, data) -> None:
    gallery = space.index_gallery(data["texts"], modality="text")
    assert isinstance(gallery, Gallery) and len(gallery) == 120
    assert gallery.vectors.shape == (120, 300)
    assert gallery.items is None  # arrays are not items to show

    rng = np.random.default_rng(3)
    more = AnchorSet(rng.normal(size=(50, 16)), rng.normal(size=(50, 8)), ids=1000 + np.arange(50))
    space.add_anchors(more)
    after = space.search(data["images"], gallery, top_k=5)
    assert gallery.vectors.shape == (120, 350)  # rebuilt from the kept embeddings
    fresh = space.search(data["images"], space.index_gallery(data["texts"]), top_k=5)
    np.testing.assert_array_equal(after.indices, fresh.indices)
    dense = _dense(space, data["images"], "image") @ _dense(space, data["texts"], "text").T
    _check_against_brute_force(after, dense, 5)

    space.remove_anchors(np.arange(7, 107))
    assert space.search(data["images"], gallery, top_k=3).indices.shape == (40, 3)
    assert gallery.vectors.shape == (120, 250)


def test_strings_need_an_explicit_modality_and_use_that_encoder(data) -> None:
    texts = {f"caption {i}": data["texts"][i] for i in range(120)}
    paths = {f"img_{i}.jpg": data["images"][i] for i in range(40)}
    text_encoder = _Lookup(texts, "fake-text")
    image_encoder = _Lookup(paths, "fake-image")
    space = RelativeSpace(
        hubness=0, k=K, p=P, image_encoder=image_encoder, text_encoder=text_encoder
    )
    space.set_anchors(AnchorSet(data["anchor_images"], data["anchor_texts"]))

    with pytest.raises(ValueError, match="modality='image' or"):
        space.index_gallery(list(texts))
    with pytest.raises(ValueError, match="query_modality='image' or"):
        space.search(list(paths), list(texts), gallery_modality="text")

    gallery = space.index_gallery(list(texts), modality="text")
    assert gallery.items == list(texts)
    assert text_encoder.calls == [list(texts)]
    result = space.search(list(paths), gallery, top_k=4, query_modality="image")
    assert image_encoder.calls == [list(paths)]
    expected = space.search(data["images"], data["texts"], top_k=4)
    np.testing.assert_array_equal(result.indices, expected.indices)

    back = space.search(
        ["caption 3"], space.index_gallery(list(paths), modality="image"), 2, query_modality="text"
    )
    assert back.indices.shape == (1, 2)
    with pytest.raises(ValueError, match="list"):
        space.search("caption 3", gallery, query_modality="text")
    with pytest.raises(ValueError, match="modality='image' or"):  # a generator is looked into too
        space.index_gallery(c for c in texts)
    from_generator = space.index_gallery((c for c in texts), modality="text")
    assert from_generator.items == list(texts)


def test_modality_errors_name_the_fix(space, data) -> None:
    gallery = space.index_gallery(data["texts"])
    with pytest.raises(ValueError, match="Gallery holds texts"):
        space.search(data["images"], gallery, gallery_modality="image")
    with pytest.raises(ValueError, match="fit neither"):
        space.search(np.ones((2, 5)), gallery)
    with pytest.raises(ValueError, match="must be 'image' or 'text'"):
        space.search(data["images"], gallery, query_modality="audio")  # type: ignore[arg-type]
    square = RelativeSpace(hubness=0, k=5).set_anchors(AnchorSet(np.eye(8), np.eye(8)))
    with pytest.raises(ValueError, match="fit both"):
        square.index_gallery(np.eye(8))
    with pytest.raises(ValueError, match="top_k"):
        space.search(data["images"], gallery, top_k=0)


def test_relative_vectors_and_galleries_can_be_queries(space, data) -> None:
    images = space.index_gallery(data["images"])
    texts = space.index_gallery(data["texts"])
    by_gallery = space.search(texts, images, top_k=5)
    by_vectors = space.search(sp.csr_array(texts.vectors), images, top_k=5)
    by_arrays = space.search(data["texts"], data["images"], top_k=5)
    np.testing.assert_array_equal(by_gallery.indices, by_vectors.indices)
    np.testing.assert_array_equal(by_gallery.indices, by_arrays.indices)
    with pytest.raises(ValueError, match="columns"):
        space.search(sp.csr_array((2, 10)), images)


def test_large_gallery_in_chunks_matches_one_block() -> None:
    rng = np.random.default_rng(5)
    n_anchors, n_gallery = 2000, 20000
    space = RelativeSpace(hubness=0, k=40, p=8).set_anchors(
        AnchorSet(rng.normal(size=(n_anchors, 16)), rng.normal(size=(n_anchors, 8)))
    )
    gallery = space.index_gallery(rng.normal(size=(n_gallery, 8)).astype(np.float32))
    queries = space.transform_images(rng.normal(size=(60, 16)))
    result = space.search(queries, gallery, top_k=10, chunk=16)
    dense = queries.toarray() @ gallery.vectors.toarray().T
    np.testing.assert_allclose(result.scores, -np.sort(-dense, axis=1)[:, :10], atol=1e-5)
    np.testing.assert_array_equal(result.indices[:, 0], np.argmax(dense, axis=1))
