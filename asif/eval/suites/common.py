"""What the generalisation suites share: embedded data, anchor-set specs, scoring, bootstrap, tables.

Embeddings come from a public :class:`~asif.RelativeSpace`'s ``encode_images`` /
``encode_texts`` with the on-disk embedding cache (``cache=True``), in chunks so an interrupted
first pass keeps what it encoded; zero-shot scores come from :class:`~asif.eval.Workbench`
(public spaces per setting). Accuracies are means over test images, and their intervals are
percentile bootstraps over test images (resampled with the same draws for every configuration,
so differences between configurations are paired).

Example:
    >>> AnchorSpec.parse("flickr8k+coco-mini@1000").sources
    ('flickr8k', 'coco-mini')
    >>> allocate(1000, [35455, 1195, 785])
    [334, 333, 333]
    >>> allocate(3000, [35455, 1195, 785])
    [1108, 1107, 785]
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asif.anchors import AnchorSet
from asif.eval.baselines import label_transfer_scores
from asif.eval.metrics import rank_of
from asif.eval.sources import load_anchor_pairs, resolve_data_path
from asif.eval.workbench import Workbench
from asif.settings import Setting
from asif.space import RelativeSpace
from asif.templates import format_prompts, get_templates

__all__ = [
    "PAIRS",
    "TEXTURE_SHAPE_IMAGENET",
    "AnchorPool",
    "AnchorSpec",
    "Scored",
    "TestSet",
    "accuracy_interval",
    "allocate",
    "bootstrap_accuracies",
    "bootstrap_draws",
    "embed_images",
    "embed_texts",
    "encoder_space",
    "format_table",
    "image_folder_test",
    "percent",
    "photo_test",
    "result",
    "score_label_transfer",
    "score_zero_shot",
]

PAIRS: dict[str, tuple[str, str]] = {
    "default": ("default", "default"),  # EfficientNet-Lite0 + all-MiniLM-L6-v2
    "large": ("large", "large"),  # EfficientNet-Lite2 + all-mpnet-base-v2
}
"""Encoder pairs by name: (image encoder, text encoder)."""

TEXTURE_SHAPE_IMAGENET: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (
        *(8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89),
        *(90, 91, 92, 93, 94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135),
        *(136, 137, 138, 139, 140, 141, 142, 143, 144, 145),
    ),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (
        *range(152, 192),
        *(193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203),
        *(205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220),
        *(221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237),
        *(238, 239, 240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255),
        *(256, 257, 259, 261, 262, 263, 265, 266, 267, 268),
    ),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}
"""The ImageNet-1k classes (indices = positions of the sorted wnids) of each of the 16
texture-shape categories, from Geirhos et al. (2019), ``code/helper/human_categories.py`` of
rgeirhos/texture-vs-shape (the ``<category>_indices`` lists). :func:`photo_test` takes every
other class of each category (the first, third, ...) from imagenet-sample as photographs of the
16 classes; the rest stay available as anchors."""


def encoder_space(
    pair: str,
    *,
    cache: bool | str | None = True,
    batch_size: int = 64,
    device: str | None = None,
    show_progress_bar: bool | None = None,
) -> RelativeSpace:
    """An unfitted public space holding the encoders of ``pair`` (used to embed, never to score).

    Example:
        >>> encoder_space("default").image_encoder
        'default'
    """
    if pair not in PAIRS:
        raise ValueError(f"unknown encoder pair {pair!r}; choose from {', '.join(PAIRS)}.")
    image, text = PAIRS[pair]
    return RelativeSpace(
        image_encoder=image,
        text_encoder=text,
        device=device,
        batch_size=batch_size,
        cache=cache or None,
        show_progress_bar=show_progress_bar,
    )


def embed_images(space: RelativeSpace, paths: Sequence[str], chunk: int = 512) -> np.ndarray:
    """``space.encode_images(paths)``, a file named twice encoded once, in chunks of ``chunk``
    files (the cache stores each chunk as it is done)."""
    unique, inverse = np.unique(
        np.array([str(p) for p in paths], dtype=object), return_inverse=True
    )
    parts = [
        space.encode_images([str(p) for p in unique[i : i + chunk]])
        for i in range(0, len(unique), chunk)
    ]
    return np.concatenate(parts)[inverse.reshape(-1)] if parts else np.zeros((0, 0), np.float32)


def embed_texts(space: RelativeSpace, texts: Sequence[str], chunk: int = 4096) -> np.ndarray:
    """``space.encode_texts(texts)`` in chunks (each chunk cached as it is done)."""
    texts = list(texts)
    parts = [space.encode_texts(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    return np.concatenate(parts)


def prompts_of(space: RelativeSpace, classnames: Sequence[str], templates: Any) -> np.ndarray:
    """(C, T, d) prompt embeddings, as ``asif eval`` makes them."""
    chosen = get_templates(templates)
    flat = embed_texts(space, format_prompts(list(classnames), chosen))
    return flat.reshape(len(classnames), len(chosen), -1)


# ----------------------------------------------------------------------------- test sets
@dataclass
class TestSet:
    """A labelled test set, embedded for one encoder pair.

    Attributes:
        name: its name in tables.
        paths: the image files, one per row.
        labels: class index per row.
        classnames: the C class names (what the prompts name).
        units: the bootstrap unit of each row, 0..n_units-1 (the source image: a corrupted
            copy belongs to its clean image).
        weights: each row's weight in the accuracy (sums to 1): uniform, or class-balanced.
        images: (n, d) image embeddings (after :meth:`embed`).
        prompts: (C, T, d) prompt embeddings (after :meth:`embed`).
        meta: per-row columns (e.g. ``corruption``, ``severity``).
    """

    __test__ = False  # not a pytest class

    name: str
    paths: list[str]
    labels: np.ndarray
    classnames: list[str]
    units: np.ndarray | None = None
    weights: np.ndarray | None = None
    images: np.ndarray | None = None
    prompts: np.ndarray | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.units is None:
            self.units = np.arange(len(self.paths))
        if self.weights is None:
            self.weights = np.full(len(self.paths), 1.0 / max(len(self.paths), 1))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_units(self) -> int:
        """How many independent test images the rows come from."""
        return int(np.max(self.units)) + 1 if len(self) else 0

    def embed(self, space: RelativeSpace, templates: Any = "cifar") -> TestSet:
        """Fill ``images`` and ``prompts`` through ``space``'s encoders; returns self."""
        self.images = embed_images(space, self.paths)
        self.prompts = prompts_of(space, self.classnames, templates)
        return self

    def subset(self, rows: np.ndarray, name: str | None = None) -> TestSet:
        """The rows ``rows`` as a test set of their own (weights renormalised)."""
        rows = np.asarray(rows)
        weights = np.asarray(self.weights)[rows]
        _, units = np.unique(np.asarray(self.units)[rows], return_inverse=True)
        return TestSet(
            name or self.name,
            [self.paths[i] for i in rows],
            self.labels[rows],
            self.classnames,
            units=units.reshape(-1),
            weights=weights / weights.sum(),
            images=None if self.images is None else self.images[rows],
            prompts=self.prompts,
            meta={k: v[rows] for k, v in self.meta.items()},
        )


def image_folder_test(
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> TestSet:
    """A class folder (a name in the data folder, or a path) as a test set; with ``limit``, the
    class-balanced subset ``asif eval --limit`` takes.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> where = Path(tempfile.mkdtemp())
        >>> for c in ("cat", "dog"):
        ...     (where / c).mkdir()
        ...     for i in range(3):
        ...         Image.new("RGB", (8, 8)).save(where / c / f"{i}.png")
        >>> test = image_folder_test(where, limit=4)
        >>> test.labels.tolist(), test.classnames
        ([0, 0, 1, 1], ['cat', 'dog'])
    """
    from asif.data import read_image_folder
    from asif.eval.run import balanced_subset

    path = resolve_data_path(folder, root=root)
    found = read_image_folder(path)
    labels = np.asarray(found.labels)
    chosen = np.arange(len(found))
    if limit is not None and limit < len(found):
        chosen = balanced_subset(labels, limit, seed)
    return TestSet(
        name or str(folder), [found.paths[i] for i in chosen], labels[chosen], found.classnames
    )


def photo_test(*, root: str | os.PathLike[str] | None = None, limit: int | None = None) -> TestSet:
    """Photographs of the 16 texture-shape classes: imagenet-sample's images of every other
    ImageNet class of each category (:data:`TEXTURE_SHAPE_IMAGENET`), 108 images.

    The accuracy is class-balanced (each category weighs 1/16, as on the balanced
    edges and silhouettes): 55 of the photos are dogs. ``limit`` keeps at most that many,
    taking the categories in turn.
    """
    import json

    folder = resolve_data_path("imagenet-sample", root=root)
    rows = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line]
    by_index = sorted(rows, key=lambda r: r["wnid"])
    classnames = sorted(TEXTURE_SHAPE_IMAGENET)
    picked: list[list[tuple[str, int]]] = []
    for label, category in enumerate(classnames):
        classes = sorted(TEXTURE_SHAPE_IMAGENET[category])[::2]
        picked.append([(str(folder / by_index[i]["image"]), label) for i in classes])
    order = [g[r] for r in range(max(map(len, picked))) for g in picked if r < len(g)]
    order = sorted(order[:limit] if limit is not None else order, key=lambda x: (x[1], x[0]))
    labels = np.array([label for _, label in order])
    counts = np.bincount(labels, minlength=len(classnames))
    weights = 1.0 / (counts[labels] * np.count_nonzero(counts))
    return TestSet("photos", [p for p, _ in order], labels, classnames, weights=weights)


# ----------------------------------------------------------------------------- anchors
_SPEC = re.compile(r"^(?P<sources>[^@]+?)(?:@(?P<size>\d+))?$")


@dataclass(frozen=True)
class AnchorSpec:
    """An anchor set named by its sources and size: ``"flickr8k"``, ``"coco-mini+imagenet-sample"``,
    ``"flickr8k@1000"`` (1,000 pairs drawn at random), ``"flickr8k+coco-mini@800"`` (800 pairs,
    the sources in equal shares as far as each has pairs: :func:`allocate`).

    Draws are nested: a smaller size of a spec is a subset of a larger one (same seed, draw).
    """

    sources: tuple[str, ...]
    size: int | None = None
    draw: int = 0

    @classmethod
    def parse(cls, text: str, draw: int = 0) -> AnchorSpec:
        """A spec from ``"SOURCE[+SOURCE...][@SIZE]"``."""
        match = _SPEC.match(text.strip())
        if not match:
            raise ValueError(
                f"bad anchor set {text!r}: write SOURCE[+SOURCE...][@SIZE], e.g. "
                "'coco-mini+imagenet-sample' or 'flickr8k@1000'."
            )
        sources = tuple(s.strip() for s in match["sources"].split("+"))
        if not all(sources) or len(set(sources)) != len(sources):
            raise ValueError(f"bad anchor set {text!r}: empty or repeated source.")
        size = int(match["size"]) if match["size"] else None
        if size is not None and size < 1:
            raise ValueError(f"bad anchor set {text!r}: the size must be at least 1.")
        return cls(sources, size, draw)

    @property
    def name(self) -> str:
        """The spec as text (the draw left out)."""
        return "+".join(self.sources) + ("" if self.size is None else f"@{self.size}")

    @property
    def source(self) -> str:
        """The sources only (a curve over sizes is one line per source)."""
        return "+".join(self.sources)


def allocate(size: int, available: Sequence[int]) -> list[int]:
    """Split ``size`` pairs over sources in equal shares, capped by what each has (water-filling;
    a remainder goes to the first sources).

    Raises:
        ValueError: the sources have fewer than ``size`` pairs together.
    """
    if size > sum(available):
        raise ValueError(f"asked for {size} anchor pairs but the sources have {sum(available)}.")
    share = [0] * len(available)
    left, open_ = size, [i for i, n in enumerate(available) if n > 0]
    while left > 0 and open_:
        each, extra = divmod(left, len(open_))
        for rank, i in enumerate(open_):
            share[i] += min(each + (rank < extra), available[i] - share[i])
        left = size - sum(share)
        open_ = [i for i in open_ if share[i] < available[i]]
    return share


@dataclass
class AnchorPool:
    """Every pair of the named sources embedded once for one encoder pair; specs select rows.

    Build it with :meth:`load`; :meth:`anchors` returns the :class:`AnchorSet` of a spec.
    """

    pair: str
    image_encoder: str | None
    text_encoder: str | None
    sources: dict[str, dict[str, Any]]
    seed: int = 0

    @classmethod
    def load(
        cls,
        space: RelativeSpace,
        pair: str,
        sources: Sequence[str],
        *,
        exclude: Sequence[str] = (),
        root: str | os.PathLike[str] | None = None,
        seed: int = 0,
    ) -> AnchorPool:
        """Embed the pairs of ``sources`` (names or caption files), leaving out pairs whose image
        is in ``exclude`` (test images must not be anchors)."""
        left_out = {os.path.realpath(p) for p in exclude}
        table: dict[str, dict[str, Any]] = {}
        for source in dict.fromkeys(sources):
            pairs = load_anchor_pairs(source, root=root)
            keep = [
                i for i, p in enumerate(pairs.image_paths) if os.path.realpath(p) not in left_out
            ]
            paths = [pairs.image_paths[i] for i in keep]
            captions = [pairs.captions[i] for i in keep]
            table[source] = {
                "paths": paths,
                "captions": captions,
                "images": embed_images(space, paths),
                "texts": embed_texts(space, captions),
                "left_out": len(pairs.captions) - len(keep),
            }
        return cls(
            pair,
            _encoder_name(space, "image"),
            _encoder_name(space, "text"),
            table,
            seed,
        )

    def size_of(self, spec: AnchorSpec) -> int:
        """How many pairs the spec gives."""
        total = sum(len(self.sources[s]["captions"]) for s in spec.sources)
        return total if spec.size is None else min(spec.size, total)

    def rows(self, spec: AnchorSpec) -> dict[str, np.ndarray]:
        """The chosen rows of each source (sorted, so order follows the source files)."""
        missing = [s for s in spec.sources if s not in self.sources]
        if missing:
            raise ValueError(f"the pool has no source {missing}; it has {sorted(self.sources)}.")
        counts = [len(self.sources[s]["captions"]) for s in spec.sources]
        if spec.size is None or spec.size >= sum(counts):
            return {s: np.arange(n) for s, n in zip(spec.sources, counts, strict=True)}
        shares = allocate(spec.size, counts)
        out = {}
        for s, n, share in zip(spec.sources, counts, shares, strict=True):
            rng = np.random.default_rng([self.seed, spec.draw, _stable(s)])
            out[s] = np.sort(rng.permutation(n)[:share])
        return out

    def anchors(self, spec: AnchorSpec, rows: Mapping[str, np.ndarray] | None = None) -> AnchorSet:
        """The anchor set of ``spec`` (or of explicit ``rows`` per source)."""
        chosen = self.rows(spec) if rows is None else rows
        parts = [(self.sources[s], np.asarray(r)) for s, r in chosen.items() if len(r)]
        if not parts:
            raise ValueError("an anchor set needs at least one pair.")
        return AnchorSet(
            np.concatenate([t["images"][r] for t, r in parts]),
            np.concatenate([t["texts"][r] for t, r in parts]),
            captions=[t["captions"][i] for t, r in parts for i in r],
            image_paths=[t["paths"][i] for t, r in parts for i in r],
            image_encoder=self.image_encoder,
            text_encoder=self.text_encoder,
        )

    def n_images(self, spec: AnchorSpec) -> int:
        """Distinct anchor images in the spec's pairs."""
        return len({self.sources[s]["paths"][i] for s, r in self.rows(spec).items() for i in r})


def _stable(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def _encoder_name(space: RelativeSpace, modality: str) -> str | None:
    from asif.encoders import canonical_encoder_name

    spec = space.image_encoder if modality == "image" else space.text_encoder
    return canonical_encoder_name(spec, modality) if isinstance(spec, str) else None


# ----------------------------------------------------------------------------- scoring
@dataclass
class Scored:
    """Per-row correctness of one configuration on one test set."""

    correct: np.ndarray
    test: TestSet

    def per_unit(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight, weighted accuracy) of each unit (source image)."""
        weights = np.asarray(self.test.weights, dtype=np.float64)
        units = np.asarray(self.test.units)
        n = self.test.n_units
        mass = np.bincount(units, weights=weights, minlength=n)
        hits = np.bincount(units, weights=weights * self.correct, minlength=n)
        return mass, np.divide(hits, mass, out=np.zeros(n), where=mass > 0)

    @property
    def accuracy(self) -> float:
        """The (weighted) top-1 accuracy."""
        return float(np.sum(np.asarray(self.test.weights) * self.correct))


def score_zero_shot(bench: Workbench, test: TestSet, setting: Setting) -> Scored:
    """Top-1 correctness of ``bench.zero_shot_scores`` (the public space's classifier)."""
    if test.images is None or test.prompts is None:
        raise ValueError(f"test set {test.name!r} is not embedded: call test.embed(space).")
    scores = bench.zero_shot_scores(test.images, test.prompts, setting)
    return Scored(rank_of(scores, test.labels) == 0, test)


def score_label_transfer(anchors: AnchorSet, test: TestSet, k: int = 20) -> Scored:
    """Top-1 correctness of the label-transfer baseline (:mod:`asif.eval.baselines`)."""
    if test.images is None or test.prompts is None:
        raise ValueError(f"test set {test.name!r} is not embedded: call test.embed(space).")
    scores = label_transfer_scores(test.images, test.prompts, anchors, k=k)
    return Scored(rank_of(scores, test.labels) == 0, test)


def score_of(scores: np.ndarray, test: TestSet) -> Scored:
    """Top-1 correctness of any (n, C) score matrix on ``test`` (argmax ties: lower class)."""
    return Scored(rank_of(np.asarray(scores), test.labels) == 0, test)


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_draws(n_units: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_units) resampled unit positions, the same for every configuration."""
    rng = np.random.default_rng([seed, n_units, 7])
    return rng.integers(0, n_units, size=(n_boot, n_units))


def bootstrap_accuracies(scored: Scored, draws: np.ndarray) -> np.ndarray:
    """The accuracy on each bootstrap resample of the test images (units).

    Example:
        >>> test = TestSet("t", ["a", "b"], [0, 0], ["x"])
        >>> s = Scored(np.array([True, False]), test)
        >>> bootstrap_accuracies(s, np.array([[0, 0], [1, 1], [0, 1]])).tolist()
        [1.0, 0.0, 0.5]
    """
    mass, value = scored.per_unit()
    picked_mass = mass[draws]
    return (picked_mass * value[draws]).sum(axis=1) / picked_mass.sum(axis=1)


def accuracy_interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap samples, as [low, high]."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.asarray(samples), [tail, 100 - tail])
    return [float(low), float(high)]


# ----------------------------------------------------------------------------- reports
def result(
    suite: str, config: dict[str, Any], tables: dict[str, Any], notes: Sequence[str]
) -> dict:
    """The JSON layout every suite returns: ``suite``, ``config``, ``tables``, ``notes``."""
    return {"suite": suite, "config": config, "tables": tables, "notes": list(notes)}


def percent(value: float | None, interval: Sequence[float] | None = None) -> str:
    """``45.6`` or ``45.6 [42.1, 49.0]`` (percent, one decimal).

    Example:
        >>> percent(0.456, [0.421, 0.49])
        '45.6 [42.1, 49.0]'
    """
    if value is None:
        return "-"
    text = f"{100 * value:.1f}"
    if interval is not None:
        text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    return text


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table: ``columns`` are (key, header); floats in [0, 1] with a ``<key>_ci``
    beside them are printed as percentages with their interval.

    Example:
        >>> print(format_table([{"a": "x", "top1": 0.5, "top1_ci": [0.4, 0.6]}], [("a", "A"), ("top1", "top-1")]))
        A  top-1
        x  50.0 [40.0, 60.0]
    """
    cells = [[header for _, header in columns]]
    for row in rows:
        line = []
        for key, _ in columns:
            value = row.get(key)
            if isinstance(value, float) and f"{key}_ci" in row:
                line.append(percent(value, row[f"{key}_ci"]))
            elif isinstance(value, float):
                line.append(f"{value:.3f}")
            else:
                line.append("-" if value is None else str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write a matplotlib figure as PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- vision-only baselines
def nearest_class_mean_scores(
    train: np.ndarray, labels: np.ndarray, n_classes: int, test: np.ndarray
) -> np.ndarray:
    """(n_test, C) cosines to each class's normalised mean image embedding; classes without a
    training image score -inf (never predicted).

    Example:
        >>> train = np.array([[1.0, 0], [0.8, 0.6], [0, 1.0]])
        >>> nearest_class_mean_scores(train, np.array([0, 0, 1]), 3, np.array([[1.0, 0]])).round(3).tolist()
        [[0.949, 0.0, -inf]]
    """
    train, test = _unit(train), _unit(test)
    labels = np.asarray(labels)
    means = np.zeros((n_classes, train.shape[1]))
    np.add.at(means, labels, train)
    present = np.bincount(labels, minlength=n_classes) > 0
    means[present] /= np.linalg.norm(means[present], axis=1, keepdims=True)
    scores = test @ means.T
    scores[:, ~present] = -np.inf
    return scores


def knn_scores(
    train: np.ndarray, labels: np.ndarray, n_classes: int, test: np.ndarray, k: int = 10
) -> np.ndarray:
    """(n_test, C) k-nearest-neighbour votes: each of the k most similar training images adds its
    cosine (clamped at 0) to its class; ties between neighbours go to the lower index.

    Example:
        >>> train = np.array([[1.0, 0], [0.8, 0.6], [0, 1.0]])
        >>> knn_scores(train, np.array([0, 1, 1]), 2, np.array([[0.6, 0.8]]), k=2).round(2).tolist()
        [[0.0, 1.76]]
    """
    train, test = _unit(train), _unit(test)
    labels = np.asarray(labels)
    k = min(int(k), len(train))
    scores = np.zeros((len(test), n_classes))
    for start in range(0, len(test), 1024):
        cosines = test[start : start + 1024] @ train.T
        top = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
        weights = np.maximum(np.take_along_axis(cosines, top, axis=1), 0.0)
        rows = np.repeat(np.arange(len(top)), k)
        np.add.at(
            scores[start : start + 1024], (rows, labels[top].reshape(-1)), weights.reshape(-1)
        )
    return scores


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
