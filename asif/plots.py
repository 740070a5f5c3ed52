"""Plots a person would rather look at than read: explanations and accuracy curves (matplotlib).

matplotlib is an optional extra: ``pip install "asif[plot]"``. Every function returns the
matplotlib ``Figure`` (save it with ``fig.savefig("x.png")``) and draws on ``ax`` when given one.

Example:
    >>> from asif.plots import plot_accuracy_vs_anchors
    >>> results = [
    ...     {"n_anchors": 1000, "top1": 0.41, "label": "flickr8k"},
    ...     {"n_anchors": 10000, "top1": 0.55, "label": "flickr8k"},
    ... ]
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no screen needed
    >>> fig = plot_accuracy_vs_anchors(results)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['flickr8k']
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from asif.explain import Explanation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_accuracy_vs_anchors", "plot_explanation", "plot_search_results"]

_INSTALL = 'pip install "asif[plot]"'


def _pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that names the pip command."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(f"asif.plots needs matplotlib: {_INSTALL}") from error
    return plt


def plot_accuracy_vs_anchors(
    results: Sequence[Mapping[str, Any]],
    *,
    metric: str = "top1",
    ax: Axes | None = None,
    title: str | None = "Zero-shot accuracy vs number of anchors",
    log_x: bool = True,
) -> Figure:
    """One line per ``label``: accuracy against the number of anchor pairs.

    Args:
        results: rows with keys ``n_anchors`` and ``top1`` (a fraction in [0, 1]) and optionally
            ``label`` (one line per label; rows without one share a line). Extra keys are ignored.
        metric: the key to plot (e.g. ``"top5"`` or ``"mean_per_class"``).
        ax: draw here instead of on a new figure.
        title: the axes title (``None``: none).
        log_x: a logarithmic x axis (anchor counts often grow tenfold).

    Raises:
        ValueError: ``results`` is empty or a row lacks ``n_anchors`` or the metric.

    Example:
        >>> fig = plot_accuracy_vs_anchors(
        ...     [{"n_anchors": n, "top1": a, "label": "mean"} for n, a in [(100, 0.2), (1000, 0.4)]]
        ... )
        >>> fig.axes[0].get_xscale()
        'log'
    """
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    if not results:
        raise ValueError("results is empty: give rows like {'n_anchors': 1000, 'top1': 0.5}.")
    lines: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(results):
        missing = [key for key in ("n_anchors", metric) if key not in row]
        if missing:
            raise ValueError(f"results[{i}] lacks {missing}; it has {sorted(row)}.")
        if row[metric] is None:
            continue
        label = str(row.get("label") or "")
        lines.setdefault(label, []).append((float(row["n_anchors"]), float(row[metric])))
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for label, points in lines.items():
        points.sort()
        x, y = zip(*points, strict=True)
        ax.plot(x, np.asarray(y) * 100, marker="o", label=label or None)
    if log_x:
        ax.set_xscale("log")
        plain = FuncFormatter(lambda x, _: f"{x:,.0f}")  # 1,000 rather than 10^3
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("anchor pairs")
    name = f"top-{metric[3:]}" if metric[:3] == "top" and metric[3:].isdigit() else metric
    ax.set_ylabel(f"{name.replace('_', ' ')} accuracy (%)")
    ax.grid(True, alpha=0.3)
    if any(lines):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return cast("Figure", ax.figure)


def _two_and_five(x: float, _: Any) -> str:
    """Minor tick labels of a log axis at 2 and 5 times a power of ten only (200, 5,000)."""
    lead = x / 10 ** np.floor(np.log10(x)) if x > 0 else 0
    return f"{x:,.0f}" if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""


def plot_explanation(
    explanation: Explanation,
    query: Any = None,
    *,
    top: int = 5,
    width: int = 28,
    title: str | None = None,
) -> Figure:
    """The query image beside the anchor images and captions that explain its score.

    Each anchor panel shows the anchor pair's image, its caption and its share of the score.
    Anchors without a known image path get a text-only panel.

    Args:
        explanation: from ``clf.explain(image)`` or ``space.explain_similarity(image, text)``.
        query: the query image (a path or a PIL image); ``None`` leaves its panel out.
        top: how many anchors to show (at most those in the explanation).
        width: characters per caption line.
        title: the figure title (default: the label and the score).

    Example:
        >>> from PIL import Image
        >>> from asif import AnchorSet, RelativeSpace
        >>> anchors = AnchorSet(np.eye(3), np.eye(3), captions=["a cat", "a dog", "a car"])
        >>> space = RelativeSpace(k=2, p=1).set_anchors(anchors)
        >>> why = space.explain_similarity(np.array([1.0, 0.2, 0]), np.array([1.0, 0, 0.1]))
        >>> len(why.contributions)  # only anchor 0 is near both
        1
        >>> fig = plot_explanation(why, Image.new("RGB", (32, 32), "orange"))
        >>> len(fig.axes)  # the query, then one panel per anchor
        2
    """
    plt = _pyplot()
    contributions = explanation.contributions[:top]
    panels = len(contributions) + (query is not None)
    if panels == 0:
        raise ValueError("nothing to plot: the explanation has no contributions and no query.")
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 3.9), layout="constrained")
    axes = np.atleast_1d(axes)
    position = 0
    if query is not None:
        _show_image(axes[0], query)
        axes[0].set_title("query", fontsize=10, fontweight="bold")
        position = 1
    for ax, c in zip(axes[position:], contributions, strict=True):
        if c.image_path:
            _show_image(ax, c.image_path)
        else:  # no image to show: an empty frame above the caption
            ax.set_xticks([])
            ax.set_yticks([])
        caption = textwrap.fill(c.caption or "", width=width, max_lines=5, placeholder=" …")
        ax.set_title(f"{c.share:.1%} · anchor {c.anchor_id}", fontsize=9)
        ax.set_xlabel(caption, fontsize=8)
    if title is None:
        title = f"score {explanation.score:.3f}"
        if explanation.label is not None:
            title = f"{explanation.label!r}: {title}"
            if explanation.against is not None:
                title += f" (margin over {explanation.against!r})"
    fig.suptitle(title, fontsize=11)
    return fig


def plot_search_results(
    query: Any,
    items: Sequence[Any],
    scores: Sequence[float] | np.ndarray,
    *,
    relevant: Sequence[bool] | None = None,
    width: int = 28,
    title: str | None = None,
) -> Figure:
    """A query (image path, PIL image or text) beside its results (image paths or texts).

    Args:
        query: the query: an image (path or PIL image) is drawn, a text is the title.
        items: the results, best first: image paths (drawn) or texts (written).
        scores: their scores.
        relevant: marks each result as a hit (green) or a miss (red), when known.
        width: characters per text line.
        title: the figure title.

    Example:
        >>> fig = plot_search_results("a dog runs", ["a dog on grass", "a cat"], [0.8, 0.1])
        >>> len(fig.axes)
        2
    """
    plt = _pyplot()
    query_is_image = _is_image(query)
    panels = len(items) + query_is_image
    fig, axes = plt.subplots(1, panels, figsize=(2.4 * panels, 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    if query_is_image:
        _show_image(axes[0], query)
        axes[0].set_title("query", fontsize=10, fontweight="bold")
    for i, (ax, item, score) in enumerate(zip(axes[query_is_image:], items, scores, strict=True)):
        color = "black" if relevant is None else ("tab:green" if relevant[i] else "tab:red")
        if _is_image(item):
            _show_image(ax, item)
            for spine in ax.spines.values():
                spine.set(visible=relevant is not None, color=color, linewidth=3)
        else:
            ax.set_axis_off()
            ax.text(
                0.5,
                0.5,
                textwrap.fill(str(item), width=width),
                ha="center",
                va="center",
                fontsize=8,
                color=color,
                wrap=True,
                transform=ax.transAxes,
            )
        ax.set_title(f"#{i + 1} · {float(score):.3f}", fontsize=9, color=color)
    if title is None and not query_is_image:
        title = textwrap.fill(f"query: {query}", width=40 * max(1, panels // 2))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _is_image(x: Any) -> bool:
    if isinstance(x, os.PathLike):
        return True
    if isinstance(x, str):
        return os.path.splitext(x)[1].lower() in {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
    return hasattr(x, "convert") and hasattr(x, "size")  # a PIL image


def _show_image(ax: Axes, image: Any) -> None:
    from asif.encoders.image import load_image

    ax.imshow(np.asarray(load_image(image)))
    ax.set_xticks([])
    ax.set_yticks([])
