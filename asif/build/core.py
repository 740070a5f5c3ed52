"""``build_anchor_set``: paired data in, a finished anchor set on disk out, resumable.

The steps, each its own module: open the sources (:mod:`asif.build.sources`), cut them into work
units and record the settings (:mod:`asif.build.plan`), let an engine write the units that are
not written yet (:mod:`asif.build.local`), then finish the set (:mod:`asif.build.writer`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asif import storage
from asif.anchors import AnchorSet, completed_shards
from asif.build.job import BuildJob
from asif.build.plan import BuildFolder, SettingsMismatch, plan_units, settings_digest
from asif.build.progress import BuildStats
from asif.build.sources import open_sources
from asif.build.writer import SKIPPED_LOG, finish_set

__all__ = ["DEFAULT_SHARD_SIZE", "build_anchor_set", "build_folder_of"]

logger = logging.getLogger("asif")

DEFAULT_SHARD_SIZE = 10_000
"""Samples per work unit (and so, at most, rows per shard): about 65 MB of embeddings with the
default encoders; the unit of resuming, of parallel work and of memory."""
ENGINES = ("local", "ray")
_LIBRARIES = ("torch", "timm", "sentence-transformers", "pillow", "numpy")


def build_folder_of(output: str | os.PathLike[str]) -> Path:
    """Where a build of ``output`` keeps its work until the set is finished: beside it.

    Example:
        >>> build_folder_of("data/anchors").as_posix()
        'data/.anchors.asif-build'
    """
    target = Path(output)
    return target.parent / f".{target.name}.asif-build"


def build_anchor_set(
    sources: Any,
    output: str | os.PathLike[str],
    *,
    image_encoder: str | Any = "default",
    text_encoder: str | Any = "default",
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    limit: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    precision: str = "fp32",
    strict: bool = False,
    show_progress_bar: bool | None = None,
    cache: bool | str | os.PathLike[str] | Any | None = None,
    hub_ks: Sequence[int] | str | None = "default",
    engine: str = "local",
) -> AnchorSet:
    """Build an anchor set from paired data and save it at ``output`` (a sharded folder).

    Streaming and bounded in memory: samples are read and decoded in worker processes, encoded
    in batches and written shard by shard. Resumable and exact: a build killed at any moment
    and run again with the same arguments writes only the missing shards, and its set is the
    one an uninterrupted build gives (same rows, order, ids and embeddings); other arguments
    for an unfinished build are refused. A finished set with the same settings and unchanged
    sources is returned as it is, without loading any encoder.

    Bad samples (missing or corrupt image, no or empty caption) are skipped, counted and listed
    (source, key, reason) in the provenance and in ``output/skipped.jsonl``; ``strict`` makes
    the first one an error. An image shared by consecutive samples (the captions of one photo)
    is decoded and encoded once. The hub statistics for ``hub_ks`` are stored with the set.

    Args:
        sources: caption files (JSONL, CSV, COCO JSON), WebDataset tars or patterns
            (``shards/{000000..000099}.tar``), Parquet files, ``datasets.Dataset`` objects or
            :class:`asif.build.sources.Source` objects (see :func:`~asif.build.sources.open_sources`).
        output: the anchor set's folder (absent, empty, or a set asif saved, which is replaced
            only once the new one is finished).
        image_encoder: a name (``"default"``, ``"large"``, ...) or an image encoder object.
        text_encoder: a name or a text encoder object.
        batch_size: images per forward pass (and captions per text batch).
        workers: decoding processes; None: ``min(8, cores - 1)`` (at least 1).
        device: the encoders' device; None: CUDA when present, else the CPU.
        limit: build from the first ``limit`` samples only.
        shard_size: samples per work unit and shard (:data:`DEFAULT_SHARD_SIZE`).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` where the device runs them natively
            (:func:`asif.encoders.precision.check_precision`).
        strict: the first unusable sample stops the build with an error.
        show_progress_bar: the stage bars and the summary (None: when logging at INFO).
        cache: also read and store embeddings in the embedding cache (``True``, a folder or an
            :class:`~asif.encoders.EmbeddingCache`); rows found there are not computed, and
            encoders are not loaded when every row is there. None: no cache.
        hub_ks: the k to store hub statistics for (``"default"``:
            :func:`asif.anchors.default_hub_ks`, the space's default and the paper's 800;
            None: none).
        engine: ``"local"`` (decoding in ``DataLoader`` workers, the encoders in this process:
            :mod:`asif.build.local`) or ``"ray"`` (Ray Data: decoding in CPU tasks, the
            encoders in actors, one per GPU; needs ``pip install "asif[ray]"``, and calls
            ``ray.init()`` if this process has not joined a Ray yet: :mod:`asif.build.ray_engine`).
            Both write the same set, and either resumes the other's unfinished build.

    Returns:
        The finished set, loaded from ``output``.

    Raises:
        asif.build.plan.SettingsMismatch: ``output`` has an unfinished build with other
            arguments.
        asif.build.local.BadSampleError: ``strict`` and a sample cannot be used.
        FileExistsError: ``output`` is a folder that asif did not write.
        ImportError: ``engine="ray"`` and Ray Data is not installed.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (64, 48), "red").save(root / "red.jpg")
        >>> lines = ['{"image": "red.jpg", "caption": "a red square"}', '{"image": "gone.jpg",'
        ...          ' "caption": "lost"}']
        >>> _ = (root / "pairs.jsonl").write_text("\\n".join(lines))
        >>> anchors = build_anchor_set([root / "pairs.jsonl"], root / "anchors", workers=0)
        >>> len(anchors), anchors.keys, anchors.provenance["skipped"]["by_kind"]
        (1, ['pairs.jsonl#0'], {'missing file': 1})
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if engine == "ray":
        from asif.build.ray_engine import require_ray

        require_ray()  # before any work: the error names what to install
    if type(batch_size) is not int or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    from asif.encoders._common import resolve_device, show_progress
    from asif.encoders.precision import check_precision

    show = show_progress(show_progress_bar)
    target = Path(output)
    _check_target(target)
    device = resolve_device(device)
    check_precision(precision, device)
    opened = open_sources(sources)
    folder = BuildFolder(build_folder_of(target))
    if (folder.path / storage.MANIFEST).is_file():  # finished, but not moved in place yet
        anchors = finish_set(folder, target, image_encoder=None, text_encoder=None, provenance={})
        return _done(anchors, target, BuildStats(), show)
    names = {m: _encoder_name(e, m) for m, e in (("image", image_encoder), ("text", text_encoder))}
    stamps = [[s, p.name, p.stamp] for s, source in enumerate(opened) for p in source.parts()]
    settings = {
        "sources": [source.describe() for source in opened],
        "parts": hashlib.sha256(json.dumps(stamps).encode()).hexdigest(),
        "image_encoder": names["image"],
        "text_encoder": names["text"],
        "precision": precision,
        "device": device.split(":")[0],
        "batch_size": batch_size,
        "shard_size": shard_size,
        "limit": limit,
        "hub_ks": hub_ks if hub_ks is None or isinstance(hub_ks, str) else list(hub_ks),
    }
    if not folder.started:
        built = _built_with(target, settings)
        if built is not None:
            return _done(built, target, BuildStats(), show)
    units, parts = plan_units(opened, shard_size, limit=limit, known=folder.known_counts())
    folder.start(settings, parts, units)
    memo = _resolve_cache(cache)
    encoders = {
        "image": _encoder(image_encoder, "image", device, precision, memo),
        "text": _encoder(text_encoder, "text", device, precision, memo),
    }
    completed = set(completed_shards(folder.path))
    done = {
        i: r for i, r in folder.records().items() if r["shard"] is None or r["shard"] in completed
    }
    job = BuildJob(
        folder,
        opened,
        units,
        done,
        encoders["image"],
        encoders["text"],
        batch_size,
        _workers(workers),
        device,
        cache=memo,
        strict=strict,
        show_progress_bar=show,
    )
    if job.todo:
        _check_fingerprints(folder, encoders)
    if engine == "ray":
        from asif.build.ray_engine import run_ray as run
    else:
        from asif.build.local import run_local as run
    stats = run(job)
    stats.loaded = [m for m, e in encoders.items() if getattr(e, "loaded", True) and job.todo]
    recorded = folder.read().get("fingerprints", {})
    provenance = {
        "build": {
            "settings": settings,
            "digest": settings_digest(settings),
            "encoders": {
                m: {"name": names[m], "fingerprint": recorded.get(m), "precision": precision}
                for m in encoders
            },
            "versions": _versions(),
        },
    }
    finishing = time.perf_counter()
    anchors = finish_set(
        folder,
        target,
        image_encoder=names["image"],
        text_encoder=names["text"],
        provenance=provenance,
        hub_ks=hub_ks,
    )
    stats.finish_seconds = time.perf_counter() - finishing
    stats.seconds += stats.finish_seconds
    return _done(anchors, target, stats, show)


def _done(anchors: AnchorSet, target: Path, stats: BuildStats, show: bool) -> AnchorSet:
    counts = anchors.provenance.get("counts", {})
    if stats.units:
        logger.info("%s", stats.summary())
        if show:
            print(stats.summary(), file=sys.stderr)
    else:
        message = f"{target}: built already, nothing to do"
        logger.info("%s", message)
        if show:
            print(message, file=sys.stderr)
    logger.info(
        "%s pairs built, %s skipped (see %s)",
        counts.get("pairs", len(anchors)),
        counts.get("skipped", 0),
        target / SKIPPED_LOG,
    )
    return anchors


def _check_target(target: Path) -> None:
    """Refuse, before any work, an output that a finished build could not replace."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder: name a folder for the set.")
    if not any(target.iterdir()):
        return
    manifest = target / storage.MANIFEST
    try:
        kind = json.loads(manifest.read_bytes()).get("format")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind not in storage.REPLACEABLE_FORMATS:
        raise FileExistsError(
            f"{target} is a folder that asif did not write: it is never replaced. Name a new "
            "or empty folder, or an anchor set asif saved."
        )


def _built_with(target: Path, settings: dict[str, Any]) -> AnchorSet | None:
    """The set at ``target`` if a build with these settings wrote it, else None."""
    if not (target / storage.MANIFEST).is_file():
        return None
    try:
        anchors = AnchorSet.load(target)
    except (FileNotFoundError, ValueError):
        return None
    build = anchors.provenance.get("build")
    if isinstance(build, dict) and build.get("settings") == settings:
        return anchors
    return None


def _encoder_name(encoder: Any, modality: str) -> str | None:
    from asif.encoders import canonical_encoder_name

    if isinstance(encoder, str):
        return canonical_encoder_name(encoder, modality)
    name = getattr(encoder, "name", None)
    return name if isinstance(name, str) else None


def _resolve_cache(cache: Any) -> Any:
    from asif.encoders.cache import resolve_cache

    return resolve_cache(cache)


def _encoder(spec: Any, modality: str, device: str, precision: str, cache: Any) -> Any:
    """A named encoder, loaded on first use (at ``precision``); an object as it is."""
    if not isinstance(spec, str):
        if modality == "image" and not hasattr(spec, "encode_preprocessed"):
            raise TypeError("an image encoder object needs encode_preprocessed and data_config.")
        if not hasattr(spec, "encode"):
            raise TypeError(f"a {modality} encoder object needs an encode method.")
        return spec
    from asif import encoders
    from asif.encoders.deferred import DeferredEncoder
    from asif.encoders.precision import apply_precision

    def load() -> Any:
        loader = encoders.load_image_encoder if modality == "image" else encoders.load_text_encoder
        return apply_precision(loader(spec, device=device), precision)

    return DeferredEncoder(spec, modality, load=load, cache=cache, precision=precision)


def _check_fingerprints(folder: BuildFolder, encoders: dict[str, Any]) -> None:
    """Record the encoders' fingerprints, or refuse ones that differ from those recorded."""
    document = folder.read()
    recorded = document.get("fingerprints", {})
    current = {m: getattr(e, "fingerprint", None) for m, e in encoders.items()}
    changed = [m for m in current if recorded.get(m) and recorded[m] != current[m]]
    if changed:
        raise SettingsMismatch(
            f"{folder.path} holds an unfinished build whose {' and '.join(changed)} encoder had "
            "other weights (another fingerprint); resume it with those, or delete "
            f"{folder.path} to start over."
        )
    if any(current.get(m) and not recorded.get(m) for m in current):
        folder.update(fingerprints={**recorded, **{m: v for m, v in current.items() if v}})


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    if type(workers) is not int or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}.")
    return workers


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for library in ("asif", *_LIBRARIES):
        try:
            out[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            out[library] = None
    return out
