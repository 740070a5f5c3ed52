"""Reduced-size JPEG decoding in the one decode path, and precision only where it is native."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from asif.encoders.image import ImagePreprocessor, decode_size, load_image
from asif.encoders.precision import check_precision

skimage = pytest.importorskip("skimage")
PHOTOS = Path(skimage.__file__).parent / "data"
_CPUINFO = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""


def test_large_jpegs_are_decoded_reduced_and_small_ones_are_not() -> None:
    retina = PHOTOS / "retina.jpg"  # a real 1411 x 1411 photo
    assert load_image(retina).size == (1411, 1411)
    assert load_image(retina, draft=256).size == (353, 353)  # 1/4: still >= 256
    hubble = PHOTOS / "hubble_deep_field.jpg"  # 1000 x 872
    assert load_image(hubble, draft=256).size == (500, 436)
    rocket = PHOTOS / "rocket.jpg"  # 640 x 427: below twice 256, decoded whole
    assert load_image(rocket, draft=256).size == load_image(rocket).size == (640, 427)
    png = io.BytesIO()
    load_image(retina).save(png, format="PNG")  # draft is for JPEGs only
    assert load_image(png.getvalue(), draft=256, name="x.png").size == (1411, 1411)


def test_reduced_decoding_changes_the_pixels_little(image_encoder) -> None:  # type: ignore[no-untyped-def]
    config = image_encoder.data_config
    assert decode_size(config) == image_encoder.draft == 256
    files = [PHOTOS / "retina.jpg", PHOTOS / "hubble_deep_field.jpg"]
    drafted = np.stack([ImagePreprocessor(config)(f).numpy() for f in files])
    full = np.stack([ImagePreprocessor(config, draft=False)(f).numpy() for f in files])
    assert np.abs(drafted - full).mean() < 0.02  # pixels in [-1, 1]
    a = image_encoder.encode_preprocessed(drafted)
    b = image_encoder.encode_preprocessed(full)
    assert (a * b).sum(axis=1).min() > 0.97
    # the encoder decodes files the same way (a build and RelativeSpace.fit stay equal)
    np.testing.assert_allclose(image_encoder.encode(files), a, atol=1e-6)


def test_a_corrupt_image_is_reported_by_its_name() -> None:
    from asif.encoders import ImageDecodeError

    with pytest.raises(ImageDecodeError, match=r"00001\.tar/42\.jpg"):
        load_image(b"\xff\xd8 not a jpeg", draft=256, name="00001.tar/42.jpg")


@pytest.mark.skipif("bf16" in _CPUINFO, reason="this CPU has bf16 instructions")
def test_bf16_is_refused_on_a_cpu_that_would_emulate_it() -> None:
    with pytest.raises(ValueError, match="30 times slower"):
        check_precision("bf16", "cpu")
    assert check_precision("fp32", "cpu") == "fp32"
