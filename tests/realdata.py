"""Real spaces and subsets shared by the integration tests, built once per test process.

The space is ``asif zeroshot``'s default: the offline encoders (EfficientNet-Lite0 +
all-MiniLM-L6-v2) over the 2,195 coco-mini and imagenet-sample pairs of the data folder, with
the embedding cache on (``$ASIF_CACHE``), so a second run reads embeddings from disk.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from asif import RelativeSpace
from asif.data import read_image_folder
from asif.eval.run import balanced_subset
from asif.eval.sources import load_anchor_pairs

SAMPLE_PHOTOS = {  # scikit-image's sample photos and what they show
    "camera.png": "man with a camera",
    "chelsea.png": "cat",
    "coffee.png": "cup of coffee",
    "coins.png": "coins",
    "motorcycle_left.png": "motorcycle",
    "rocket.jpg": "rocket",
}
"""astronaut.png is left out: no anchor shows an astronaut, and it comes out "motorcycle"
(the helmets of coco-mini's riders)."""


def data_root() -> Path:
    return Path(os.environ["ASIF_DATA"])


@functools.cache
def default_space() -> RelativeSpace:
    """A fitted space (do not change it: other tests share it; copy with ``save``/``load``)."""
    pairs = load_anchor_pairs(["coco-mini", "imagenet-sample"], root=data_root())
    space = RelativeSpace(device="cpu", cache=True)
    return space.fit(pairs.image_paths, pairs.captions)


@functools.cache
def cifar_subset(
    per_class: int, seed: int = 0
) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """(paths, labels, class names) of a class-balanced CIFAR-10 test subset."""
    folder = read_image_folder(data_root() / "cifar10-test")
    labels = np.asarray(folder.labels)
    chosen = balanced_subset(labels, per_class * len(folder.classnames), seed)
    return tuple(folder.paths[i] for i in chosen), labels[chosen], tuple(folder.classnames)


@functools.cache
def flickr_dev(n_images: int) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The first ``n_images`` flickr8k dev images and their five captions each."""
    root = data_root() / "flickr8k"
    captions: dict[str, list[str]] = {}
    for line in (root / "captions.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "dev":
            captions.setdefault(row["image"], []).append(row["caption"])
    images = sorted(captions)[:n_images]
    return tuple(str(root / i) for i in images), tuple(tuple(captions[i]) for i in images)


def sample_photos() -> dict[Path, str]:
    """scikit-image's sample photos (paths) with their class names."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return {folder / name: label for name, label in SAMPLE_PHOTOS.items()}
