"""The ``ray`` engine: the per-unit stages of a build on Ray Data, from a laptop to a cluster.

``asif build ... --engine ray`` (``pip install "asif[ray]"``) runs the same stages as the
``local`` engine (:mod:`asif.build.local`), as a Ray Data pipeline:

1. a dataset of the work units still to write (one row per :class:`~asif.build.plan.WorkUnit`);
2. **decode**, CPU tasks with their own resources (``flat_map``, one CPU each, as many as the
   cluster's CPUs allow; ``workers`` is the local engine's): :func:`asif.build.decode.read_unit`
   reads, checks, deduplicates and decodes a unit into its batches of at most ``batch_size``
   new images (and the unit's new captions, grouped as the local engine groups them), exactly
   the batches the local engine encodes;
3. **encode**, a pool of encoder actors (``map_batches`` with a callable class and
   ``ActorPoolStrategy``): one actor per GPU with ``num_gpus=1`` each when the device is CUDA,
   else CPU actors. Each call is one decoded batch: ``batch_size`` images in one forward pass
   (give ``--batch-size`` in the hundreds on a GPU) and the captions due with it (up to
   :data:`asif.build.local.TEXT_CHUNK`, the unit's last batch carrying the rest). Named encoders are
   loaded in each actor (their fingerprint checked against the driver's); encoder objects are
   shipped once through the object store;
4. **write**, in this process: each unit's rows, sorted by offset as the local engine sorts
   them, are written with :func:`asif.build.writer.write_unit` as shard
   ``done_before + written``, the numbering of :func:`asif.build.local.run_local`, so the set
   is the local build's (same rows, order, ids and keys; embeddings to float rounding, as the
   encoders run in other processes). Ray does not keep order: units are written in plan order
   once they and every unit before them are complete, units already written are not in the
   dataset (resume), and a build killed at any moment and run again writes only the rest.

The build folder must be this process's (it writes the shards and then finishes the set); the
sources must be readable at the same paths from every node (a shared file system, or object
storage mounted as one, e.g. with mountpoint-s3). Ray: the build uses the Ray this process has
joined (``ray.init(...)`` or ``ray.init(address="auto")`` beforehand); if none, it calls
``ray.init()``, which joins the cluster ``RAY_ADDRESS`` names or one started with ``ray start``
on this machine, else starts a local Ray (left running for later builds in this process).
"""

from __future__ import annotations

import functools
import pickle
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from asif.build.decode import DecodedBatch, Row, Skip, UnitDataset
from asif.build.job import BuildJob
from asif.build.local import PlanOrderWriter, UnitState, captions_due, refuse_skips
from asif.build.plan import WorkUnit
from asif.build.progress import BuildStats, StageBars

__all__ = ["require_ray", "run_ray"]

_INSTALL = 'the ray engine needs Ray Data: pip install "asif[ray]"'
_UNIT_FIELDS = tuple(f.name for f in fields(WorkUnit))


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or an ImportError that says what to install."""
    try:
        import ray
        import ray.data  # ray without the [data] extra lacks its dependencies
    except ImportError as error:
        raise ImportError(f"{_INSTALL} ({error}).") from error
    return ray


def run_ray(job: BuildJob) -> BuildStats:
    """Write every unit of ``job.todo`` with Ray Data; returns what this run did (the contract
    of :func:`asif.build.local.run_local`)."""
    ray = require_ray()
    stats = BuildStats()
    started = time.perf_counter()
    todo = job.todo
    if not todo:
        return stats
    if not ray.is_initialized():
        ray.init()
    writer = PlanOrderWriter(job)
    identity = None
    if job.cache is not None:
        identity = (job.image.name, job.image.fingerprint, int(job.image.dim))
    decode = functools.partial(
        _decode_unit,
        sources=list(job.sources),
        data_config=dict(job.image.data_config),
        batch_size=job.batch_size,
        cache_root=None if job.cache is None else str(job.cache.root),
        identity=identity,
        strict=job.strict,
    )
    actors, resources, device = _encoder_resources(ray, job.device)
    units = ray.data.from_items([asdict(u) for u in todo], override_num_blocks=len(todo))
    encoded = units.flat_map(decode, num_cpus=1).map_batches(
        _Encoders,
        fn_constructor_kwargs={
            "image": _shippable(ray, job.image),
            "text": _shippable(ray, job.text),
            "device": device,
            "batch_size": job.batch_size,
            "cache_root": None if job.cache is None else str(job.cache.root),
        },
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )
    encoded.context.enable_progress_bars = False  # this run's bars are the stage bars below
    bars = StageBars(sum(u.size for u in todo), job.show_progress_bar)
    states: dict[int, _Arrivals] = {}
    try:
        for row in encoded.iter_rows():
            batch: _Encoded = pickle.loads(row["batch"])
            refuse_skips(batch.skipped, job)
            states.setdefault(batch.unit, _Arrivals()).add(batch, stats)
            bars.update("read", len(batch.rows) + len(batch.skipped))
            bars.update("encode", len(batch.rows))
            writer.write_ready(
                lambda i: states.pop(i).state if _complete(states.get(i)) else None, stats, bars
            )
    finally:
        bars.close()
    if not writer.finished:
        raise RuntimeError(
            f"the Ray pipeline ended with units {todo[writer.position].index}... unwritten."
        )
    stats.seconds = time.perf_counter() - started
    return stats


def _encoder_resources(ray: Any, device: str) -> tuple[int, dict[str, float], str]:
    """(actors, each actor's resources, its torch device) for the encoder stage."""
    cluster = ray.cluster_resources()
    cpus = int(cluster.get("CPU", 1))
    if device.startswith("cuda"):
        gpus = int(cluster.get("GPU", 0))
        if not gpus:
            raise RuntimeError(
                f"device {device!r}, but the Ray cluster has no GPUs (ray.cluster_resources()): "
                "start Ray with GPUs, or build with device='cpu'."
            )
        return gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda"  # each actor sees its GPU as cuda:0
    # on CPUs: one encoder actor per 16 cluster CPUs, with up to 8 threads; decoding has the rest
    return max(1, cpus // 16), {"num_cpus": max(1, min(8, cpus // 2))}, device


def _decode_unit(row: dict[str, Any], **options: Any) -> Any:
    """Decode stage (a CPU task): one unit's decoded batches, each with the unit's new captions
    the local engine encodes after that batch (:func:`asif.build.local.captions_due`: in one
    call, in that order), so both engines encode the same caption groups."""
    unit = WorkUnit(**{name: int(row[name]) for name in _UNIT_FIELDS})
    reader = UnitDataset(
        options["sources"],
        [unit],
        options["data_config"],
        batch_size=options["batch_size"],
        cache_root=options["cache_root"],
        encoder=options["identity"],
        strict=options["strict"],
    )
    seen: set[str] = set()
    pending: list[str] = []
    for seq, batch in enumerate(reader):
        fresh = [c for c in dict.fromkeys(r.caption for r in batch.rows) if c not in seen]
        seen.update(fresh)
        pending += fresh
        new: list[str] = []
        if captions_due(len(pending), batch.final):
            new, pending = pending, []
        if batch.pixels is not None:
            batch.pixels = batch.pixels.numpy()
        yield {"unit": unit.index, "seq": seq, "batch": pickle.dumps((batch, new), protocol=5)}


def _shippable(ray: Any, encoder: Any) -> Any:
    """What an actor rebuilds an encoder from: a named encoder's (name, precision, fingerprint);
    an encoder object, put once in the object store (in a list, so Ray hands over the ref)."""
    from asif.encoders.deferred import DeferredEncoder

    if isinstance(encoder, DeferredEncoder):
        return ("named", encoder.name, encoder.precision, encoder.fingerprint)
    return ("object", [ray.put(encoder)])


def _rebuild(spec: tuple[Any, ...], modality: str, device: str) -> Any:
    import ray

    if spec[0] == "object":
        return ray.get(spec[1][0])
    from asif import encoders
    from asif.encoders.precision import apply_precision

    _, name, precision, fingerprint = spec
    load = encoders.load_image_encoder if modality == "image" else encoders.load_text_encoder
    encoder = apply_precision(load(name, device=device), precision)
    if encoder.fingerprint != fingerprint:
        raise RuntimeError(
            f"the {modality} encoder {name!r} on this Ray node has other weights than on the "
            "driver (another fingerprint): install the same packages on every node."
        )
    return encoder


class _Encoders:
    """Encode stage (a Ray actor): one decoded batch per call, through both encoders."""

    def __init__(
        self, image: Any, text: Any, device: str, batch_size: int, cache_root: str | None
    ) -> None:
        from asif.encoders import EmbeddingCache

        self.image = _rebuild(image, "image", device)
        self.text = _rebuild(text, "text", device)
        self.batch_size = batch_size
        self.cache = None if cache_root is None else EmbeddingCache(cache_root)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = zip(rows["seq"], rows["batch"], strict=True)
        out = [self._encode(int(seq), *pickle.loads(blob)) for seq, blob in pairs]
        return {
            "unit": np.asarray(rows["unit"]),
            "seq": np.asarray(rows["seq"]),
            "batch": np.array([pickle.dumps(o, protocol=5) for o in out], dtype=object),
        }

    def _encode(self, seq: int, batch: DecodedBatch, new: list[str]) -> _Encoded:
        t = time.perf_counter()
        images = np.zeros((0, int(self.image.dim)), np.float32)
        if batch.pixels is not None and len(batch.slots):
            import torch

            pixels = torch.from_numpy(batch.pixels)
            images = self.image.encode_preprocessed(pixels, batch_size=len(batch.slots))
            if self.cache is not None:
                self.cache.put(self.image, batch.hashes, images)
        texts = np.zeros((0, int(self.text.dim)), np.float32)
        if new:
            options: dict[str, Any] = {} if self.cache is None else {"cache": self.cache}
            texts = self.text.encode(
                new, batch_size=self.batch_size, show_progress_bar=False, **options
            )
        return _Encoded(
            unit=batch.unit,
            seq=seq,
            final=batch.final,
            rows=batch.rows,
            skipped=batch.skipped,
            slots=[*batch.slots, *batch.cached_slots],
            images=np.concatenate([np.asarray(images, np.float32), _rows(batch.cached, images)]),
            cached=len(batch.cached_slots),
            captions=new,
            texts=np.asarray(texts, dtype=np.float32),
            decode_seconds=batch.decode_seconds,
            model_seconds=time.perf_counter() - t,
        )


def _rows(cached: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.zeros((0, like.shape[1]), np.float32) if cached is None else cached


@dataclass
class _Encoded:
    """One decoded batch, encoded: what the encoder actors send back to this process."""

    unit: int
    seq: int  # the batch's place in its unit
    final: bool  # the unit's last batch
    rows: list[Row]
    skipped: list[Skip]
    slots: list[int]  # encoded slots, then cached ones ...
    images: np.ndarray  # ... and their embeddings
    cached: int  # how many of the slots came from the cache
    captions: list[str]  # the captions new in the unit ...
    texts: np.ndarray  # ... and their embeddings
    decode_seconds: float
    model_seconds: float


class _Arrivals:
    """A unit's encoded batches, in whatever order they arrive, gathered for the writer."""

    def __init__(self) -> None:
        self.state = UnitState()
        self.batches = 0
        self.expected: int | None = None

    def add(self, batch: _Encoded, stats: BuildStats) -> None:
        state, encoded = self.state, len(batch.slots) - batch.cached
        state.rows += batch.rows
        state.skipped += batch.skipped
        state.images.update(zip(batch.slots, batch.images, strict=True))
        for caption, row in zip(batch.captions, batch.texts, strict=True):
            state.texts[caption] = len(state.text_rows)
            state.text_rows.append(row)
        for key, n in (
            ("images", len(batch.slots)),
            ("images_encoded", encoded),
            ("images_cached", batch.cached),
            ("texts_encoded", len(batch.captions)),
        ):
            state.counts[key] += n
        stats.images_encoded += encoded
        stats.images_cached += batch.cached
        stats.texts_encoded += len(batch.captions)
        stats.decode_seconds += batch.decode_seconds
        stats.model_seconds += batch.model_seconds
        self.batches += 1
        if batch.final:
            self.expected = batch.seq + 1
        state.final = self.batches == self.expected


def _complete(arrivals: _Arrivals | None) -> bool:
    return arrivals is not None and arrivals.state.final
