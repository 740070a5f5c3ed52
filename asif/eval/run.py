"""``evaluate``: zero-shot classification and retrieval in one call, beside the baseline.

Everything is embedded once (the encoders' on-disk cache makes re-runs fast), then scored by
:class:`~asif.eval.workbench.Workbench` spaces: the public ``RelativeSpace`` of each setting,
with the anchors' neighbours searched once and shared. ``asif eval`` is this function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from asif.anchors import AnchorSet
from asif.data import read_image_folder
from asif.eval.baselines import label_transfer_retrieval, label_transfer_scores
from asif.eval.reports import classification_report, retrieval_report
from asif.eval.sources import load_anchor_pairs, resolve_data_path
from asif.eval.workbench import Workbench
from asif.settings import DEFAULT, PAPER, Setting
from asif.space import RelativeSpace
from asif.templates import format_prompts, get_templates

__all__ = ["balanced_subset", "evaluate"]


@dataclass
class _Data:
    """Embedded evaluation data (kept between the steps of :func:`evaluate`)."""

    anchors: AnchorSet
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    classnames: list[str] = field(default_factory=list)
    prompts: np.ndarray | None = None
    gallery_images: np.ndarray | None = None
    gallery_texts: np.ndarray | None = None
    image_groups: np.ndarray | None = None
    text_groups: np.ndarray | None = None


def evaluate(
    *,
    anchors: Sequence[str] = ("flickr8k",),
    anchor_split: str | None = None,
    images: str | os.PathLike[str] | None = None,
    captions: str | os.PathLike[str] | None = None,
    caption_split: str | None = None,
    templates: str | Sequence[str | Callable[[str], str]] = "cifar",
    settings: Sequence[Setting] = (PAPER, DEFAULT),
    label_transfer_k: int = 20,
    anchor_sizes: Sequence[int] = (),
    ks: Sequence[int] = (),
    ps: Sequence[float] = (),
    limit: int | None = None,
    seed: int = 0,
    image_encoder: str | Any = "default",
    text_encoder: str | Any = "default",
    device: str | None = None,
    batch_size: int = 64,
    cache: bool | str | None = True,
    show_progress_bar: bool | None = None,
    data_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Zero-shot classification of an image folder and/or retrieval over caption data, in one call.

    Every table compares the ``settings`` (default: the paper's algorithm and asif's default)
    with the label-transfer baseline on the same embeddings.

    Args:
        anchors: anchor pair sources: names (``"flickr8k"``, ``"coco-mini"``,
            ``"imagenet-sample"``) or caption files; several are concatenated.
        anchor_split: keep only this split of anchor data that has splits (e.g. ``"train"``).
        images: an image folder ``<class>/<image>`` to classify (a name in the data folder such
            as ``"cifar10-test"``, or a path); None skips classification.
        captions: caption data for retrieval (a name or a caption file); None skips it.
        caption_split: keep only this split of ``captions`` (e.g. ``"dev"``).
        templates: prompt templates: a name of :mod:`asif.templates` or a list.
        settings: the ASIF settings to compare.
        label_transfer_k: nearest anchors that vote in the baseline.
        anchor_sizes: also evaluate on random anchor subsets of these sizes (sizes >= N mean
            all anchors): the accuracy-vs-anchors curve.
        ks, ps: also sweep k (and p) around the first setting.
        limit: classify a class-balanced random subset of this many images.
        seed: seed of the subsets.
        image_encoder, text_encoder: encoder names (or objects with ``encode``).
        device: torch device of the encoders.
        batch_size: encoder batch size.
        cache: the embedding cache (``True``: ``~/.cache/asif``); re-runs are then fast.
        show_progress_bar: encoder progress bars.
        data_root: the folder named sources are looked up in (default ``$ASIF_DATA``).

    Returns:
        A JSON-ready dict: ``config``, ``classification`` and ``retrieval`` rows (one per
        method), and ``anchor_curve``, ``k_sweep``, ``p_sweep`` rows when asked for.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for colour in ("red", "blue"):
        ...     (root / "test" / colour).mkdir(parents=True)
        ...     for i in range(2):
        ...         Image.new("RGB", (32, 32), colour).save(root / "test" / colour / f"{i}.png")
        ...         Image.new("RGB", (32, 32), colour).save(root / f"{colour}{i}.png")
        >>> rows = [{"image": f"{c}{i}.png", "caption": f"a {c} square"} for c in ("red", "blue") for i in (0, 1)]
        >>> _ = (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
        >>> results = evaluate(
        ...     anchors=[root / "pairs.jsonl"], images=root / "test", templates="simple", cache=None
        ... )
        >>> [(r["method"], r["n"]) for r in results["classification"]]
        [('paper', 4), ('asif', 4), ('label-transfer', 4)]

    The same tables from embedding arrays, without files: :class:`Workbench`.
    """
    if images is None and captions is None:
        raise ValueError("nothing to evaluate: give images= (a class folder) and/or captions=.")
    settings = list(settings)
    if not settings:
        raise ValueError("settings is empty: give at least one Setting, e.g. PAPER.")
    data = _embed_data(
        anchors=anchors,
        anchor_split=anchor_split,
        images=images,
        captions=captions,
        caption_split=caption_split,
        templates=templates,
        limit=limit,
        seed=seed,
        encoder=RelativeSpace(
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            device=device,
            batch_size=batch_size,
            cache=cache or None,
            show_progress_bar=show_progress_bar,
        ),
        data_root=data_root,
    )
    results: dict[str, Any] = {
        "config": {
            "anchors": list(map(str, anchors)),
            "anchor_split": anchor_split,
            "n_anchors": len(data.anchors),
            "image_encoder": data.anchors.image_encoder,
            "text_encoder": data.anchors.text_encoder,
            "images": None if images is None else str(images),
            "n_images": None if data.images is None else len(data.images),
            "captions": None if captions is None else str(captions),
            "caption_split": caption_split,
            "templates": templates if isinstance(templates, str) else [str(t) for t in templates],
            "label_transfer_k": label_transfer_k,
            "settings": [asdict(s) for s in settings],
            "limit": limit,
            "seed": seed,
        },
        "classification": [],
        "retrieval": [],
    }
    bench = Workbench(data.anchors)
    results["classification"] = _classification_rows(data, bench, settings, label_transfer_k)
    results["retrieval"] = _retrieval_rows(data, bench, settings, label_transfer_k)
    if anchor_sizes:
        results["anchor_curve"] = _anchor_curve(
            data, settings, label_transfer_k, anchor_sizes, seed
        )
    if ks:
        results["k_sweep"] = _sweep(data, bench, [replace(settings[0], k=int(k)) for k in ks])
    if ps:
        results["p_sweep"] = _sweep(data, bench, [replace(settings[0], p=float(p)) for p in ps])
    return results


def _embed_data(
    *,
    anchors: Sequence[str],
    anchor_split: str | None,
    images: str | os.PathLike[str] | None,
    captions: str | os.PathLike[str] | None,
    caption_split: str | None,
    templates: Any,
    limit: int | None,
    seed: int,
    encoder: RelativeSpace,
    data_root: str | os.PathLike[str] | None,
) -> _Data:
    """Embed everything once through ``encoder``'s public ``fit`` / ``encode_*`` methods."""
    anchor_pairs = load_anchor_pairs(anchors, split=anchor_split, root=data_root)
    encoder.fit(anchor_pairs.image_paths, anchor_pairs.captions)
    data = _Data(encoder.anchors_)
    if images is not None:
        folder = read_image_folder(resolve_data_path(images, root=data_root))
        chosen = np.arange(len(folder))
        if limit is not None and limit < len(folder):
            chosen = balanced_subset(np.asarray(folder.labels), limit, seed)
        data.images = encoder.encode_images([folder.paths[i] for i in chosen])
        data.labels = np.asarray(folder.labels)[chosen]
        data.classnames = list(folder.classnames)
        chosen_templates = get_templates(templates)
        prompts = encoder.encode_texts(format_prompts(folder.classnames, chosen_templates))
        data.prompts = prompts.reshape(len(folder.classnames), len(chosen_templates), -1)
    if captions is not None:
        pairs = load_anchor_pairs(captions, split=caption_split, root=data_root)
        unique, groups = np.unique(np.array(pairs.image_paths, dtype=object), return_inverse=True)
        data.gallery_images = encoder.encode_images([str(u) for u in unique])
        data.gallery_texts = encoder.encode_texts(list(pairs.captions))
        data.image_groups = np.arange(len(unique))
        data.text_groups = np.asarray(groups).reshape(-1)
    return data


def balanced_subset(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``limit`` items drawn in turn from each class, in a seeded order.

    Example:
        >>> balanced_subset(np.array([0, 0, 0, 1, 1, 1]), 4).tolist()
        [0, 2, 4, 5]
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    longest = max(len(g) for g in groups)
    order = [int(g[r]) for r in range(longest) for g in groups if r < len(g)]
    return np.sort(np.array(order[:limit], dtype=np.int64))


def _classification_rows(
    data: _Data, bench: Workbench, settings: Sequence[Setting], lt_k: int
) -> list[dict[str, Any]]:
    if data.images is None or data.prompts is None or data.labels is None:
        return []
    rows = []
    for setting in settings:
        scores = bench.zero_shot_scores(data.images, data.prompts, setting)
        rows.append(
            {
                "method": setting.name,
                "setting": setting.describe(),
                "k_used": setting.resolve_k(bench.n_anchors),
                **classification_report(scores, data.labels, data.classnames),
            }
        )
    scores = label_transfer_scores(data.images, data.prompts, bench.anchors, k=lt_k)
    rows.append(
        {
            "method": "label-transfer",
            "setting": f"k={lt_k}",
            "k_used": min(lt_k, bench.n_anchors),
            **classification_report(scores, data.labels, data.classnames),
        }
    )
    return rows


def _retrieval_rows(
    data: _Data, bench: Workbench, settings: Sequence[Setting], lt_k: int
) -> list[dict[str, Any]]:
    if data.gallery_images is None or data.gallery_texts is None:
        return []
    groups = (data.image_groups, data.text_groups)
    rows = []
    for setting in settings:
        scores = bench.retrieval_scores(data.gallery_images, data.gallery_texts, setting)
        rows.append(
            {
                "method": setting.name,
                "setting": setting.describe(),
                "k_used": setting.resolve_k(bench.n_anchors),
                **retrieval_report(scores, *groups),  # type: ignore[arg-type]
            }
        )
    i2t = label_transfer_retrieval(
        data.gallery_images, data.gallery_texts, bench.anchors, lt_k, "image_to_text"
    )
    t2i = label_transfer_retrieval(
        data.gallery_images, data.gallery_texts, bench.anchors, lt_k, "text_to_image"
    )
    forward = retrieval_report(i2t, *groups)  # type: ignore[arg-type]
    backward = retrieval_report(t2i, *groups)  # type: ignore[arg-type]
    merged = {key: (forward if key.startswith("i2t") else backward)[key] for key in forward}
    merged["mean_recall"] = float(np.mean([v for key, v in merged.items() if key != "mean_recall"]))
    rows.append(
        {
            "method": "label-transfer",
            "setting": f"k={lt_k}",
            "k_used": min(lt_k, bench.n_anchors),
            **merged,
        }
    )
    return rows


def _sweep(data: _Data, bench: Workbench, settings: Sequence[Setting]) -> list[dict[str, Any]]:
    rows = []
    for setting in settings:
        row: dict[str, Any] = {"setting": setting.describe(), "k": setting.k, "p": setting.p}
        for r in _classification_rows(data, bench, [setting], 1)[:1]:
            row.update(top1=r["top1"], mean_per_class=r["mean_per_class"])
        for r in _retrieval_rows(data, bench, [setting], 1)[:1]:
            row.update(mean_recall=r["mean_recall"], i2t_r1=r["i2t_r1"], t2i_r1=r["t2i_r1"])
        rows.append(row)
    return rows


def _anchor_curve(
    data: _Data,
    settings: Sequence[Setting],
    lt_k: int,
    sizes: Iterable[int],
    seed: int,
) -> list[dict[str, Any]]:
    n = len(data.anchors)
    order = np.random.default_rng(seed).permutation(n)
    rows = []
    for size in sorted({min(int(s), n) for s in sizes}):
        subset = data.anchors if size >= n else data.anchors.select(np.sort(order[:size]))
        bench = Workbench(subset)
        for r in _classification_rows(data, bench, settings, lt_k):
            rows.append(
                {
                    "n_anchors": size,
                    "task": "classification",
                    "method": r["method"],
                    "top1": r["top1"],
                    "mean_per_class": r["mean_per_class"],
                }
            )
        for r in _retrieval_rows(data, bench, settings, lt_k):
            rows.append(
                {
                    "n_anchors": size,
                    "task": "retrieval",
                    "method": r["method"],
                    "mean_recall": r["mean_recall"],
                    "i2t_r1": r["i2t_r1"],
                    "t2i_r1": r["t2i_r1"],
                }
            )
    return rows
