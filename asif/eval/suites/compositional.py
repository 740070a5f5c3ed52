"""``compositional``: attribute-object generalisation on easy-VQA's coloured shapes.

easy-VQA (``pip install easy-vqa``; 4,000 train and 1,000 test 64-pixel images inside the package)
draws one shape (circle, rectangle, triangle) in one of 8 colours. Each image's colour and shape
are read from the package's own questions and answers (``"what color is the shape?" -> "red"``,
``"is there not a circle?" -> "no"``); images they leave undetermined (about 11%) are skipped.

The anchors are training images of the *seen* combinations only, each captioned with its colour
and shape (:data:`CAPTIONS`, in turn); :data:`HELD_OUT` combinations (one shape per colour) never
appear in the anchors. Test images of all 24 combinations are classified among the 24
``"<colour> <shape>"`` classes, and accuracy is reported on seen and unseen combinations apart:

- ``asif`` (each setting): zero-shot over the 24 prompts (the text encoder composes the words);
- ``asif colour x shape``: two zero-shot classifiers (8 colours, 3 shapes), their answers joined;
- ``label-transfer``: the nearest anchor images vote for the class their caption is closest to;
- vision only, the same anchor images with labels instead of captions: nearest class mean over
  the 16 seen combinations (which cannot name an unseen one), and nearest class mean and k-NN
  with colour and shape learnt apart (which can).

Example:
    >>> len(COMBINATIONS), len(HELD_OUT), HELD_OUT[:2]
    (24, 8, (('green', 'circle'), ('red', 'rectangle')))
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from asif.anchors import AnchorSet
from asif.eval.suites.common import (
    Scored,
    TestSet,
    accuracy_interval,
    bootstrap_accuracies,
    bootstrap_draws,
    embed_images,
    embed_texts,
    encoder_space,
    format_table,
    knn_scores,
    nearest_class_mean_scores,
    prompts_of,
    result,
)
from asif.eval.workbench import Workbench
from asif.settings import DEFAULT, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CAPTIONS",
    "COLOURS",
    "COMBINATIONS",
    "FULL",
    "HELD_OUT",
    "PROMPTS",
    "SHAPES",
    "easy_vqa_images",
    "format_compositional",
    "plot_compositional",
    "run_compositional",
]

COLOURS = ("green", "red", "gray", "teal", "black", "yellow", "brown", "blue")
"""easy-VQA's colours (the order of its ``answers.txt``)."""
SHAPES = ("circle", "rectangle", "triangle")
COMBINATIONS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
HELD_OUT: tuple[tuple[str, str], ...] = tuple((c, SHAPES[i % 3]) for i, c in enumerate(COLOURS))
"""The unseen combinations: one shape per colour, in turn (each shape is held out for 2-3
colours, and every colour and every shape is still seen in the anchors)."""

CAPTIONS = (
    "a {colour} {shape}.",
    "a {colour} {shape} on a plain background.",
    "a picture of a {colour} {shape}.",
    "a drawing of a {shape} in {colour}.",
)
"""Anchor captions, given to the anchor images in turn."""
PROMPTS = ("a {}.", "a picture of a {}.", "an image of a {}.")
"""Zero-shot prompt templates; the class names are ``"<colour> <shape>"``."""

FULL: dict[str, Any] = {"pairs": ("default", "large"), "per_combination": 100}
"""The benchmark's setting (``--full``)."""

METHODS_ORDER = (
    "asif colour x shape",
    "label-transfer",
    "vision NCM (combinations)",
    "vision NCM (colour x shape)",
    "vision k-NN (colour x shape)",
)


def easy_vqa_images(split: str = "train") -> list[tuple[str, str, str]]:
    """(image path, colour, shape) of every easy-VQA image of ``split`` whose colour and shape
    its questions determine, in image-id order.

    Example:
        >>> rows = easy_vqa_images("test")  # doctest: +SKIP
        >>> len(rows), rows[0][1:]  # doctest: +SKIP
        (888, ('blue', 'circle'))
    """
    try:
        import easy_vqa
    except ImportError as error:
        raise ImportError(
            "the compositional suite needs easy-vqa: pip install 'asif[eval]'."
        ) from error
    if split == "train":
        texts, answers, ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        texts, answers, ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    present: dict[int, set[str]] = collections.defaultdict(set)
    absent: dict[int, set[str]] = collections.defaultdict(set)
    vocabulary = set(COLOURS) | set(SHAPES)
    for text, answer, image in zip(texts, answers, ids, strict=True):
        words = re.findall(r"[a-z]+", text.lower())
        named = {w for w in words if w in vocabulary}
        if answer in vocabulary:  # "what is the blue shape?" -> "circle": both are there
            present[image] |= named | {answer}
        elif answer in ("yes", "no"):
            negated = "not" in words or "no" in words
            (present if (answer == "yes") != negated else absent)[image] |= named
    out = []
    for image in sorted(paths):
        colour = _determined(COLOURS, present[image], absent[image])
        shape = _determined(SHAPES, present[image], absent[image])
        if colour and shape:
            out.append((paths[image], colour, shape))
    return out


def _determined(vocabulary: Sequence[str], present: set[str], absent: set[str]) -> str | None:
    found = [v for v in vocabulary if v in present]
    if len(found) == 1:
        return found[0]
    left = [v for v in vocabulary if v not in absent]
    return left[0] if not found and len(left) == 1 else None


def run_compositional(
    *,
    pairs: Sequence[str] = ("default",),
    held_out: Sequence[tuple[str, str]] = HELD_OUT,
    per_combination: int = 40,
    test_per_combination: int | None = None,
    settings: Sequence[Setting] = (DEFAULT,),
    label_transfer_k: int | None = 20,
    knn_k: int = 10,
    limit: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    cache: bool | str | None = True,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Seen vs unseen colour-shape combinations: ASIF against vision-only baselines.

    Args:
        pairs: encoder pairs.
        held_out: the (colour, shape) combinations kept out of the anchors.
        per_combination: anchor images per seen combination (random, seeded).
        test_per_combination: test images per combination (None: all, about 37).
        settings, label_transfer_k: ASIF settings and the baseline's k (None: off).
        knn_k: neighbours of the vision-only k-NN.
        limit: CI-sized runs: at most ``limit`` test images and ``limit // 4`` anchor images
            per combination.
        n_boot, seed: bootstrap resamples (over test images) and the seed.
        cache, batch_size, show_progress_bar: for the encoders.

    Returns:
        ``{"suite": "compositional", "config", "tables": {"accuracy"}, "notes"}``: one row per
        (pair, method) with ``seen``, ``unseen`` (combination accuracy) and the colour and
        shape accuracies (``seen_colour``, ``unseen_shape``, ...), each with a ``_ci``.
    """
    started = time.perf_counter()
    unknown = [c for c in held_out if tuple(c) not in COMBINATIONS]
    if unknown:
        raise ValueError(f"unknown combinations {unknown}; colours {COLOURS}, shapes {SHAPES}.")
    held = {tuple(c) for c in held_out}
    if limit is not None:
        per_combination = min(per_combination, max(1, limit // 4))
        test_per_combination = min(test_per_combination or limit, limit)
    anchors_rows = _per_combination(
        easy_vqa_images("train"), per_combination, seed, keep=lambda c: c not in held
    )
    test_rows = _per_combination(easy_vqa_images("test"), test_per_combination, seed + 1)
    classnames = [f"{c} {s}" for c, s in COMBINATIONS]
    labels = np.array([COMBINATIONS.index((c, s)) for _, c, s in test_rows])
    unseen = np.array([(c, s) in held for _, c, s in test_rows])
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        space = encoder_space(
            pair, cache=cache, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        captions = [
            CAPTIONS[i % len(CAPTIONS)].format(colour=c, shape=s)
            for i, (_, c, s) in enumerate(anchors_rows)
        ]
        anchor_images = embed_images(space, [p for p, _, _ in anchors_rows])
        anchors = AnchorSet(anchor_images, embed_texts(space, captions), captions=captions)
        test = TestSet("easy-vqa", [p for p, _, _ in test_rows], labels, classnames)
        test.embed(space, PROMPTS)
        colour_prompts = prompts_of(space, COLOURS, ("a {} shape.", "something {}."))
        shape_prompts = prompts_of(space, SHAPES, ("a {}.", "a picture of a {}."))
        anchor_combo = np.array([COMBINATIONS.index((c, s)) for _, c, s in anchors_rows])
        predictions = _predictions(
            test,
            anchors,
            anchor_images,
            anchor_combo,
            colour_prompts,
            shape_prompts,
            settings,
            label_transfer_k,
            knn_k,
        )
        draws = {
            part: bootstrap_draws(int(mask.sum()), n_boot, seed)
            for part, mask in (("seen", ~unseen), ("unseen", unseen))
        }
        for method, predicted in predictions.items():
            row: dict[str, Any] = {"pair": pair, "method": method, "n_anchors": len(anchors)}
            for part, mask in (("seen", ~unseen), ("unseen", unseen)):
                truth = labels[mask]
                for what, hit in (
                    ("", predicted[mask] == truth),
                    ("_colour", predicted[mask] // len(SHAPES) == truth // len(SHAPES)),
                    ("_shape", predicted[mask] % len(SHAPES) == truth % len(SHAPES)),
                ):
                    scored = Scored(hit, TestSet(part, [""] * int(mask.sum()), truth, classnames))
                    row[f"{part}{what}"] = scored.accuracy
                    if n_boot:
                        row[f"{part}{what}_ci"] = accuracy_interval(
                            bootstrap_accuracies(scored, draws[part])
                        )
            rows.append(row)
    notes = [
        f"anchors: {len(anchors_rows)} easy-VQA train images of the {len(COMBINATIONS) - len(held)} seen "
        f"combinations; held out: {', '.join(f'{c} {s}' for c, s in sorted(held))}.",
        f"test: {len(test_rows)} easy-VQA test images ({int(unseen.sum())} of unseen combinations); "
        "chance is 1/24 for a combination, 1/8 for a colour, 1/3 for a shape.",
        "vision NCM (combinations) has no class mean for an unseen combination, so it scores 0 there "
        "by construction; the colour x shape baselines learn colour and shape apart.",
        "intervals: 95% percentile bootstrap over test images.",
    ]
    config = {
        "pairs": list(pairs),
        "held_out": [list(c) for c in held_out],
        "per_combination": per_combination,
        "test_per_combination": test_per_combination,
        "settings": [asdict(s) for s in settings],
        "label_transfer_k": label_transfer_k,
        "knn_k": knn_k,
        "limit": limit,
        "n_anchors": len(anchors_rows),
        "n_test": len(test_rows),
        "n_test_unseen": int(unseen.sum()),
        "captions": list(CAPTIONS),
        "prompts": list(PROMPTS),
        "n_boot": n_boot,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result("compositional", config, {"accuracy": rows}, notes)


def _per_combination(
    rows: list[tuple[str, str, str]], count: int | None, seed: int, keep: Any = None
) -> list[tuple[str, str, str]]:
    """At most ``count`` random images of each combination (those ``keep`` accepts), in file order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for combination in COMBINATIONS:
        if keep is not None and not keep(combination):
            continue
        mine = [i for i, (_, c, s) in enumerate(rows) if (c, s) == combination]
        if count is not None and count < len(mine):
            mine = sorted(rng.choice(mine, size=count, replace=False).tolist())
        chosen += mine
    return [rows[i] for i in sorted(chosen)]


def _predictions(
    test: TestSet,
    anchors: AnchorSet,
    anchor_images: np.ndarray,
    anchor_combo: np.ndarray,
    colour_prompts: np.ndarray,
    shape_prompts: np.ndarray,
    settings: Sequence[Setting],
    label_transfer_k: int | None,
    knn_k: int,
) -> dict[str, np.ndarray]:
    """Predicted combination index of every test image, per method."""
    from asif.eval.baselines import label_transfer_scores

    bench = Workbench(anchors, gpu=False)
    images = test.images
    n_shapes = len(SHAPES)
    out: dict[str, np.ndarray] = {}
    for setting in settings:
        out[setting.name] = _argmax(bench.zero_shot_scores(images, test.prompts, setting))
    first = settings[0]
    colour = _argmax(bench.zero_shot_scores(images, colour_prompts, first))
    shape = _argmax(bench.zero_shot_scores(images, shape_prompts, first))
    out["asif colour x shape"] = colour * n_shapes + shape
    if label_transfer_k:
        out["label-transfer"] = _argmax(
            label_transfer_scores(images, test.prompts, anchors, k=label_transfer_k)
        )
    n = len(COMBINATIONS)
    out["vision NCM (combinations)"] = _argmax(
        nearest_class_mean_scores(anchor_images, anchor_combo, n, images)
    )
    colours, shapes = anchor_combo // n_shapes, anchor_combo % n_shapes
    for name, scorer in (
        (
            "vision NCM (colour x shape)",
            lambda y, c: nearest_class_mean_scores(anchor_images, y, c, images),
        ),
        (
            "vision k-NN (colour x shape)",
            lambda y, c: knn_scores(anchor_images, y, c, images, knn_k),
        ),
    ):
        out[name] = _argmax(scorer(colours, len(COLOURS))) * n_shapes + _argmax(
            scorer(shapes, n_shapes)
        )
    return out


def _argmax(scores: np.ndarray) -> np.ndarray:
    return np.argmax(np.asarray(scores), axis=1)


def format_compositional(results: dict[str, Any]) -> str:
    """The suite's table as text."""
    columns = [
        ("pair", "pair"),
        ("method", "method"),
        ("seen", "seen"),
        ("unseen", "unseen"),
        ("seen_colour", "seen colour"),
        ("unseen_colour", "unseen colour"),
        ("seen_shape", "seen shape"),
        ("unseen_shape", "unseen shape"),
    ]
    config = results["config"]
    lines = [
        f"compositional suite: easy-VQA, {config['n_anchors']} anchors (seen combinations only), "
        f"{config['n_test']} test images ({config['n_test_unseen']} unseen); top-1 (%) with 95% intervals",
        format_table(results["tables"]["accuracy"], columns),
    ]
    lines += [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join(lines)


def plot_compositional(results: dict[str, Any]) -> Figure:
    """Seen vs unseen combination accuracy per method (bars with 95% intervals), one panel per pair."""
    import matplotlib.pyplot as plt

    rows = results["tables"]["accuracy"]
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(7.5 * len(pairs), 4.4), layout="constrained", squeeze=False
    )
    for ax, pair in zip(axes[0], pairs, strict=True):
        mine = [r for r in rows if r["pair"] == pair]
        x = np.arange(len(mine))
        for offset, part in ((-0.2, "seen"), (0.2, "unseen")):
            values = np.array([100 * r[part] for r in mine])
            errors = None
            if all(f"{part}_ci" in r for r in mine):
                errors = np.array(
                    [
                        [100 * (r[part] - r[f"{part}_ci"][0]), 100 * (r[f"{part}_ci"][1] - r[part])]
                        for r in mine
                    ]
                ).T
            ax.bar(
                x + offset, values, width=0.4, yerr=errors, capsize=3, label=f"{part} combinations"
            )
        ax.axhline(100 / len(COMBINATIONS), color="grey", ls=":", lw=1, label="chance")
        ax.set_xticks(x, [r["method"] for r in mine], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("top-1 over 24 combinations (%)")
        ax.set_title(f"easy-VQA colour x shape, {pair} encoders", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    return fig
