"""SIGKILL ``asif build`` at random moments, in subprocesses: the rerun gives the identical set."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _run(command: list[str], staging: Path | None = None, units: int = 0, delay: float = 0) -> bool:
    """Run the build in its own process group. With ``staging``: SIGKILL the group (the build and
    its decoding workers) ``delay`` seconds after ``units`` work units are recorded there. True if
    it was killed, False if it finished first."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    if staging is not None:
        while process.poll() is None and _written(staging) < units:
            time.sleep(0.02)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            process.stderr.close()  # type: ignore[union-attr]
            return True
    _, err = process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    return False


def _written(staging: Path) -> int:
    units = staging / "units"
    return len(list(units.glob("*.json"))) if units.is_dir() else 0


def test_a_build_killed_at_random_moments_resumes_to_the_same_set(flickr_tars, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """300 samples in 10 units of 30; killed while loading, then after 2, 5 and 8 units plus a
    random fraction of a unit's time (mid-unit, mid-write, mid-rename), rerun to the end."""
    reference = tmp_path / "uninterrupted"
    _run(_command(flickr_tars, reference))
    target = tmp_path / "killed"
    staging = build_folder_of(target)
    rng = random.Random(13)
    moments = [(0, rng.uniform(0.2, 3.0))] + [(u, rng.uniform(0.0, 0.4)) for u in (2, 5, 8)]
    progress = []
    for units, delay in moments:
        killed = _run(_command(flickr_tars, target), staging, units, delay)
        progress.append((killed, _written(staging)))
    _run(_command(flickr_tars, target))  # the same command, to the end
    print(f"\nkills (killed, units written after): {progress}")
    assert sum(killed for killed, _ in progress) >= 3
    assert any(killed and 0 < n < 10 for killed, n in progress)  # at least once mid-way
    assert not staging.exists()
    assert_same_set(AnchorSet.load(target), AnchorSet.load(reference))
    leftovers = [p for p in [*target.parent.iterdir(), *target.rglob("*")] if p.name[0] == "."]
    assert leftovers == []  # no temporary left beside the set or in it
