"""CIFAR-10-C style corruptions: the ``imagecorruptions`` package's, seeded and cached on disk.

The package (``pip install imagecorruptions``, Michaelis et al. 2019) holds the 15 ImageNet-C
corruptions of Hendrycks & Dietterich (2019) and 4 extra ones, each at severities 1-5. Four of its
functions fail on today's stack; this module runs the package's own code with compatible helpers
put in their namespace, so the images are the package's:

- ``gaussian_blur``, ``glass_blur``: ``skimage.filters.gaussian(..., multichannel=True)`` (the
  argument left scikit-image in 0.19): the helper passes ``channel_axis=-1`` instead.
- ``fog``: ``np.float_`` (gone in NumPy 2) in its plasma fractal: the helper names ``np.float64``.
- ``frost``: the package imports ``pkg_resources`` (gone from setuptools 81) to find its frost
  pictures: a stand-in ``resource_filename`` is put in place while the package is imported.
- ``impulse_noise`` draws from ``skimage.util.random_noise``'s own generator, which ignores
  ``np.random.seed``: the helper hands it a seed drawn from NumPy's seeded stream.

Every other function is called as the package ships it. ``glass_blur``'s per-pixel Python loop
takes 6-15 s per 224-pixel image; :func:`corruption_function` gives a vectorised equivalent that
returns the same pixels for the same seed (a test checks it against the package's loop), including
the package's "swap" that copies one pixel onto the other (the two sides are numpy views).

Corruptions are seeded (the package draws from ``np.random``; its global state is saved and
restored around each call), so a given image, corruption, severity and seed always give the same
pixels. :func:`corrupt_images` writes them once into a cache folder (``$ASIF_CACHE/corruptions``
by default), named by the source file's content, so they are embedded once too.

Example:
    >>> image = np.full((32, 32, 3), 128, dtype=np.uint8)
    >>> noisy = corrupt(image, "gaussian_noise", 3, seed=0)
    >>> noisy.shape, noisy.dtype, bool((noisy != image).any())
    ((32, 32, 3), dtype('uint8'), True)
    >>> bool((corrupt(image, "gaussian_noise", 0) == image).all())  # severity 0: the identity
    True
    >>> bool((corrupt(image, "fog", 2, seed=1) == corrupt(image, "fog", 2, seed=1)).all())
    True
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "REPAIRED",
    "SEVERITIES",
    "CorruptedImages",
    "corrupt",
    "corrupt_images",
    "corruption_cache_dir",
    "corruption_function",
]

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The 15 corruptions of ImageNet-C and CIFAR-10-C, in the package's order."""

EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The package's 4 held-out ("validation") corruptions."""

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

REPAIRED: dict[str, str] = {
    "gaussian_blur": "skimage.filters.gaussian(multichannel=True) -> channel_axis=-1",
    "glass_blur": "skimage.filters.gaussian(multichannel=True) -> channel_axis=-1",
    "fog": "np.float_ (removed in NumPy 2) -> np.float64 in plasma_fractal",
    "frost": "pkg_resources.resource_filename (setuptools >= 81 has none) -> a stand-in",
    "impulse_noise": "skimage.util.random_noise's own generator -> seeded from np.random",
}
"""What this module changes around the package's functions (all others run untouched)."""

_VERSION = "v1"  # part of the cache folder: bump when the pixels a setting gives change


def corruption_function(name: str, *, package_loop: bool = False) -> Callable[[Any, int], Any]:
    """The package's corruption function ``name`` (repaired where :data:`REPAIRED` says).

    It takes a PIL image and a severity 1-5 and returns an array (or a PIL image) like the
    package's; :func:`corrupt` wraps it with checks, seeding and the uint8 conversion.

    Args:
        name: one of :data:`CORRUPTIONS` or :data:`EXTRA_CORRUPTIONS`.
        package_loop: ``glass_blur`` only: the package's own per-pixel loop (slow) instead of
            the vectorised equivalent.

    Raises:
        ValueError: ``name`` is not one of the package's 19 corruptions.
        ImportError: ``imagecorruptions`` is not installed.
    """
    known = CORRUPTIONS + EXTRA_CORRUPTIONS
    if name not in known:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(known)}.")
    if name == "glass_blur" and not package_loop:
        return _glass_blur
    return _functions()[name]


def corrupt(image: Any, corruption: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """One corrupted image as an (H, W, 3) uint8 array; severity 0 returns the image unchanged.

    Args:
        image: a PIL image or a uint8 array (H x W x 3, or H x W grey), at least 32 x 32.
        corruption: one of :data:`CORRUPTIONS` or :data:`EXTRA_CORRUPTIONS`.
        severity: 0 (the identity) to 5.
        seed: the seed of the corruption's random draws (noise, frost crops, fog, ...).

    Example:
        >>> image = np.zeros((40, 40, 3), dtype=np.uint8)
        >>> corrupt(image, "brightness", 5).max() > 0
        np.True_
    """
    array = np.asarray(image)
    if not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer from 0 to 5, got {severity!r}.")
    function = corruption_function(corruption)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays or PIL images, got dtype {array.dtype}.")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"images must be H x W x 3 (or H x W), got shape {array.shape}.")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if severity == 0:
        return array.copy()
    if min(array.shape[:2]) < 32:
        raise ValueError(f"images must be at least 32 x 32 pixels, got {array.shape[:2]}.")
    from PIL import Image

    key = hashlib.blake2b(f"{seed}/{corruption}/{severity}".encode(), digest_size=4).digest()
    with _numpy_seed(int.from_bytes(key, "little")):
        out = function(Image.fromarray(array), int(severity))
    return np.uint8(out)


@dataclass(frozen=True)
class CorruptedImages:
    """Corrupted copies of source images, on disk; row i is ``paths[i]``.

    Attributes:
        paths: the corrupted image files, source images innermost: for each corruption, for
            each severity, one file per source image.
        corruption: the corruption of each row.
        severity: the severity of each row.
        source: the source image (its position in the list given) of each row.
        folder: the cache folder they are in.
    """

    paths: list[str]
    corruption: list[str]
    severity: np.ndarray
    source: np.ndarray
    folder: Path

    def __len__(self) -> int:
        return len(self.paths)

    def rows(self, corruption: str, severity: int | None = None) -> np.ndarray:
        """Positions of the rows of one corruption (and severity)."""
        match = np.array([c == corruption for c in self.corruption], dtype=bool)
        if severity is not None:
            match &= self.severity == severity
        return np.flatnonzero(match)


def corruption_cache_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """Where corrupted images are kept: ``folder``, else ``$ASIF_CACHE/corruptions``, else
    ``~/.cache/asif/corruptions``.

    Example:
        >>> corruption_cache_dir("/tmp/mine")
        PosixPath('/tmp/mine')
    """
    if folder is not None:
        return Path(folder).expanduser()
    env = os.environ.get("ASIF_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "asif"
    return root / "corruptions"


def corrupt_images(
    paths: Sequence[str | os.PathLike[str]],
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    *,
    folder: str | os.PathLike[str] | None = None,
    seed: int = 0,
    size: int | None = 224,
    show_progress_bar: bool | None = None,
) -> CorruptedImages:
    """Corrupted copies of image files, generated once into a cache folder (PNG, lossless).

    A file is named by the sha256 of its source's bytes under
    ``<folder>/<version>/size<size>-seed<seed>/<corruption>/<severity>/``, and its random draws
    are seeded by (seed, corruption, severity, that hash): the same source gives the same pixels
    whatever else is corrupted with it, and files already there are not made again.

    Args:
        paths: the source images.
        corruptions, severities: what to apply (severities 1-5).
        folder: the cache folder (default :func:`corruption_cache_dir`).
        seed: seed of the random draws.
        size: resize each source so its shorter side has this many pixels (bicubic) before
            corrupting. The package's severities are ImageNet-C's, set for 224-pixel images; on
            CIFAR's 32 pixels its blurs and noise would be seven times coarser than intended.
            ``None`` corrupts at the source's size.
        show_progress_bar: a tqdm bar over the files to make (default: none).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (32, 32), "teal").save(root / "a.png")
        >>> made = corrupt_images([root / "a.png"], ["contrast", "fog"], [1, 5], folder=root / "c", size=64)
        >>> len(made), made.corruption[:2], made.severity.tolist()
        (4, ['contrast', 'contrast'], [1, 5, 1, 5])
        >>> Image.open(made.paths[0]).size
        (64, 64)
    """
    for name in corruptions:
        corruption_function(name)
    for severity in severities:
        if severity not in SEVERITIES:
            raise ValueError(f"severities must be in 1-5, got {severity!r}.")
    if size is not None and size < 32:
        raise ValueError(f"size must be at least 32 pixels (or None), got {size}.")
    base = corruption_cache_dir(folder) / _VERSION / f"size{size or 'native'}-seed{seed}"
    sources = [Path(p) for p in paths]
    digests = [_file_digest(p) for p in sources]
    jobs = [
        (name, int(severity), i)
        for name in corruptions
        for severity in severities
        for i in range(len(sources))
    ]
    out = [base / name / str(severity) / f"{digests[i]}.png" for name, severity, i in jobs]
    todo = [j for j, path in enumerate(out) if not path.exists()]
    if todo:
        from tqdm.auto import tqdm

        loaded: dict[int, np.ndarray] = {}
        bar = tqdm(todo, desc="corrupting", unit="img", disable=not show_progress_bar)
        for j in bar:
            name, severity, i = jobs[j]
            if i not in loaded:
                loaded[i] = _load(sources[i], size)
            key = f"{seed}/{digests[i]}"
            _write_png(corrupt(loaded[i], name, severity, seed=_int_seed(key)), out[j])
    return CorruptedImages(
        paths=[str(p) for p in out],
        corruption=[name for name, _, _ in jobs],
        severity=np.array([s for _, s, _ in jobs], dtype=np.int64),
        source=np.array([i for _, _, i in jobs], dtype=np.int64),
        folder=base,
    )


def _int_seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def _load(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if size is not None and min(image.size) != size:
        scale = size / min(image.size)
        shape = (max(size, round(image.width * scale)), max(size, round(image.height * scale)))
        image = image.resize(shape, Image.Resampling.BICUBIC)
    return np.asarray(image)


def _write_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(temporary, format="PNG")
    os.replace(temporary, path)


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (the package draws from it), then put its state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class _NumPy1Names:
    """``numpy`` with the NumPy-1 name the package's plasma fractal uses (``np.float_``)."""

    float_ = np.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _gaussian(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
    """``skimage.filters.gaussian`` taking the package's ``multichannel=True``."""
    from skimage.filters import gaussian

    if multichannel:
        kwargs.setdefault("channel_axis", -1)
    return gaussian(image, *args, **kwargs)


class _SeededSkimage:
    """``skimage`` whose ``util.random_noise`` draws its seed from NumPy's global generator."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.util = types.SimpleNamespace(random_noise=self._random_noise)

    def _random_noise(self, image: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("rng", int(np.random.randint(2**31 - 1)))
        return self._module.util.random_noise(image, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _resource_filename(package: str, name: str) -> str:
    """``pkg_resources.resource_filename``: a file beside the module or inside the package."""
    module = importlib.import_module(package)
    return str(Path(module.__file__ or "").parent / name)


_GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
"""glass_blur's (sigma, max_delta, iterations) per severity, as in the package."""


def _glass_blur(x: Any, severity: int = 1) -> np.ndarray:
    """The package's ``glass_blur``, with its pixel loop vectorised row by row (same pixels)."""
    sigma, delta, iterations = _GLASS[severity - 1]
    blurred = _gaussian(np.array(x) / 255.0, sigma=sigma, multichannel=True)
    image = _glass_shuffle(np.uint8(blurred * 255), delta, iterations)
    return np.clip(_gaussian(image / 255.0, sigma=sigma, multichannel=True), 0, 1) * 255


def _glass_shuffle(x: np.ndarray, delta: int, iterations: int) -> np.ndarray:
    """The package's scan: rows and columns from the far edge down to ``delta + 1``, each pixel
    taking the value of a random neighbour (dx, dy in [-delta, delta)) as the scan finds it.

    Within a row, a pixel pointing further along the row (already rewritten) takes that
    pixel's new value; every other source still holds its value from before the row, so a row
    is one gather plus pointer jumping along its forward chains.
    """
    height, width = x.shape[:2]
    rows = np.arange(height - delta, delta, -1)
    cols = np.arange(width - delta, delta, -1)
    positions = np.arange(len(cols))
    for _ in range(iterations):
        draws = np.random.randint(-delta, delta, size=(len(rows) * len(cols), 2))
        draws = draws.reshape(len(rows), len(cols), 2)
        for r, h in enumerate(rows):
            dx, dy = draws[r, :, 0], draws[r, :, 1]
            source = cols + dx
            before = x[h + dy, source]
            forward = (dy == 0) & (dx > 0) & (source <= width - delta)
            pointer = np.where(forward, (width - delta) - source, positions)
            while True:
                jumped = pointer[pointer]
                if np.array_equal(jumped, pointer):
                    break
                pointer = jumped
            x[h, cols] = before[pointer]
    return x


def _rebind(function: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """The same code with other global names (the package's helpers, repaired)."""
    return types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )


@functools.cache
def _functions() -> dict[str, Callable[[Any, int], Any]]:
    module = _import_package()
    names = CORRUPTIONS + EXTRA_CORRUPTIONS
    functions = {name: getattr(module, name) for name in names}
    namespace = dict(vars(module))
    namespace.update(gaussian=_gaussian, np=_NumPy1Names(), sk=_SeededSkimage(namespace["sk"]))
    namespace["plasma_fractal"] = _rebind(module.plasma_fractal, namespace)
    for name in ("gaussian_blur", "glass_blur", "fog", "impulse_noise"):
        functions[name] = _rebind(functions[name], namespace)
    return functions


def _import_package() -> types.ModuleType:
    """``imagecorruptions.corruptions``, imported with a ``pkg_resources`` stand-in if needed."""
    shim = None
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        with warnings.catch_warnings():  # its scipy.ndimage.interpolation import is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("imagecorruptions.corruptions")
    except ImportError as error:
        raise ImportError(
            "corruptions need the imagecorruptions package: pip install 'asif[eval]' "
            "(or pip install imagecorruptions)."
        ) from error
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
