"""Work units: a deterministic cut of the sources, and the build folder that records them.

A build reads its sources as one sequence of samples (source by source, part by part) and cuts
each part into *work units* of ``shard_size`` samples (a unit never spans two parts; a caption
file's unit ends where an image's run of captions ends, so an image is never split). Each unit
becomes at most one output shard, and a sample's anchor id is its position in the sequence, so
the same sources and ``shard_size`` always give the same units, rows, order and ids: the
ground a resumed build stands on.

The build folder (``.<name>.asif-build`` beside the output) holds, until the set is finished::

    build.json          sealed: the settings (sources, encoders, shard size, batch size, ...),
                        each part's name, stamp and count, and the units
    units/000007.json   sealed, one per finished unit: its shard (or none, if every sample was
                        skipped), rows, counts and skipped samples (key, source, reason);
                        written before its shard, so a unit is done when both are on disk
    shards/000005/      the shards (:func:`asif.anchors.write_shard`)

Example:
    >>> units = cut_part(10, shard_size=4, first_id=100, source=0, part=0, start_index=0)
    >>> [(u.start, u.stop, u.first_id) for u in units]
    [(0, 4, 100), (4, 8, 104), (8, 10, 108)]
    >>> [(u.start, u.stop) for u in cut_part(10, 4, 0, 0, 0, 0, cuts=[0, 3, 5, 9])]
    [(0, 5), (5, 9), (9, 10)]
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asif import storage
from asif.build.sources import Part, Source

__all__ = [
    "BUILD_FILE",
    "BuildFolder",
    "SettingsMismatch",
    "WorkUnit",
    "cut_part",
    "plan_units",
]

BUILD_FORMAT = "asif-build"
UNIT_FORMAT = "asif-build-unit"
FORMAT_VERSION = 1
BUILD_FILE = "build.json"
UNITS = "units"


@dataclass(frozen=True)
class WorkUnit:
    """Samples ``start .. stop - 1`` of part ``part`` of source ``source``: one output shard.

    Attributes:
        index: the unit's position in the plan (units are written in this order).
        source: the source's position in the build's sources.
        part: the part's position in its source.
        start: first sample (in the part).
        stop: one past the last sample.
        first_id: the anchor id of sample ``start`` (its position over all sources).
    """

    index: int
    source: int
    part: int
    start: int
    stop: int
    first_id: int

    @property
    def size(self) -> int:
        """Samples in the unit."""
        return self.stop - self.start


class SettingsMismatch(ValueError):
    """A build folder was started with other settings or other sources than this build."""


def cut_part(
    n: int,
    shard_size: int,
    first_id: int,
    source: int,
    part: int,
    start_index: int,
    *,
    cuts: Sequence[int] | None = None,
) -> list[WorkUnit]:
    """The units of one part of ``n`` samples: ``shard_size`` each, each one extended to the
    next of ``cuts`` (sorted positions where a unit may start; None: anywhere)."""
    units, start = [], 0
    while start < n:
        stop = min(n, start + shard_size)
        if cuts is not None and stop < n:
            at = bisect.bisect_left(cuts, stop)
            stop = min(n, cuts[at]) if at < len(cuts) else n
        units.append(
            WorkUnit(start_index + len(units), source, part, start, stop, first_id + start)
        )
        start = stop
    return units


def plan_units(
    sources: Sequence[Source],
    shard_size: int,
    *,
    limit: int | None = None,
    known: dict[tuple[str, str], int] | None = None,
) -> tuple[list[WorkUnit], list[dict[str, Any]]]:
    """The work units of the sources, and a record of each part (name, stamp, count).

    Args:
        sources: the sources, in order.
        shard_size: samples per unit (a caption file's unit may run longer, to its image's end).
        limit: use only the first ``limit`` samples over all sources.
        known: sample counts by ``(name, json stamp)`` from an earlier plan, so unchanged
            parts are not counted again (counting a tar reads its headers).
    """
    if type(shard_size) is not int or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}.")
    units: list[WorkUnit] = []
    parts: list[dict[str, Any]] = []
    total = 0
    for s, source in enumerate(sources):
        for p, part in enumerate(source.parts()):
            if limit is not None and total >= limit:
                break
            n = (known or {}).get(_part_key(part))
            if n is None:
                n = source.count(p)
            parts.append({"source": s, "name": part.name, "stamp": part.stamp, "n": n})
            if limit is not None:
                n = min(n, limit - total)
            cuts = source.cut_points(p) if n else None
            units += cut_part(n, shard_size, total, s, p, len(units), cuts=cuts)
            total += n
    if not units:
        raise ValueError("the sources hold no samples.")
    return units, parts


def _part_key(part: Part | dict[str, Any]) -> tuple[str, str]:
    if isinstance(part, Part):
        return part.name, json.dumps(part.stamp)
    return part["name"], json.dumps(part["stamp"])


class BuildFolder:
    """The folder a build writes before the set is finished (see the module docstring).

    Args:
        path: the folder (created by :meth:`start`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"BuildFolder({str(self.path)!r})"

    @property
    def started(self) -> bool:
        """Whether a build was started here (its ``build.json`` exists)."""
        return (self.path / BUILD_FILE).is_file()

    def read(self) -> dict[str, Any]:
        """The sealed ``build.json``: ``settings``, ``parts``, ``units``."""
        with storage.Folder.open(self.path) as folder:
            return storage.read_manifest(folder, BUILD_FORMAT, FORMAT_VERSION, name=BUILD_FILE)

    def known_counts(self) -> dict[tuple[str, str], int]:
        """The parts' counts recorded by an earlier start (empty if none)."""
        if not self.started:
            return {}
        return {_part_key(p): p["n"] for p in self.read().get("parts", [])}

    def start(
        self, settings: dict[str, Any], parts: list[dict[str, Any]], units: list[WorkUnit]
    ) -> None:
        """Record a new build, or check that the one recorded here has the same settings.

        Raises:
            SettingsMismatch: the folder holds a build with other settings or sources (the
                message names what differs and how to start over).
        """
        body = {"settings": settings, "parts": parts, "units": [asdict(u) for u in units]}
        if self.started:
            recorded = self.read()
            differences = _differences(
                {"settings": recorded.get("settings"), "parts": recorded.get("parts")},
                {"settings": settings, "parts": parts},
            )
            if differences:
                raise SettingsMismatch(
                    f"{self.path} holds an unfinished build with other settings ("
                    + "; ".join(differences[:5])
                    + "). Run the same command as before to resume it, or delete "
                    f"{self.path} to start over."
                )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        storage.write_json(
            self.path / BUILD_FILE,
            {"format": BUILD_FORMAT, "format_version": FORMAT_VERSION, **body},
        )

    def update(self, **values: Any) -> None:
        """Record what is known only later (the encoders' ``fingerprints``, once loaded)."""
        document = self.read()
        document.update(values)
        document.pop("checksum", None)
        storage.write_json(self.path / BUILD_FILE, document)

    def units(self) -> list[WorkUnit]:
        """The units recorded at start."""
        return [WorkUnit(**u) for u in self.read()["units"]]

    def record_path(self, index: int) -> Path:
        return self.path / UNITS / f"{index:06d}.json"

    def write_record(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        """Write unit ``index``'s record (sealed, atomically)."""
        (self.path / UNITS).mkdir(parents=True, exist_ok=True)
        return storage.write_json(
            self.record_path(index),
            {"format": UNIT_FORMAT, "format_version": FORMAT_VERSION, "unit": index, **record},
        )

    def records(self) -> dict[int, dict[str, Any]]:
        """The units' records that are on disk and intact, by unit index."""
        folder = self.path / UNITS
        if not folder.is_dir():
            return {}
        out = {}
        with storage.Folder.open(folder) as opened:
            for name in opened.names():
                if not (name.endswith(".json") and name[:-5].isdigit()):
                    continue
                try:
                    record = storage.read_manifest(opened, UNIT_FORMAT, FORMAT_VERSION, name=name)
                except (storage.AnchorFileError, FileNotFoundError) as error:
                    storage.logger.warning("unit record %s is damaged, redone: %s", name, error)
                    continue
                if record.get("unit") == int(name[:-5]):
                    out[record["unit"]] = record
        return out


def settings_digest(settings: dict[str, Any]) -> str:
    """A short digest of a build's settings (to name them in messages and provenance)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Human-readable paths where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += _differences(a, b, f"{where}[{i}]")
        return out
    if old != new:
        return [f"{where}: was {_short(old)}, now {_short(new)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
