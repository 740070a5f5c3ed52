"""Sparse top-k search against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asif import AnchorSet, RelativeSpace
from asif.retrieval import top_k_search


def test_top_k_search_matches_brute_force() -> None:
    rng = np.random.default_rng(12)
    space = RelativeSpace(k=30, p=8).set_anchors(
        AnchorSet(rng.normal(size=(300, 16)), rng.normal(size=(300, 8)))
    )
    queries = space.transform_images(rng.normal(size=(37, 16)))
    gallery = space.transform_texts(rng.normal(size=(250, 8)))
    dense = queries.toarray() @ gallery.toarray().T

    result = top_k_search(queries, gallery, top_k=10, chunk=8)

    expected = np.argsort(-dense, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(result.scores, np.take_along_axis(dense, expected, 1), atol=1e-6)
    # Same ranked scores; indices equal wherever scores are not tied.
    np.testing.assert_array_equal(result.indices[:, 0], expected[:, 0])


def test_ties_go_to_the_lower_index_and_top_k_is_capped() -> None:
    gallery = sp.csr_array(np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32))
    queries = sp.csr_array(np.array([[0.0, 1.0], [0.0, 0.0]], dtype=np.float32))
    result = top_k_search(queries, gallery, top_k=5)
    assert result.indices.tolist() == [[0, 1, 2], [0, 1, 2]]
    one = top_k_search(queries, gallery, top_k=1)
    assert one.indices.tolist() == [[0], [0]]


def test_mismatched_anchor_sets_are_an_error() -> None:
    with pytest.raises(ValueError, match="different anchor sets"):
        top_k_search(sp.csr_array((1, 3)), sp.csr_array((2, 4)))
