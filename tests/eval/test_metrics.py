"""Metrics against values computed by hand, and templates by name."""

from __future__ import annotations

import numpy as np
import pytest

from asif.eval.metrics import (
    confusion_matrix,
    mean_per_class_accuracy,
    most_confused,
    rank_of,
    recall_at_k,
    top_k_accuracy,
)
from asif.templates import CIFAR_TEMPLATES, get_templates

SCORES = np.array(
    [
        [0.9, 0.05, 0.05],  # true 0: rank 0
        [0.2, 0.5, 0.3],  # true 2: rank 1
        [0.6, 0.3, 0.1],  # true 2: rank 2
        [0.1, 0.1, 0.8],  # true 2: rank 0
    ]
)
LABELS = np.array([0, 2, 2, 2])


def test_top_k_accuracy_by_hand() -> None:
    assert top_k_accuracy(SCORES, LABELS, k=1) == 0.5
    assert top_k_accuracy(SCORES, LABELS, k=2) == 0.75
    assert top_k_accuracy(SCORES, LABELS, k=3) == 1.0


def test_all_tied_row_is_not_a_free_hit() -> None:
    tied = np.zeros((1, 4))
    assert top_k_accuracy(tied, np.array([3]), k=1) == 0.0
    assert top_k_accuracy(tied, np.array([0]), k=1) == 1.0  # what argmax predicts
    assert rank_of(tied, np.array([3])).tolist() == [3]


def test_confusion_and_mean_per_class_by_hand() -> None:
    predictions = SCORES.argmax(axis=1)  # [0, 1, 0, 2]
    confusion = confusion_matrix(LABELS, predictions, 3)
    assert confusion.tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 1]]
    # class 0: 1/1, class 2: 1/3, class 1 absent -> (1 + 1/3) / 2
    assert mean_per_class_accuracy(LABELS, predictions, 3) == pytest.approx(2 / 3)
    assert most_confused(confusion, ["a", "b", "c"], top=5) == [("c", "a", 1), ("c", "b", 1)]


def test_recall_at_k_by_hand() -> None:
    # 2 images (groups 0, 1), 4 captions: captions 0,1 -> image 0; captions 2,3 -> image 1.
    image_to_text = np.array([[0.1, 0.2, 0.9, 0.8], [0.7, 0.1, 0.6, 0.3]])
    recall = recall_at_k(image_to_text, np.array([0, 1]), np.array([0, 0, 1, 1]), ks=(1, 2, 3))
    # image 0: best relevant (0.2) has 2 ahead -> rank 2; image 1: best relevant 0.6 -> rank 1.
    assert recall == {1: 0.0, 2: 0.5, 3: 1.0}


def test_recall_needs_a_relevant_item() -> None:
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k(np.ones((1, 2)), np.array([5]), np.array([0, 1]))


def test_templates_by_name_and_custom() -> None:
    assert len(CIFAR_TEMPLATES) == 18 == len(set(CIFAR_TEMPLATES))
    assert get_templates("cifar") is CIFAR_TEMPLATES
    assert get_templates("a sketch of a {}.") == ("a sketch of a {}.",)
    fn = str.upper
    assert get_templates(["x {}", fn]) == ("x {}", fn)
    with pytest.raises(ValueError, match="unknown template set"):
        get_templates("imagenet80")
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        get_templates(["a photo"])
