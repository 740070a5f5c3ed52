"""Reports: metrics from score matrices, plain-text tables, JSON and the anchor-curve plot."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asif.eval.metrics import (
    confusion_matrix,
    mean_per_class_accuracy,
    most_confused,
    recall_at_k,
    top_k_accuracy,
)

__all__ = [
    "classification_report",
    "format_results",
    "plot_anchor_curve",
    "retrieval_report",
    "write_json",
]


def classification_report(
    scores: np.ndarray, labels: np.ndarray, classnames: Sequence[str], *, top_confused: int = 5
) -> dict[str, Any]:
    """Top-1, top-5 (when there are more than 5 classes), mean per-class accuracy, confusions.

    Example:
        >>> r = classification_report(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1]), "ab")
        >>> r["top1"], r["mean_per_class"], r["most_confused"]
        (0.5, 0.5, [['b', 'a', 1]])
    """
    labels = np.asarray(labels)
    n_classes = len(classnames)
    predictions = np.argmax(scores, axis=1)
    confusion = confusion_matrix(labels, predictions, n_classes)
    return {
        "n": len(labels),
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, 5) if n_classes > 5 else None,
        "mean_per_class": mean_per_class_accuracy(labels, predictions, n_classes),
        "most_confused": [
            list(x) for x in most_confused(confusion, list(classnames), top_confused)
        ],
    }


def retrieval_report(
    scores: np.ndarray, image_groups: np.ndarray, text_groups: np.ndarray
) -> dict[str, float]:
    """Recall@1/5/10 both ways from (n_images, n_texts) scores; groups tell which ones match.

    Example:
        >>> r = retrieval_report(np.eye(2), np.array([0, 1]), np.array([0, 1]))
        >>> r["i2t_r1"], r["t2i_r1"]
        (1.0, 1.0)
    """
    i2t = recall_at_k(scores, image_groups, text_groups, (1, 5, 10))
    t2i = recall_at_k(np.asarray(scores).T, text_groups, image_groups, (1, 5, 10))
    out = {f"i2t_r{k}": v for k, v in i2t.items()}
    out.update({f"t2i_r{k}": v for k, v in t2i.items()})
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


def format_results(results: dict[str, Any]) -> str:
    """The results of :func:`evaluate` as plain-text tables.

    Example:
        >>> print(format_results({"config": {}, "classification": [], "retrieval": []}))
        <BLANKLINE>
    """
    lines: list[str] = []
    config = results.get("config", {})
    if config:
        lines.append(
            f"anchors: {', '.join(config.get('anchors', []))}"
            f"{' (' + config['anchor_split'] + ')' if config.get('anchor_split') else ''}, "
            f"N = {config.get('n_anchors')}; encoders: {config.get('image_encoder')} + "
            f"{config.get('text_encoder')}"
        )
    if results.get("classification"):
        lines.append(
            f"\nzero-shot classification: {config.get('images')} ({config.get('n_images')} images)"
        )
        lines.append(f"{'method':16s} {'setting':28s} {'top-1':>7s} {'top-5':>7s} {'per-cls':>7s}")
        for r in results["classification"]:
            top5 = "" if r["top5"] is None else f"{r['top5']:.1%}"
            lines.append(
                f"{r['method']:16s} {r['setting']:28s} {r['top1']:>7.1%} {top5:>7s} "
                f"{r['mean_per_class']:>7.1%}"
            )
        best = results["classification"][0]
        if best.get("most_confused"):
            confused = ", ".join(f"{t}->{p} ({n})" for t, p, n in best["most_confused"][:3])
            lines.append(f"most confused ({best['method']}): {confused}")
    if results.get("retrieval"):
        lines.append(
            f"\nretrieval: {config.get('captions')} ({config.get('caption_split') or 'all'})"
        )
        head = " ".join(f"{h:>6s}" for h in ("I>T@1", "@5", "@10", "T>I@1", "@5", "@10"))
        lines.append(f"{'method':16s} {'setting':28s} {head}")
        for r in results["retrieval"]:
            values = [r[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
            cells = " ".join(f"{v:>6.1%}" for v in values)
            lines.append(f"{r['method']:16s} {r['setting']:28s} {cells}")
    if results.get("anchor_curve"):
        lines.append("\naccuracy vs number of anchors")
        for task, metric in (("classification", "top1"), ("retrieval", "mean_recall")):
            rows = [r for r in results["anchor_curve"] if r["task"] == task]
            if not rows:
                continue
            methods = list(dict.fromkeys(r["method"] for r in rows))
            lines.append(f"{task} ({metric}): {'N':>7s} " + " ".join(f"{m:>15s}" for m in methods))
            for size in sorted({r["n_anchors"] for r in rows}):
                values = {r["method"]: r[metric] for r in rows if r["n_anchors"] == size}
                cells = " ".join(f"{values.get(m, float('nan')):>15.1%}" for m in methods)
                lines.append(f"{'':{len(task) + len(metric) + 4}s} {size:>7d} {cells}")
    for key, label in (("k_sweep", "k"), ("p_sweep", "p")):
        if results.get(key):
            lines.append(f"\nsweep over {label}")
            for r in results[key]:
                cells = "  ".join(
                    f"{m}={r[m]:.1%}" for m in ("top1", "mean_recall") if r.get(m) is not None
                )
                lines.append(f"  {r['setting']:28s} {cells}")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``results`` as indented JSON (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def plot_anchor_curve(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save a PNG of accuracy (and retrieval mean recall) vs the number of anchors.

    Needs matplotlib (``pip install 'asif[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting needs matplotlib: pip install 'asif[plot]' (or pip install matplotlib)."
        ) from error
    rows = results.get("anchor_curve") or []
    if not rows:
        raise ValueError("these results have no anchor_curve: run evaluate(anchor_sizes=...).")
    tasks = [t for t in ("classification", "retrieval") if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        metric = "top1" if task == "classification" else "mean_recall"
        task_rows = [r for r in rows if r["task"] == task]
        for method in dict.fromkeys(r["method"] for r in task_rows):
            points = sorted((r["n_anchors"], r[metric]) for r in task_rows if r["method"] == method)
            ax.plot(*zip(*points, strict=True), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("number of anchor pairs")
        ax.set_ylabel("top-1 accuracy" if task == "classification" else "mean recall@1/5/10")
        config = results.get("config", {})
        where = config.get("images") if task == "classification" else config.get("captions")
        ax.set_title(f"{task}: {Path(str(where)).name}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
