"""SIGKILL ``asif build`` at random moments, in subprocesses: the rerun gives the identical set."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asif import AnchorSet
from asif.build import build_folder_of
from tests.build.conftest import assert_same_set


def _command(tars: str, target: Path) -> list[str]:
    return [
        sys.executable,
        *("-c", "import sys; from asif.cli import main; sys.exit(main())"),
        *("build", tars, "-o", str(target)),
        *("--shard-size", "30", "--workers", "1", "--batch-size", "16", "--quiet"),
    ]


def _run(command: list[str], kill_after: float | None = None) -> bool:
    """Run the build in its own process group; SIGKILL the group (the build and its decoding
    workers) after ``kill_after`` seconds. True if it was killed."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, err = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True
    assert process.returncode == 0, err.decode()[-2000:]
    return False


@pytest.mark.slow
def test_a_build_killed_at_random_moments_resumes_to_the_same_set(flickr_tars, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reference = tmp_path / "uninterrupted"
    started = time.perf_counter()
    _run(_command(flickr_tars, reference))
    duration = time.perf_counter() - started
    target = tmp_path / "killed"
    staging = build_folder_of(target)
    rng = random.Random(13)
    kills, partial = 0, 0
    for _ in range(8):
        if not _run(_command(flickr_tars, target), kill_after=rng.uniform(0.15, 0.8) * duration):
            break
        kills += 1
        units = staging / "units"
        written = len(list(units.glob("*.json"))) if units.is_dir() else 0
        partial += 0 < written < 10
    _run(_command(flickr_tars, target))  # the same command, to the end
    assert kills >= 3 and partial >= 1  # killed several times, at least once mid-way
    assert not staging.exists()
    assert_same_set(AnchorSet.load(target), AnchorSet.load(reference))
    leftovers = [p for p in [*target.parent.iterdir(), *target.rglob("*")] if p.name[0] == "."]
    assert leftovers == []  # no temporary left beside the set or in it
