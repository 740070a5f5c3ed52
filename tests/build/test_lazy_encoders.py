"""Encoders load only when something must be encoded (issue 13 item 7)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import asif.encoders
from asif import RelativeSpace
from asif.encoders import EmbeddingCache
from asif.encoders.deferred import DeferredEncoder, encoder_identity, weight_files


def _refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("an encoder was loaded")


def test_a_rerun_whose_inputs_are_cached_loads_no_encoder(
    flickr_pairs, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    paths = sorted({p for p, _ in flickr_pairs})[:6]
    texts = [c for _, c in flickr_pairs[:8]]
    first = RelativeSpace(cache=tmp_path / "cache")
    images, captions = first.encode_images(paths), first.encode_texts(texts)
    monkeypatch.setattr(asif.encoders, "load_image_encoder", _refuse)
    monkeypatch.setattr(asif.encoders, "load_text_encoder", _refuse)
    again = RelativeSpace(cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.encode_images(paths), images)
    np.testing.assert_array_equal(again.encode_texts(texts[::-1]), captions[::-1])
    with pytest.raises(AssertionError, match="loaded"):  # a text not in the cache needs the model
        again.encode_texts(["a sentence nobody encoded"])


def test_the_memo_is_keyed_by_the_weights_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights, version 1")
    name = f"timm:resnet18@{weights}"
    assert weight_files(name, "image") == [weights]
    assert encoder_identity(name, "image") is None  # changed within 2 s: not trusted yet
    time.sleep(2.1)
    before = encoder_identity(name, "image")
    assert before is not None and before == encoder_identity(name, "image")
    assert encoder_identity(name, "image", precision="bf16") != before
    weights.write_bytes(b"weights, version 2")
    time.sleep(2.1)
    assert encoder_identity(name, "image") not in (None, before)
    assert encoder_identity("timm:resnet18", "image") is None  # hub weights: no local files


def test_a_deferred_encoder_remembers_what_it_loaded(tmp_path, text_encoder) -> None:  # type: ignore[no-untyped-def]
    cache = EmbeddingCache(tmp_path)
    loads = []

    def load():  # type: ignore[no-untyped-def]
        loads.append(1)
        return text_encoder

    fresh = DeferredEncoder("default", "text", load=load, cache=cache)
    assert not fresh.loaded
    assert fresh.dim == 384 and fresh.loaded  # nothing remembered yet: it loads
    known = DeferredEncoder("default", "text", load=load, cache=cache)
    assert (known.fingerprint, known.dim) == (text_encoder.fingerprint, 384)
    assert not known.loaded and len(loads) == 1
    assert known.name == text_encoder.name
    assert known.model is text_encoder.model and known.loaded  # other attributes load it


def test_the_build_reads_a_cache_that_fit_filled(
    flickr_pairs, flickr_jsonl: Path, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from asif.build import build_anchor_set

    paths = [p for p, _ in flickr_pairs[:25]]
    space = RelativeSpace(cache=tmp_path / "cache", hubness=0)
    space.fit(paths, [c for _, c in flickr_pairs[:25]])
    monkeypatch.setattr(asif.encoders, "load_image_encoder", _refuse)
    monkeypatch.setattr(asif.encoders, "load_text_encoder", _refuse)
    anchors = build_anchor_set(
        [flickr_jsonl], tmp_path / "anchors", limit=25, cache=tmp_path / "cache", workers=0
    )
    counts = anchors.provenance["counts"]
    assert counts["images_cached"] == 5 and counts["images_encoded"] == 0
    # the cached rows themselves (fit renormalises its rows once more: float32 rounding)
    np.testing.assert_allclose(anchors.image_embeddings, space.anchors_.image_embeddings, atol=1e-7)
    np.testing.assert_allclose(anchors.text_embeddings, space.anchors_.text_embeddings, atol=1e-7)
