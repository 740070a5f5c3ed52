"""Hub statistics stored with the set: a swap searches no anchors; add/remove update them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.anchors import default_hub_ks
from asif.index import build_index
from asif.transforms import HUB_DRIFT, anchor_k_occurrence, anchor_k_occurrences


class CountingIndex:
    """An exact index that counts the query rows it searches."""

    def __init__(self, vectors: Any) -> None:
        self.inner = build_index("Flat", vectors)
        self.n, self.d = self.inner.n, self.inner.d
        self.rows = self.inner.rows
        self.searched = 0

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.searched += len(queries)
        return self.inner.search(queries, k)

    def iter_search(self, queries: np.ndarray, k: int):  # type: ignore[no-untyped-def]
        self.searched += len(queries)
        return self.inner.iter_search(queries, k)


def _space(indexes: list[CountingIndex], **params: Any) -> RelativeSpace:
    def make(vectors: Any) -> CountingIndex:
        indexes.append(CountingIndex(vectors))
        return indexes[-1]

    return RelativeSpace(index=make, **params)


def test_a_swap_of_a_set_with_stored_hub_statistics_searches_no_anchor(built: AnchorSet) -> None:
    loaded = built  # loaded from the folder the build wrote (memory-mapped shards)
    assert loaded.hub_statistics  # stored by the build, loaded with the set
    indexes: list[CountingIndex] = []
    space = _space(indexes).set_anchors(loaded)  # the defaults: k="auto", hub weights on
    queries = np.asarray(loaded.image_embeddings[:3]) + 0.01
    space.transform_images(queries)
    space.transform_texts(np.asarray(loaded.text_embeddings[:2]))
    assert [i.searched for i in indexes] == [3, 2]  # the queries only
    for paper in (True, False):  # and the paper's k = 800 (capped at N) is stored too
        space.k = 800 if paper else "auto"
        space.transform_images(queries)
    assert indexes[0].searched == 3 + 6


def test_without_stored_statistics_the_first_query_searches_the_anchors(built: AnchorSet) -> None:
    bare = AnchorSet(built.image_embeddings, built.text_embeddings)
    indexes: list[CountingIndex] = []
    _space(indexes).set_anchors(bare).transform_images(built.image_embeddings[:3])
    assert indexes[0].searched == 3 + len(bare)  # the counter counts anchor searches too


def test_stored_statistics_are_what_the_space_computes(built: AnchorSet) -> None:
    """On real embeddings with 5 identical image rows per photo (ties everywhere)."""
    bare = AnchorSet(built.image_embeddings, built.text_embeddings)
    for k in default_hub_ks(len(built)):
        space = RelativeSpace(k=k).set_anchors(bare)
        snap = space.snapshot()
        for modality in ("image", "text"):
            np.testing.assert_array_equal(
                snap.hub_statistics(modality, k), built.hub_statistics[(modality, k)]
            )
    index = build_index("Flat", built.image_embeddings)
    several = anchor_k_occurrences(index, [5, 15, 300])
    for k, counts in several.items():  # one search at the largest k, prefixes for the others
        np.testing.assert_array_equal(counts, anchor_k_occurrence(index, k))


def test_save_can_compute_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    anchors = AnchorSet(rng.normal(size=(50, 8)), rng.normal(size=(50, 4)))
    loaded = AnchorSet.load(anchors.save(tmp_path / "a", hub_ks="default"))
    assert sorted(loaded.hub_statistics) == [("image", 3), ("image", 50), ("text", 3), ("text", 50)]
    lazily = RelativeSpace(k=3).set_anchors(anchors).snapshot().hub_statistics("text", 3)
    np.testing.assert_array_equal(loaded.hub_statistics[("text", 3)], lazily)
    with pytest.raises(ValueError, match="default"):
        anchors.compute_hub_statistics("all")


def test_add_and_remove_update_them_and_keep_keys_and_provenance(built: AnchorSet) -> None:
    loaded = built  # loaded from the folder the build wrote (memory-mapped shards)
    stored = loaded.hub_statistics[("image", 15)]  # k="auto" is 15 for N from 281 to 300
    indexes: list[CountingIndex] = []
    space = _space(indexes).set_anchors(loaded)
    space.remove_anchors(loaded.ids[:5])
    kept = space.anchors_
    assert kept.keys == loaded.keys[5:] and kept.provenance == loaded.provenance
    np.testing.assert_array_equal(kept.hub_statistics[("image", 15)], stored[5:])
    assert ("image", 300) not in kept.hub_statistics  # k above N: no longer applies
    queries = np.asarray(loaded.image_embeddings[:4])
    space.transform_images(queries)
    assert indexes[-2].searched == 4  # no recount after the removal

    more = AnchorSet(
        queries + 0.05, np.asarray(loaded.text_embeddings[:4]), ids=1000 + np.arange(4)
    )
    space.add_anchors(more)
    grown = space.anchors_
    median = int(np.median(stored[5:]))
    np.testing.assert_array_equal(
        grown.hub_statistics[("image", 15)], np.r_[stored[5:], [median] * 4]
    )
    assert grown.keys == loaded.keys[5:] + [""] * 4
    assert grown.provenance == {"concat": [loaded.provenance, {}]}
    space.transform_images(queries)
    assert indexes[-2].searched == 4

    space.remove_anchors(grown.ids[:30])  # 39 of 269 changed: more than HUB_DRIFT, counted again
    assert HUB_DRIFT * 269 < 39 and space.anchors_.hub_statistics == {}
    space.transform_images(queries)
    assert indexes[-2].searched == 4 + 269


def test_an_updatable_index_keeps_them_too(built: AnchorSet) -> None:
    loaded = built  # loaded from the folder the build wrote (memory-mapped shards)
    space = RelativeSpace().set_anchors(loaded)  # exact search: with_added / without
    space.remove_anchors(loaded.ids[-3:])
    counts = space.snapshot().hub_statistics("text", 15)
    np.testing.assert_array_equal(counts, loaded.hub_statistics[("text", 15)][:-3])
    assert space.anchors_.keys == loaded.keys[:-3]
