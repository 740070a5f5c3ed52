"""Plots: what they draw, and the ImportError that names the extra when matplotlib is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.explain import Contribution, Explanation

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")

from asif.plots import (  # noqa: E402
    plot_accuracy_vs_anchors,
    plot_explanation,
    plot_search_results,
)


@pytest.fixture(autouse=True)
def _close_figures():  # type: ignore[no-untyped-def]
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def image_files(tmp_path) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_accuracy_vs_anchors_draws_one_sorted_line_per_label(tmp_path) -> None:
    results = [
        {"n_anchors": 10000, "top1": 0.5, "label": "mean"},
        {"n_anchors": 100, "top1": 0.2, "label": "mean"},
        {"n_anchors": 1000, "top1": 0.4, "label": "mean", "extra": "ignored"},
        {"n_anchors": 100, "top1": 0.1, "label": "max"},
        {"n_anchors": 10000, "top1": 0.45, "label": "max"},
    ]
    fig = plot_accuracy_vs_anchors(results)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"mean", "max"}
    np.testing.assert_array_equal(lines["mean"].get_xdata(), [100, 1000, 10000])
    np.testing.assert_allclose(lines["mean"].get_ydata(), [20, 40, 50])
    assert ax.get_xscale() == "log"
    fig.savefig(tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_accuracy_vs_anchors_on_given_axes_and_other_metric() -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    rows = [
        {"n_anchors": 10, "top1": 0.1, "top5": 0.3},
        {"n_anchors": 20, "top1": 0.2, "top5": None},
    ]
    assert plot_accuracy_vs_anchors(rows, metric="top5", ax=right, log_x=False) is fig
    assert len(right.get_lines()) == 1 and not left.get_lines()
    assert right.get_lines()[0].get_xdata().tolist() == [10]


def test_accuracy_vs_anchors_errors_name_the_keys() -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_accuracy_vs_anchors([])
    with pytest.raises(ValueError, match="lacks"):
        plot_accuracy_vs_anchors([{"anchors": 10, "top1": 0.5}])


def test_explanation_shows_the_query_and_the_anchor_images(image_files, tmp_path) -> None:
    anchors = AnchorSet(
        np.eye(3, 8),
        np.eye(3, 4),
        captions=["a red bus on a long street with many people waiting", "a dog", "a cat"],
        image_paths=image_files[:3],
    )
    space = RelativeSpace(k=3, p=1).set_anchors(anchors)
    image, text = np.array([1.0, 0.5, 0.2, 0, 0, 0, 0, 0]), np.array([1.0, 0.6, 0.3, 0.0])
    explanation = space.explain_similarity(image, text, top=3)
    assert len(explanation.contributions) == 3
    fig = plot_explanation(explanation, image_files[3], top=2)
    assert len(fig.axes) == 3  # query + 2 anchors
    assert fig.axes[0].get_title() == "query"
    assert fig.axes[0].images and fig.axes[1].images
    captions = [ax.get_xlabel().replace("\n", " ") for ax in fig.axes[1:]]
    assert captions == [c.caption for c in explanation.contributions[:2]]
    fig.savefig(tmp_path / "why.png")


def test_explanation_without_image_paths_still_shows_captions() -> None:
    explanation = Explanation(
        score=0.5,
        contributions=[Contribution(3, "two dogs play", None, 0.3, 0.6)],
        label="dog",
    )
    fig = plot_explanation(explanation)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlabel() == "two dogs play"
    assert "'dog'" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_explanation(Explanation(score=0.0))


def test_search_results_for_image_and_text_queries(image_files) -> None:
    fig = plot_search_results(
        image_files[0], ["a dog", "a cat"], [0.9, 0.5], relevant=[True, False]
    )
    assert len(fig.axes) == 3
    fig = plot_search_results("a dog", image_files[1:3], np.array([0.8, 0.7]))
    assert len(fig.axes) == 2 and all(ax.images for ax in fig.axes)


def test_missing_matplotlib_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "asif\[plot\]"'):
        plot_accuracy_vs_anchors([{"n_anchors": 1, "top1": 0.1}])
