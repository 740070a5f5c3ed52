"""Progress of a build: one bar per stage (pairs/s), counters, and the closing summary.

Example:
    >>> stats = BuildStats(pairs=35_400, skipped=2, seconds=100.0, model_seconds=80.0)
    >>> stats.finish_seconds = 4.0
    >>> print(stats.summary())
    35400 pairs in 100.0 s: 354.0 pairs/s (model only: 442.5 pairs/s), 2 skipped; hub statistics and manifest 4.0 s of it
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BuildStats", "StageBars"]


@dataclass
class BuildStats:
    """What one run of a build did (the units it wrote; a resumed run counts only its own).

    Attributes:
        pairs: pairs written.
        skipped: samples skipped.
        seconds: wall time of the run (finishing the set included).
        model_seconds: time inside the encoders' forward passes (image and text).
        decode_seconds: time the readers spent reading, hashing and decoding (in workers:
            beside the encoders, not after them).
        images_encoded: distinct images run through the image encoder.
        images_cached: distinct images served by the embedding cache.
        texts_encoded: distinct captions run through the text encoder.
        finish_seconds: the part of ``seconds`` spent finishing the set (hub statistics,
            manifest, the move into place).
        units: units written by this run.
        loaded: the encoders this run loaded (none when everything was built or cached).
    """

    pairs: int = 0
    skipped: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    decode_seconds: float = 0.0
    finish_seconds: float = 0.0
    images_encoded: int = 0
    images_cached: int = 0
    texts_encoded: int = 0
    units: int = 0
    loaded: list[str] = field(default_factory=list)

    @property
    def pairs_per_second(self) -> float:
        """Pairs written per second of wall time."""
        return self.pairs / self.seconds if self.seconds else 0.0

    @property
    def model_pairs_per_second(self) -> float:
        """Pairs per second of encoder time: the rate if decoding cost nothing."""
        return self.pairs / self.model_seconds if self.model_seconds else 0.0

    def summary(self) -> str:
        """One line: pairs, time, pairs/s, model-only pairs/s, skipped, time to finish."""
        line = (
            f"{self.pairs} pairs in {self.seconds:.1f} s: {self.pairs_per_second:.1f} pairs/s "
            f"(model only: {self.model_pairs_per_second:.1f} pairs/s), {self.skipped} skipped"
        )
        if self.finish_seconds:
            line += f"; hub statistics and manifest {self.finish_seconds:.1f} s of it"
        return line


class StageBars:
    """tqdm bars for the stages read (samples), encode (pairs) and write (pairs).

    Args:
        total: samples to go through.
        show: show them (False: every call does nothing).
    """

    STAGES = (("read", "sample"), ("encode", "pair"), ("write", "pair"))

    def __init__(self, total: int, show: bool) -> None:
        self._bars: dict[str, Any] = {}
        if show:
            from tqdm.auto import tqdm

            for position, (stage, unit) in enumerate(self.STAGES):
                self._bars[stage] = tqdm(
                    total=total, desc=f"{stage:>6}", unit=unit, position=position, smoothing=0.1
                )

    def update(self, stage: str, n: int) -> None:
        """Advance one stage by ``n``."""
        bar = self._bars.get(stage)
        if bar is not None and n:
            bar.update(n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
