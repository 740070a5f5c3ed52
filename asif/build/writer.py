"""Turning encoded units into shards, and the shards into a finished anchor set.

:func:`write_unit` is the per-unit stage after the encoders: given a unit's rows and their
embeddings it writes the unit's record (its skipped samples and counts), then its shard
(:func:`asif.anchors.write_shard`, atomic, never over another build's). :func:`finish_set`
merges the records into the provenance and ``skipped.jsonl``, computes the hub statistics over
the shards as they lie on disk, writes the manifest (:func:`asif.anchors.write_manifest`) and
moves the folder to its place (:func:`asif.storage.replace_folder`). Both are engine-agnostic.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asif import storage
from asif.anchors import (
    AnchorSet,
    completed_shards,
    default_hub_ks,
    hub_statistics_of,
    write_manifest,
    write_shard,
)
from asif.build.plan import BUILD_FILE, UNITS, BuildFolder, WorkUnit

__all__ = ["SKIPPED_LOG", "finish_set", "write_unit"]

SKIPPED_LOG = "skipped.jsonl"
"""The file, in the finished set's folder, that lists every skipped sample."""
PROVENANCE_SKIPS = 10_000
"""Skipped samples listed in the manifest's provenance itself (all are in ``skipped.jsonl``)."""


def write_unit(
    folder: BuildFolder,
    unit: WorkUnit,
    shard: int | None,
    *,
    offsets: Sequence[int],
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    captions: Sequence[str],
    image_paths: Sequence[str | None],
    keys: Sequence[str],
    skipped: Sequence[dict[str, Any]],
    counts: dict[str, int],
) -> dict[str, Any]:
    """Write one unit: its record, then (unless every sample was skipped) shard ``shard``.

    Anchor ids are ``unit.first_id + offset``. A shard found complete already (the unit was
    written before a crash hid its record) is kept when its ids are this unit's.

    Returns:
        The unit's record.
    """
    n = len(offsets)
    if n and shard is None:
        raise ValueError(f"unit {unit.index} has {n} rows but no shard index.")
    record = folder.write_record(
        unit.index,
        {
            "shard": shard if n else None,
            "n": n,
            "first_id": unit.first_id,
            "skipped": list(skipped),
            "counts": dict(counts),
        },
    )
    if not n:
        return record
    ids = unit.first_id + np.asarray(offsets, dtype=np.int64)
    try:
        write_shard(
            folder.path,
            shard,  # type: ignore[arg-type]
            image_embeddings=image_embeddings,
            text_embeddings=text_embeddings,
            ids=ids,
            captions=list(captions),
            image_paths=[p or "" for p in image_paths],
            keys=list(keys),
        )
    except FileExistsError:
        if shard not in completed_shards(folder.path) or not np.array_equal(
            _shard_ids(folder.path, shard),
            ids,  # type: ignore[arg-type]
        ):
            raise
    return record


def finish_set(
    folder: BuildFolder,
    target: str | os.PathLike[str],
    *,
    image_encoder: str | None,
    text_encoder: str | None,
    provenance: dict[str, Any],
    hub_ks: Sequence[int] | str | None = "default",
) -> AnchorSet:
    """Finish the set whose units are all written in ``folder`` and put it at ``target``.

    Writes ``skipped.jsonl`` and the manifest (provenance: ``provenance`` plus the counts and
    the skipped samples; hub statistics for ``hub_ks``), removes the build's own records and
    replaces ``target`` (empty, absent, or an asif folder) atomically. A folder finished before
    a crash is only moved.

    Returns:
        The set, loaded from ``target``.
    """
    path = folder.path
    if not (path / storage.MANIFEST).is_file():
        records = folder.records()
        units = folder.units()
        missing = [u.index for u in units if u.index not in records]
        if missing:
            raise RuntimeError(f"{path}: units {missing[:10]} are not written yet.")
        ordered = [records[u.index] for u in units]
        skipped = [s for r in ordered for s in r["skipped"]]
        n_shards = sum(1 for r in ordered if r["shard"] is not None)
        if n_shards == 0:
            raise ValueError(
                f"every one of the {sum(u.size for u in units)} samples was skipped: nothing to "
                f"build (see the reasons in {path / UNITS})."
            )
        _write_log(path / SKIPPED_LOG, skipped)
        counts: Counter[str] = Counter()
        for r in ordered:
            counts.update(r["counts"])
        n = sum(r["n"] for r in ordered)
        ks: Sequence[int] = (
            []
            if hub_ks is None
            else default_hub_ks(n)
            if isinstance(hub_ks, str)
            else [int(k) for k in hub_ks]
        )
        hubs = hub_statistics_of(_shard_blocks(path, n_shards), ks) if ks else {}
        for modality, k in hubs:  # a finish killed mid-way left its temporaries
            storage.remove_stale(path / "hub_statistics", f"{modality}-k{k}.npy")
        card = {
            **provenance,
            "counts": {
                **dict(sorted(counts.items())),
                "pairs": n,
                "skipped": len(skipped),
                "units": len(units),
                "shards": n_shards,
            },
            "skipped": {
                "count": len(skipped),
                "by_kind": dict(sorted(Counter(s["kind"] for s in skipped).items())),
                "log": SKIPPED_LOG,
                "samples": skipped[:PROVENANCE_SKIPS],
                "truncated": len(skipped) > PROVENANCE_SKIPS,
            },
            "hub_ks": list(ks),
        }
        write_manifest(
            path,
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            provenance=card,
            hub_statistics=hubs,
            shards=n_shards,
        )
    shutil.rmtree(path / UNITS, ignore_errors=True)
    (path / BUILD_FILE).unlink(missing_ok=True)
    storage.replace_folder(path, target)
    return AnchorSet.load(target)


def _write_log(path: Path, skipped: list[dict[str, Any]]) -> None:
    storage.remove_stale(path.parent, path.name)
    tmp = storage.temp_path(path.parent, path.name)
    try:
        storage.write_jsonl(tmp, skipped)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _shard_blocks(path: Path, n_shards: int) -> dict[str, list[np.ndarray]]:
    """Each modality's rows, one memory-mapped array per shard (checked against its record
    by ``write_manifest``; here only read)."""
    blocks: dict[str, list[np.ndarray]] = {"image": [], "text": []}
    for i in range(n_shards):
        for modality in blocks:
            file = path / "shards" / f"{i:06d}" / f"{modality}_embeddings.npy"
            blocks[modality].append(np.load(file, mmap_mode="r", allow_pickle=False))
    return blocks


def _shard_ids(path: Path, shard: int) -> np.ndarray:
    lines = (path / "shards" / f"{shard:06d}" / "ids.jsonl").read_text().split()
    return np.array([int(x) for x in lines], dtype=np.int64)
