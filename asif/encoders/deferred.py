"""Encoders by name that load their model only when something must be encoded.

Loading the default pair takes seconds (torch, timm, sentence-transformers, the weights, then the
fingerprint: a sha256 over every weight). A rerun whose inputs are all in the embedding cache
needs none of it, except the fingerprint the rows are keyed by. So the cache folder remembers,
per *encoder identity*, the fingerprint (and the dimension, and an image encoder's
preprocessing settings) that the encoder had the last time it was loaded
(:meth:`~asif.encoders.EmbeddingCache.remember_encoder`). An identity is a digest of:

- the encoder's canonical name and precision;
- each of its weights files by (path, size, mtime_ns, ctime_ns, inode, device), as the file-hash
  memo stamps files: replaced weights give another identity;
- the versions of the libraries that run it (torch, torchvision, timm, sentence-transformers,
  transformers, tokenizers, Pillow, NumPy) and the stamps of asif's encoder modules, whose
  decoding and preprocessing are part of every embedding.

Encoders whose weights lie elsewhere (hub models, in the hub's own cache) have no identity and
load as usual. Once loaded, a :class:`DeferredEncoder` records what its encoder really is, and
warns if that differs from what was remembered (its rows were then looked up under the
remembered fingerprint: the stamps above changed without the files changing, which they guard
against).

Example:
    >>> import tempfile
    >>> from asif.encoders import EmbeddingCache, load_text_encoder
    >>> cache = EmbeddingCache(tempfile.mkdtemp())
    >>> enc = DeferredEncoder("default", "text", cache=cache, load=lambda: load_text_encoder())
    >>> first = enc.encode(["a cat"], cache=cache)  # encodes (loads the model), stores the row
    >>> again = DeferredEncoder("default", "text", cache=cache, load=lambda: load_text_encoder())
    >>> bool((again.encode(["a cat"], cache=cache) == first).all()), again.loaded
    (True, False)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data import list_image_files
from ._offline import lite_weights_file, minilm_folder
from ._registry import PACKAGED_IMAGE, canonical_encoder_name, resolve_image_name, resolve_text_name
from .cache import EmbeddingCache, file_stamps, resolve_cache, text_key

__all__ = ["DeferredEncoder", "encoder_identity", "weight_files"]

logger = logging.getLogger("asif")

_LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "pillow",
    "numpy",
)


def weight_files(name: str, modality: str) -> list[Path] | None:
    """The local files an encoder's weights (and configuration) come from, or None (a hub model).

    Example:
        >>> [p.suffix for p in weight_files("default", "image")]
        ['.pth']
        >>> weight_files("timm:resnet50", "image") is None
        True
    """
    if modality == "image":
        spec = resolve_image_name(name)
        if spec.source == "packaged":
            return [lite_weights_file(PACKAGED_IMAGE[spec.target].key)]
        if spec.checkpoint is not None:
            return [Path(spec.checkpoint)]
        if spec.target.startswith("local-dir:"):
            return _files_under(Path(spec.target.removeprefix("local-dir:")))
        return None
    spec = resolve_text_name(name)
    if spec.source == "packaged":
        if spec.target == "all-MiniLM-L6-v2":
            return _files_under(minilm_folder())
        return None  # all-mpnet-base-v2 unpacks on first load; its identity starts after that
    target = Path(spec.target)
    return _files_under(target) if target.is_dir() else None


def encoder_identity(name: str, modality: str, *, precision: str = "fp32") -> str | None:
    """A digest naming an encoder's weights files and the code that runs them (module docstring);
    None when it has no local weights files, or one changed in the last two seconds.

    Example:
        >>> encoder_identity("default", "text") == encoder_identity("default", "text")
        True
        >>> encoder_identity("default", "text") != encoder_identity("default", "text", precision="bf16")
        True
    """
    files = weight_files(name, modality)
    stamps = None if files is None else file_stamps(files)
    code = file_stamps(sorted(Path(__file__).parent.glob("*.py")))
    if stamps is None or code is None:
        return None
    versions = {}
    for library in _LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = None
    body = {
        "name": canonical_encoder_name(name, modality),
        "modality": modality,
        "precision": precision,
        "weights": stamps,
        "code": code,
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class DeferredEncoder:
    """An image or text encoder by name, loaded on first need (see the module docstring).

    ``encode(inputs, ..., cache=...)`` returns cached rows without loading the model when every
    input (image files, texts) is in the cache and the cache remembers this encoder's
    fingerprint; otherwise it loads the encoder and calls its ``encode``. Every other attribute
    is the loaded encoder's (``model``, ``transform``, ``encode_preprocessed``, ...).

    Args:
        name: the encoder's name (``"default"``, ``"large"``, a path, ...).
        modality: ``"image"`` or ``"text"``.
        load: makes the encoder (e.g. ``lambda: load_image_encoder(name, device="cpu")``).
        cache: the cache whose memo tells the fingerprint; None: none known before loading.
        precision: what ``load`` applies (part of the identity).
    """

    def __init__(
        self,
        name: str,
        modality: str,
        *,
        load: Callable[[], Any],
        cache: EmbeddingCache | None = None,
        precision: str = "fp32",
    ) -> None:
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
        self.modality = modality
        self.name = canonical_encoder_name(name, modality)
        self.precision = precision
        self.last_skipped: list[Any] = []
        self._load = load
        self._cache = cache
        self._encoder: Any = None
        self._lock = threading.Lock()
        self._identity = encoder_identity(name, modality, precision=precision)
        self._known = (
            cache.recall_encoder(self._identity)
            if cache is not None and self._identity is not None
            else None
        )

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"DeferredEncoder({self.name!r}, {self.modality!r}, {state})"

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._encoder is not None

    @property
    def encoder(self) -> Any:
        """The encoder itself, loaded now if it was not (its identity is then remembered)."""
        with self._lock:
            if self._encoder is None:
                encoder = self._load()
                self._remember(encoder)
                self._encoder = encoder
            return self._encoder

    @property
    def fingerprint(self) -> str:
        """The cache key of this encoder's rows: remembered, or the loaded encoder's."""
        if self._encoder is None and self._known is not None:
            return self._known["fingerprint"]
        return self.encoder.fingerprint

    @property
    def dim(self) -> int:
        """The embedding size: remembered, or the loaded encoder's."""
        if self._encoder is None and self._known is not None:
            return int(self._known["dim"])
        return int(self.encoder.dim)

    @property
    def data_config(self) -> dict[str, Any]:
        """An image encoder's preprocessing settings: remembered, or the loaded encoder's."""
        if self.modality != "image":
            raise AttributeError("a text encoder has no data_config")
        known = None if self._known is None else self._known.get("data_config")
        if self._encoder is None and isinstance(known, dict):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in known.items()}
        return self.encoder.data_config

    def encode(
        self,
        inputs: Any,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        cache: Any = None,
        **options: Any,
    ) -> np.ndarray:
        """The encoder's ``encode``; served from ``cache`` without loading when all rows are there."""
        store = resolve_cache(cache)
        if self._encoder is None and self._known is not None and store is not None:
            rows = self._cached(inputs, store)
            if rows is not None:
                self.last_skipped = []
                return rows
        out = self.encoder.encode(inputs, batch_size, show_progress_bar, cache=cache, **options)
        self.last_skipped = list(getattr(self.encoder, "last_skipped", []))
        return out

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.encoder, attribute)

    def _cached(self, inputs: Any, store: EmbeddingCache) -> np.ndarray | None:
        """Every input's cached row, in order, or None if one is not cached (or not a file/text)."""
        if self.modality == "text":
            items = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
                return None
            keys: list[str | None] = [text_key(t) for t in items]
        else:
            paths = _image_paths(inputs)
            if paths is None:
                return None
            keys = store.hash_files(paths, missing_ok=True)
        if not keys or any(k is None for k in keys):
            return None
        wanted = [k for k in keys if k is not None]
        found = store.get(self, wanted)
        if len(found) < len(set(wanted)):
            return None
        return np.stack([found[k] for k in wanted]).astype(np.float32, copy=False)

    def _remember(self, encoder: Any) -> None:
        if self._cache is None or self._identity is None:
            return
        fingerprint = getattr(encoder, "fingerprint", None)
        if not isinstance(fingerprint, str):
            return
        if self._known is not None and self._known.get("fingerprint") != fingerprint:
            logger.warning(
                "%s: the remembered fingerprint was not this encoder's (its files or code "
                "changed without their stamps changing?); rows looked up before it loaded may be "
                "another encoder's. Remembering the new one.",
                self.name,
            )
        record: dict[str, Any] = {"fingerprint": fingerprint, "dim": int(encoder.dim)}
        record["name"] = getattr(encoder, "name", self.name)
        if self.modality == "image":
            record["data_config"] = dict(encoder.data_config)
        self._cache.remember_encoder(self._identity, record)
        self._known = self._cache.recall_encoder(self._identity)


def _files_under(folder: Path) -> list[Path] | None:
    if not folder.is_dir():
        return None
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _image_paths(inputs: Any) -> list[str] | None:
    """Image inputs as file paths (a folder listed as the encoder lists it), else None."""
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        return list_image_files(path) if os.path.isdir(path) else [path]
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return None
    if not all(isinstance(x, (str, os.PathLike)) for x in inputs):
        return None
    return [os.fspath(x) for x in inputs]
