"""Corruptions: the package's functions, repaired for NumPy 2, seeded, cached on disk."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if (
    importlib.util.find_spec("imagecorruptions") is None
):  # importing it needs our pkg_resources stand-in
    pytest.skip("needs imagecorruptions: pip install 'asif[eval]'", allow_module_level=True)

from asif.eval.corruptions import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    REPAIRED,
    corrupt,
    corrupt_images,
    corruption_cache_dir,
    corruption_function,
)

ALL = CORRUPTIONS + EXTRA_CORRUPTIONS


@pytest.fixture(scope="module")
def cifar_image(data_dir: Path) -> np.ndarray:
    """A real CIFAR-10 test image, upsampled to 224 pixels as the suites corrupt it."""
    path = sorted((data_dir / "cifar10-test" / "cat").iterdir())[0]
    return np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("name", ALL)
def test_every_corruption_changes_the_image_and_severity_0_is_the_identity(
    name: str, cifar_image: np.ndarray
) -> None:
    same = corrupt(cifar_image, name, 0, seed=3)
    assert same.dtype == np.uint8 and np.array_equal(same, cifar_image)
    weak = corrupt(cifar_image, name, 1, seed=3)
    strong = corrupt(cifar_image, name, 5, seed=3)
    for out in (weak, strong):
        assert out.shape == cifar_image.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - cifar_image).mean() > 0.3, name
    # seeded: the same call gives the same pixels
    assert np.array_equal(corrupt(cifar_image, name, 5, seed=3), strong)
    # a harder severity moves the image further (mean absolute change), for all of them
    change = [
        np.abs(corrupt(cifar_image, name, s, seed=3).astype(int) - cifar_image).mean()
        for s in (1, 5)
    ]
    assert change[1] > change[0], (name, change)


def test_the_repaired_functions_are_the_ones_that_crash_unrepaired() -> None:
    assert {"gaussian_blur", "glass_blur", "fog", "frost"} <= set(REPAIRED)
    import sys

    corruption_function("fog")  # imports the package (with the pkg_resources stand-in)
    package = sys.modules["imagecorruptions.corruptions"]

    image = Image.fromarray(np.full((40, 40, 3), 100, np.uint8))
    for name in ("gaussian_blur", "glass_blur"):  # scikit-image >= 0.19 has no multichannel=
        with pytest.raises(TypeError, match="multichannel"):
            getattr(package, name)(image, 1)
    with pytest.raises(AttributeError, match="float_"):  # NumPy 2 has no np.float_
        package.fog(image, 1)


@pytest.mark.parametrize("shape", [(40, 40, 3), (37, 53, 3)])
def test_vectorised_glass_blur_gives_the_package_loops_pixels(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for severity in (1, 2, 3, 4, 5):
        state = np.random.get_state()
        np.random.seed(11)
        loop = corruption_function("glass_blur", package_loop=True)(
            Image.fromarray(image), severity
        )
        np.random.seed(11)
        fast = corruption_function("glass_blur")(Image.fromarray(image), severity)
        np.random.set_state(state)
        np.testing.assert_array_equal(fast, loop)


def test_seeds_differ_and_numpy_state_is_left_alone(cifar_image: np.ndarray) -> None:
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    a = corrupt(cifar_image, "gaussian_noise", 3, seed=0)
    b = corrupt(cifar_image, "gaussian_noise", 3, seed=1)
    assert np.random.rand() == expected  # the global stream was put back
    assert not np.array_equal(a, b)
    # impulse noise draws from scikit-image's own generator: seeded too
    assert np.array_equal(
        corrupt(cifar_image, "impulse_noise", 4, seed=7),
        corrupt(cifar_image, "impulse_noise", 4, seed=7),
    )


def test_bad_arguments() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="severity"):
        corrupt(image, "fog", 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(image, "rain", 1)
    with pytest.raises(ValueError, match="at least 32"):
        corrupt(np.zeros((16, 16, 3), np.uint8), "fog", 1)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(image.astype(np.float32), "fog", 1)


def test_corrupt_images_writes_once_and_is_deterministic(data_dir: Path, tmp_path: Path) -> None:
    sources = sorted((data_dir / "cifar10-test" / "dog").iterdir())[:2]
    made = corrupt_images(sources, ["contrast", "shot_noise"], [2, 4], folder=tmp_path, seed=5)
    assert len(made) == 8 and made.corruption == ["contrast"] * 4 + ["shot_noise"] * 4
    assert made.severity.tolist() == [2, 2, 4, 4, 2, 2, 4, 4]
    assert made.source.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert made.rows("shot_noise", 4).tolist() == [6, 7]
    first = {p: (Path(p).read_bytes(), Path(p).stat().st_mtime_ns) for p in made.paths}
    assert Image.open(made.paths[0]).size == (224, 224)
    again = corrupt_images(sources, ["contrast", "shot_noise"], [2, 4], folder=tmp_path, seed=5)
    assert again.paths == made.paths
    assert all(Path(p).stat().st_mtime_ns == first[p][1] for p in made.paths)  # not rewritten
    # a fresh folder makes the same bytes; another seed makes other noise
    fresh = corrupt_images(sources, ["shot_noise"], [4], folder=tmp_path / "b", seed=5)
    assert [Path(p).read_bytes() for p in fresh.paths] == [first[p][0] for p in made.paths[6:]]
    other = corrupt_images(sources, ["shot_noise"], [4], folder=tmp_path, seed=6)
    assert Path(other.paths[0]).read_bytes() != first[made.paths[6]][0]
    # corrupted images differ from the (upsampled) clean image
    clean = np.asarray(
        Image.open(sources[0]).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    )
    assert np.abs(np.asarray(Image.open(made.paths[0])).astype(int) - clean).mean() > 1
    native = corrupt_images(sources[:1], ["contrast"], [1], folder=tmp_path, size=None)
    assert Image.open(native.paths[0]).size == (32, 32)


def test_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASIF_CACHE", str(tmp_path))
    assert corruption_cache_dir() == tmp_path / "corruptions"
    assert corruption_cache_dir(tmp_path / "x") == tmp_path / "x"
