"""What every benchmark shares: where the data is, where results go, and the machine's name.

The data folder is this checkout's configuration, not the library's: ``$ASIF_DATA``, else
``../shared/data`` beside the project root (set here, for :mod:`asif.eval.sources`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
os.environ.setdefault("ASIF_DATA", str(ROOT.parent / "shared" / "data"))
DATA = Path(os.environ["ASIF_DATA"])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), e.g. ``'AMD EPYC'``, else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector extensions that decide sgemm speed (``avx2``, ``avx512f``, ``amx_bf16``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]


def machine() -> str:
    """One line for a results table: CPU model, its vector extensions, cores, Python."""
    flags = "/".join(cpu_flags()) or "no AVX2"
    return f"{cpu_model()} ({flags}), {os.cpu_count()} cores, Python {platform.python_version()}"
