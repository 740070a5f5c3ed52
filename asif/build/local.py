"""The ``local`` engine: decoding in ``DataLoader`` workers, the encoders in this process.

Workers run :func:`asif.build.decode.read_unit` on every w-th unit and send batches of pixels
through shared memory (a few batches ahead per worker: ``prefetch_factor``); this process runs
each batch through the image encoder under ``torch.inference_mode`` (the encoder's own forward,
channels-last), encodes the unit's new captions together (:func:`captions_due`), and writes
each unit as soon as it and every unit before it are complete. Memory holds the embeddings of at most about ``workers + 1`` units
and the batches in flight, whatever N.

On a CPU the encoders and the decoders share the cores, so the bound is the serial one; on a
GPU, give decoding enough workers that the GPU never waits (``workers``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from asif.build.decode import DecodedBatch, Row, Skip, UnitDataset
from asif.build.job import BuildJob
from asif.build.plan import WorkUnit
from asif.build.progress import BuildStats, StageBars
from asif.build.writer import write_unit

__all__ = [
    "BadSampleError",
    "PlanOrderWriter",
    "UnitState",
    "captions_due",
    "refuse_skips",
    "run_local",
]

logger = logging.getLogger("asif")
_WARN_SKIPS = 20


class BadSampleError(ValueError):
    """A sample could not be used and the build is ``strict``."""


def run_local(job: BuildJob) -> BuildStats:
    """Write every unit of ``job.todo``; returns what this run did."""
    import torch

    stats = BuildStats()
    started = time.perf_counter()
    todo = job.todo
    if not todo:
        return stats
    writer = PlanOrderWriter(job)
    dataset = UnitDataset(
        job.sources,
        todo,
        job.image.data_config,
        batch_size=job.batch_size,
        cache_root=None if job.cache is None else str(job.cache.root),
        encoder=None
        if job.cache is None
        else (job.image.name, job.image.fingerprint, int(job.image.dim)),
        strict=job.strict,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=job.workers,
        prefetch_factor=2 if job.workers else None,
        pin_memory=job.device.startswith("cuda"),
    )
    bars = StageBars(sum(u.size for u in todo), job.show_progress_bar)
    states: dict[int, UnitState] = {}
    try:
        for batch in loader:
            state = states.setdefault(batch.unit, UnitState())
            stats.decode_seconds += batch.decode_seconds
            refuse_skips(batch.skipped, job)
            bars.update("read", len(batch.rows) + len(batch.skipped))
            state.add(batch, job, stats)
            bars.update("encode", len(batch.rows))
            writer.write_ready(
                lambda i: states.pop(i) if states.get(i, _EMPTY).final else None, stats, bars
            )
    finally:
        bars.close()
        del loader
    stats.seconds = time.perf_counter() - started
    return stats


def refuse_skips(skipped: list[Skip], job: BuildJob) -> None:
    """In a ``strict`` build, the first skipped sample is an error."""
    if skipped and job.strict:
        s = skipped[0]
        raise BadSampleError(
            f"{s.source}: sample {s.key}: {s.reason} (--strict: no sample is skipped)."
        )


class PlanOrderWriter:
    """Writes the units of ``job.todo`` in plan order as they finish, each into the shard an
    uninterrupted build gives it: the non-empty units done before it, plus the non-empty units
    this run wrote before it (an empty unit writes no shard)."""

    def __init__(self, job: BuildJob) -> None:
        self.job, self.todo = job, job.todo
        self.done_before: list[int] = []
        count, i = 0, 0
        for unit in job.units:
            if unit.index in job.done:
                count += bool(job.done[unit.index]["n"])
            elif i < len(self.todo) and unit.index == self.todo[i].index:
                self.done_before.append(count)
                i += 1
        self.position = self.written = 0

    @property
    def finished(self) -> bool:
        return self.position == len(self.todo)

    def write_ready(
        self, take: Callable[[int], UnitState | None], stats: BuildStats, bars: StageBars
    ) -> None:
        """Write the next units while ``take(unit_index)`` hands over a finished one."""
        while not self.finished:
            unit = self.todo[self.position]
            done = take(unit.index)
            if done is None:
                return
            shard = self.done_before[self.position] + self.written if done.rows else None
            done.write(self.job, unit, shard, stats)
            self.written += shard is not None
            bars.update("write", len(done.rows))
            self.position += 1


TEXT_CHUNK = 4096
"""A unit's new captions are encoded together, this many at most per call: the text encoder
sorts a call's captions by length, so larger calls pad less (about 10% faster than one call per
decoded batch of 64 images' captions)."""


def captions_due(pending: int, final: bool) -> bool:
    """Whether a unit's ``pending`` new captions are encoded after this batch (``final``: the
    unit's last): the one rule of both engines, so they encode the same caption groups."""
    return pending > 0 and (final or pending >= TEXT_CHUNK)


class UnitState:
    """One unit's rows and embeddings while its batches arrive."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.skipped: list[Skip] = []
        self.images: dict[int, np.ndarray] = {}  # slot -> embedding row
        self.texts: dict[str, int] = {}  # caption -> row of self.text_rows
        self.text_rows: list[np.ndarray] = []
        self.pending: dict[str, None] = {}  # captions new in the unit, not encoded yet
        self.counts = {"images": 0, "images_encoded": 0, "images_cached": 0, "texts_encoded": 0}
        self.final = False

    def add(self, batch: DecodedBatch, job: BuildJob, stats: BuildStats) -> None:
        if batch.pixels is not None and len(batch.slots):
            t = time.perf_counter()
            rows = job.image.encode_preprocessed(batch.pixels, batch_size=len(batch.slots))
            stats.model_seconds += time.perf_counter() - t
            self.images.update(zip(batch.slots, rows, strict=True))
            self.counts["images_encoded"] += len(batch.slots)
            stats.images_encoded += len(batch.slots)
            if job.cache is not None:
                job.cache.put(job.image, batch.hashes, rows)
        if batch.cached is not None:
            self.images.update(zip(batch.cached_slots, batch.cached, strict=True))
            self.counts["images_cached"] += len(batch.cached_slots)
            stats.images_cached += len(batch.cached_slots)
        self.counts["images"] += len(batch.slots) + len(batch.cached_slots)
        for row in batch.rows:
            if row.caption not in self.texts:
                self.pending.setdefault(row.caption)
        self.rows += batch.rows
        self.skipped += batch.skipped
        self.final = batch.final
        if captions_due(len(self.pending), self.final):
            self._encode_pending(job, stats)

    def _encode_pending(self, job: BuildJob, stats: BuildStats) -> None:
        """Encode the unit's captions gathered so far in one call (sorted by length inside)."""
        new = list(self.pending)
        t = time.perf_counter()
        options: dict[str, Any] = {} if job.cache is None else {"cache": job.cache}
        rows = job.text.encode(new, batch_size=job.batch_size, show_progress_bar=False, **options)
        stats.model_seconds += time.perf_counter() - t
        for caption, row in zip(new, np.asarray(rows, dtype=np.float32), strict=True):
            self.texts[caption] = len(self.text_rows)
            self.text_rows.append(row)
        self.counts["texts_encoded"] += len(new)
        stats.texts_encoded += len(new)
        self.pending = {}

    def write(self, job: BuildJob, unit: WorkUnit, shard: int | None, stats: BuildStats) -> None:
        rows = sorted(self.rows, key=lambda r: r.offset)
        skipped = sorted(self.skipped, key=lambda s: s.offset)
        for s in skipped:
            level = logging.WARNING if stats.skipped < _WARN_SKIPS else logging.INFO
            logger.log(level, "skipped %s in %s: %s", s.key, s.source, s.reason)
            stats.skipped += 1
        dim_i, dim_t = int(job.image.dim), int(job.text.dim)
        write_unit(
            job.folder,
            unit,
            shard,
            offsets=[r.offset for r in rows],
            image_embeddings=np.stack([self.images[r.slot] for r in rows])
            if rows
            else np.zeros((0, dim_i), np.float32),
            text_embeddings=np.stack([self.text_rows[self.texts[r.caption]] for r in rows])
            if rows
            else np.zeros((0, dim_t), np.float32),
            captions=[r.caption for r in rows],
            image_paths=[r.image_path for r in rows],
            keys=[r.key for r in rows],
            skipped=[{k: v for k, v in asdict(s).items() if k != "offset"} for s in skipped],
            counts={"samples": unit.size, **self.counts},
        )
        stats.pairs += len(rows)
        stats.units += 1


class _Finished:
    final = False


_EMPTY: Any = _Finished()
