"""Fixtures for the build tests: 60 flickr8k photos (300 human captions) as caption file and tars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.build import build_anchor_set, write_webdataset

N_IMAGES = 60


@pytest.fixture(scope="session")
def flickr_pairs(data_dir: Path) -> list[tuple[str, str]]:
    """The first 60 flickr8k images with their 5 captions each, in file order (300 pairs)."""
    pairs, images = [], []
    with (data_dir / "flickr8k" / "captions.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            path = str(data_dir / "flickr8k" / row["image"])
            if path not in images:
                if len(images) == N_IMAGES:
                    break
                images.append(path)
            pairs.append((path, row["caption"]))
    return pairs


@pytest.fixture(scope="session")
def flickr_jsonl(
    flickr_pairs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("captions") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"image": p, "caption": c}) + "\n" for p, c in flickr_pairs))
    return path


@pytest.fixture(scope="session")
def flickr_tars(
    flickr_pairs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The 300 pairs as three img2dataset-style tars of 100 samples (each photo in 5 samples)."""
    return write_webdataset(flickr_pairs, tmp_path_factory.mktemp("wds"), per_tar=100)


@pytest.fixture(scope="session")
def fitted(flickr_pairs, image_encoder, text_encoder) -> AnchorSet:  # type: ignore[no-untyped-def]
    """Today's path: ``RelativeSpace.fit`` on the same pairs."""
    space = RelativeSpace(image_encoder=image_encoder, text_encoder=text_encoder, hubness=0)
    space.fit([p for p, _ in flickr_pairs], [c for _, c in flickr_pairs])
    return space.anchors_


@pytest.fixture(scope="session")
def built(flickr_tars, image_encoder, text_encoder, tmp_path_factory) -> AnchorSet:  # type: ignore[no-untyped-def]
    """An uninterrupted build from the tars (units of 50 samples, one decoding worker)."""
    return build_anchor_set(
        [flickr_tars],
        tmp_path_factory.mktemp("built") / "anchors",
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        workers=1,
        shard_size=50,
    )


def assert_same_set(a: AnchorSet, b: AnchorSet) -> None:
    """Same rows, order, ids, columns and embeddings (bit for bit)."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.captions == b.captions and a.keys == b.keys and a.image_paths == b.image_paths
    np.testing.assert_array_equal(a.image_embeddings, b.image_embeddings)
    np.testing.assert_array_equal(a.text_embeddings, b.text_embeddings)
    assert a.hub_statistics.keys() == b.hub_statistics.keys()
    for key, counts in a.hub_statistics.items():
        np.testing.assert_array_equal(counts, b.hub_statistics[key])
