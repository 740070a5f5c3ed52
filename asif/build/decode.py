"""Reading and decoding one work unit into batches of pixels, in worker processes.

:func:`read_unit` is the per-unit stage any engine runs on a CPU: it reads the unit's samples,
reports the unusable ones (missing file, corrupt image, no or empty caption), hashes each image's
bytes (the embedding cache's key), decodes every distinct image of the unit once (the five
captions of a COCO or Flickr photo share one decode and one forward pass) with the encoder's
own preprocessing (:class:`asif.encoders.image.ImagePreprocessor`: large JPEGs decoded reduced),
and yields :class:`DecodedBatch` objects of at most ``batch_size`` new images. The batches are a
function of the unit alone (and of the cache, when one is used), so a unit encoded again after a
crash gets the same embeddings.

:class:`UnitDataset` runs it over a list of units as a ``torch.utils.data.IterableDataset``:
with ``DataLoader(num_workers=w)`` each worker takes every w-th unit, so decoding runs beside the
encoder (pixels travel through shared memory).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asif.build.plan import WorkUnit
from asif.build.sources import Source
from asif.encoders import EmbeddingCache
from asif.encoders.image import ImageDecodeError, ImagePreprocessor

__all__ = ["DecodedBatch", "Row", "Skip", "UnitDataset", "read_unit"]


@dataclass(frozen=True)
class Row:
    """A usable sample: its place in the unit, key, caption, image path and image slot."""

    offset: int
    key: str
    caption: str
    image_path: str | None
    slot: int


@dataclass(frozen=True)
class Skip:
    """An unusable sample: its place in the unit, source part, key, kind and reason."""

    offset: int
    source: str
    key: str
    kind: str
    reason: str


@dataclass
class DecodedBatch:
    """What :func:`read_unit` yields: rows read since the last batch and their new images.

    Attributes:
        unit: the unit's index.
        rows: usable samples, in order.
        skipped: unusable samples, in order.
        slots: the unit-local image slots whose pixels are in ``pixels``, in order.
        pixels: (len(slots), 3, H, W) preprocessed float32 pixels, or None.
        hashes: the sha256 of each of those images' bytes (their embedding-cache keys).
        cached_slots: slots whose embeddings came from the cache ...
        cached: ... and those embeddings, (len(cached_slots), d) float32, or None.
        final: the unit's last batch.
        decode_seconds: time the reader spent reading, hashing and decoding for this batch.
    """

    unit: int
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    hashes: list[str] = field(default_factory=list)
    cached_slots: list[int] = field(default_factory=list)
    cached: np.ndarray | None = None
    final: bool = False
    decode_seconds: float = 0.0


def read_unit(
    source: Source,
    unit: WorkUnit,
    preprocess: ImagePreprocessor,
    *,
    batch_size: int,
    cache: EmbeddingCache | None = None,
    encoder: Any = None,
    strict: bool = False,
) -> Iterator[DecodedBatch]:
    """Read, check, deduplicate and decode one work unit (see the module docstring).

    Args:
        source: the unit's source.
        unit: the unit.
        preprocess: the image encoder's decoding and preprocessing.
        batch_size: new images per batch (the encoder's forward pass).
        cache: look images up here first (by the sha256 of their bytes) ...
        encoder: ... under this encoder's ``fingerprint`` and ``dim`` (needed with ``cache``).
        strict: stop at the first unusable sample (its batch is the last one).

    Yields:
        :class:`DecodedBatch` objects; the last has ``final=True``.
    """
    part = source.parts()[unit.part].name
    slots: dict[str, int] = {}  # image sha256 -> slot
    bad: dict[str, tuple[str, str]] = {}  # image sha256 -> (kind, reason) of a failed decode
    path_hashes: dict[str, str] = {}  # file path -> sha256 of its bytes
    batch = DecodedBatch(unit.index)
    pending: list[tuple[int, str, bytes, str]] = []  # new images: slot, sha256, bytes, name
    started = time.perf_counter()

    def flush(final: bool) -> DecodedBatch:
        nonlocal batch
        _decode_pending(batch, pending, preprocess, cache, encoder, bad, part)
        batch.final = final
        batch.decode_seconds = time.perf_counter() - started
        done, batch = batch, DecodedBatch(unit.index)
        pending.clear()
        return done

    for offset, sample in enumerate(source.read(unit.part, unit.start, unit.stop)):
        problem = _problem(sample)
        digest = data = None
        if problem is None:
            try:
                digest, data = _image_bytes(sample.image, path_hashes)
            except FileNotFoundError:
                problem = ("missing file", f"image file not found: {sample.image}")
        if problem is None and digest in bad:
            problem = bad[digest]
        if problem is not None:
            batch.skipped.append(Skip(offset, part, sample.key, *problem))
            if strict:
                yield flush(True)
                return
            continue
        assert digest is not None
        slot = slots.get(digest)
        if slot is None:
            slot = slots[digest] = len(slots)
            name = sample.image if isinstance(sample.image, str) else sample.image_path
            pending.append((slot, digest, data if data is not None else b"", name or sample.key))
        batch.rows.append(Row(offset, sample.key, sample.caption or "", sample.image_path, slot))
        if len(pending) >= batch_size:
            yield flush(False)
            started = time.perf_counter()  # the time the consumer held the batch is not ours
            if strict and bad:  # a decode failed: the engine stops at its skip
                return
    yield flush(True)


class UnitDataset(torch.utils.data.IterableDataset):
    """:func:`read_unit` over units, split across ``DataLoader`` workers (every w-th unit each).

    Args:
        sources: the build's sources.
        units: the units to read, in order.
        data_config: the image encoder's preprocessing settings.
        batch_size: new images per batch.
        draft: decode large JPEGs reduced (as the encoder does; False only to measure).
        cache_root: the embedding cache's folder, or None.
        encoder: (name, fingerprint, dim) of the image encoder, for cache look-ups.
        strict: stop at the first unusable sample.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        units: Sequence[WorkUnit],
        data_config: dict[str, Any],
        *,
        batch_size: int,
        draft: bool = True,
        cache_root: str | None = None,
        encoder: tuple[str, str, int] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.units = list(units)
        self.data_config = dict(data_config)
        self.batch_size = batch_size
        self.draft = draft
        self.cache_root = cache_root
        self.encoder = encoder
        self.strict = strict

    def __iter__(self) -> Iterator[DecodedBatch]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        preprocess = ImagePreprocessor(self.data_config, draft=self.draft)
        cache = None if self.cache_root is None else EmbeddingCache(self.cache_root)
        encoder = None
        if self.encoder is not None:
            name, fingerprint, dim = self.encoder
            encoder = _Identity(name, fingerprint, dim)
        for unit in self.units[worker::workers]:
            yield from read_unit(
                self.sources[unit.source],
                unit,
                preprocess,
                batch_size=self.batch_size,
                cache=cache,
                encoder=encoder,
                strict=self.strict,
            )


@dataclass(frozen=True)
class _Identity:
    """What the cache keys an encoder's rows by, without the encoder."""

    name: str
    fingerprint: str
    dim: int


def _problem(sample: Any) -> tuple[str, str] | None:
    if sample.problem is not None:
        kind = "no image" if sample.image is None else "unreadable sample"
        if "caption" in sample.problem:
            kind = "no caption"
        return kind, sample.problem
    if sample.caption is None or not sample.caption.strip():
        return "empty caption", "the caption is empty"
    if sample.image is None:
        return "no image", "the sample has no image"
    return None


def _image_bytes(image: bytes | str, path_hashes: dict[str, str]) -> tuple[str, bytes | None]:
    """(sha256, bytes) of an image; a file already hashed in this unit is not read again."""
    if isinstance(image, str):
        known = path_hashes.get(image)
        if known is not None:
            return known, None
        if not os.path.isfile(image):
            raise FileNotFoundError(image)
        with open(image, "rb") as f:
            data = f.read()
        digest = path_hashes[image] = hashlib.sha256(data).hexdigest()
        return digest, data
    return hashlib.sha256(image).hexdigest(), image


def _decode_pending(
    batch: DecodedBatch,
    pending: list[tuple[int, str, bytes, str]],
    preprocess: ImagePreprocessor,
    cache: EmbeddingCache | None,
    encoder: Any,
    bad: dict[str, tuple[str, str]],
    part: str,
) -> None:
    """Fill ``batch`` with the pending images' cached rows or decoded pixels; a failed decode
    turns the rows that use its image into skips."""
    if not pending:
        return
    found = {} if cache is None else cache.get(encoder, [h for _, h, _, _ in pending])
    tensors, failed = [], {}
    cached_rows = []
    for slot, digest, data, name in pending:
        row = found.get(digest)
        if row is not None:
            batch.cached_slots.append(slot)
            cached_rows.append(row)
            continue
        try:
            tensors.append(preprocess(data, name=name))
        except ImageDecodeError as error:
            bad[digest] = ("corrupt image", str(error))
            failed[slot] = bad[digest]
            continue
        batch.slots.append(slot)
        batch.hashes.append(digest)
    if tensors:
        batch.pixels = torch.stack(tensors)
    if cached_rows:
        batch.cached = np.stack(cached_rows).astype(np.float32, copy=False)
    if failed:
        kept = []
        for row in batch.rows:
            if row.slot in failed:
                batch.skipped.append(Skip(row.offset, part, row.key, *failed[row.slot]))
            else:
                kept.append(row)
        batch.rows = kept
        batch.skipped.sort(key=lambda s: s.offset)
