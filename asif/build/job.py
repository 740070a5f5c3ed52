"""What an engine is given: the units still to write and everything needed to write them.

An engine (``"local"``: :func:`asif.build.local.run_local`; a Ray engine alike) turns every unit
of :attr:`BuildJob.todo` into its record and shard with the per-unit stages:
:func:`asif.build.decode.read_unit` (read, check, deduplicate, decode: CPU work),
the encoders (``image.encode_preprocessed(pixels)``, ``text.encode(captions)``), and
:func:`asif.build.writer.write_unit`, in any order and on any machine, as long as unit ``u`` is
written as the shard :meth:`BuildJob.shard_numbers` gives it (the count of non-empty units
before it).
The build then finishes the set from the folder alone (:func:`asif.build.writer.finish_set`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asif.build.plan import BuildFolder, WorkUnit
from asif.build.sources import Source
from asif.encoders import EmbeddingCache

__all__ = ["BuildJob"]


@dataclass
class BuildJob:
    """A build's units and settings, handed to an engine.

    Attributes:
        folder: the build folder (records and shards are written there).
        sources: the sources, as the units index them.
        units: every unit of the plan, in order.
        done: the records of the units already written, by unit index.
        image: the image encoder (``data_config``, ``encode_preprocessed``, ``fingerprint``);
            loaded on first use when it is a :class:`asif.encoders.deferred.DeferredEncoder`.
        text: the text encoder (``encode``).
        batch_size: images per forward pass (captions too).
        workers: decoding processes (0: decode in the engine's own process).
        device: the encoders' torch device.
        cache: the embedding cache, or None.
        strict: a skipped sample is an error.
        show_progress_bar: show the stage bars.
    """

    folder: BuildFolder
    sources: Sequence[Source]
    units: Sequence[WorkUnit]
    done: dict[int, dict[str, Any]]
    image: Any
    text: Any
    batch_size: int
    workers: int
    device: str
    cache: EmbeddingCache | None = None
    strict: bool = False
    show_progress_bar: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def todo(self) -> list[WorkUnit]:
        """The units still to write, in order."""
        return [u for u in self.units if u.index not in self.done]

    def shard_numbers(self, rows: dict[int, int]) -> dict[int, int | None]:
        """The shard of each unit of the longest prefix of the plan whose row counts are known
        (done, or in ``rows``: ``{unit: rows}``): units in order, skipping those whose every
        sample was skipped (``None``).

        Example:
            >>> job = BuildJob(None, [], [WorkUnit(i, 0, 0, 0, 1, i) for i in range(4)],
            ...                {0: {"n": 3}}, None, None, 1, 0, "cpu")
            >>> job.shard_numbers({1: 0, 2: 5})
            {0: 0, 1: None, 2: 1}
        """
        out: dict[int, int | None] = {}
        next_shard = 0
        for unit in self.units:
            n = self.done[unit.index]["n"] if unit.index in self.done else rows.get(unit.index)
            if n is None:
                break
            out[unit.index] = next_shard if n else None
            next_shard += bool(n)
        return out
