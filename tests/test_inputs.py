"""Inputs people have: DataLoaders, Hugging Face datasets, per-call options, images embedded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from asif import AnchorSet, RelativeSpace
from asif.encoders import load_image
from tests import realdata


@pytest.fixture(scope="module")
def space(data_dir: Path) -> RelativeSpace:
    return realdata.default_space()


class Pixels(torch.utils.data.Dataset):
    """CIFAR-10 files as ToTensor pixels in [0, 1], with their labels."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        array = np.asarray(load_image(self.paths[i]), dtype=np.float32) / 255
        return torch.from_numpy(array).permute(2, 0, 1), i


def test_a_dataloader_of_pixels_is_its_files(space: RelativeSpace) -> None:
    paths = list(realdata.cifar_subset(1)[0][:7])
    expected = space.encode_images(paths)
    loader = torch.utils.data.DataLoader(Pixels(paths), batch_size=3)
    np.testing.assert_allclose(space.encode_images(loader), expected, atol=1e-6)
    images_only = torch.utils.data.DataLoader([x for x, _ in Pixels(paths)], batch_size=4)
    np.testing.assert_allclose(space.encode_images(images_only), expected, atol=1e-6)
    as_dicts = torch.utils.data.DataLoader([{"image": x} for x, _ in Pixels(paths)], batch_size=5)
    np.testing.assert_allclose(space.encode_images(as_dicts), expected, atol=1e-6)


def test_a_hugging_face_dataset_with_an_image_column(space: RelativeSpace) -> None:
    datasets = pytest.importorskip("datasets")
    photos = [str(p) for p in realdata.sample_photos()]
    table = datasets.Dataset.from_dict({"label": list(range(len(photos))), "picture": photos})
    table = table.cast_column("picture", datasets.Image())
    expected = space.encode_images(photos)
    np.testing.assert_allclose(space.encode_images(table), expected, atol=1e-6)
    np.testing.assert_allclose(space.encode_images(table["picture"]), expected, atol=1e-6)
    raw = table.cast_column("picture", datasets.Image(decode=False))  # {"bytes", "path"} rows
    np.testing.assert_allclose(space.encode_images(raw["picture"]), expected, atol=1e-6)
    with pytest.raises(ValueError, match="pick a split"):
        space.encode_images(datasets.DatasetDict({"test": table}))
    with pytest.raises(ValueError, match="cannot tell the image column"):
        space.encode_images(datasets.Dataset.from_dict({"text": ["a", "b"]}))


class Recording:
    """An image encoder that counts its calls and records the options it was given."""

    name = "recording-image"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def encode(self, images, batch_size=32, show_progress_bar=None, **options):  # type: ignore[no-untyped-def]
        self.calls.append({"n": len(images), "batch_size": batch_size, **options})
        return np.stack([np.asarray(im, dtype=np.float64).mean(axis=(0, 1)) for im in images])


def test_per_call_options_reach_the_encoder() -> None:
    encoder = Recording()
    space = RelativeSpace(k=2, image_encoder=encoder).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
    images = [np.full((4, 4, 3), v, np.uint8) for v in (10, 200)]
    space.encode_images(images, batch_size=7, show_progress_bar=False, device="cpu")
    space.encode_images(images)
    assert encoder.calls == [{"n": 2, "batch_size": 7, "device": "cpu"}, {"n": 2, "batch_size": 32}]


def test_real_encoders_take_a_device_per_call(space: RelativeSpace) -> None:
    texts = ["a photo of a cat."]
    np.testing.assert_array_equal(
        space.encode_texts(texts, device="cpu"), space.encode_texts(texts)
    )
    photo = [str(next(iter(realdata.sample_photos())))]
    np.testing.assert_array_equal(
        space.encode_images(photo, device="cpu"), space.encode_images(photo)
    )
    assert space.get_encoder("image").device == "cpu" == space.get_encoder("text").device


def test_in_memory_images_are_embedded_once_per_call_chain() -> None:
    encoder = Recording()
    rng = np.random.default_rng(0)
    anchors = AnchorSet(rng.uniform(size=(30, 3)), rng.normal(size=(30, 5)))
    space = RelativeSpace(k=5, image_encoder=encoder).set_anchors(anchors)
    clf = space.zero_shot_classifier(["a", "b"], prompt_embeddings=rng.normal(size=(2, 3, 5)))
    images = [rng.integers(0, 255, size=(6, 6, 3), dtype=np.uint8) for _ in range(4)]
    x = clf.encode(images)
    labels, proba, why = clf.predict(x), clf.predict_proba(x), clf.explain(x[2])
    assert len(encoder.calls) == 1  # the three calls read the embeddings
    np.testing.assert_array_equal(labels, clf.predict(images))
    np.testing.assert_array_equal(proba, clf.predict_proba(images))
    assert why.label == clf.explain(images[2]).label == labels[2]
    assert len(encoder.calls) == 4  # raw images are embedded by every call
