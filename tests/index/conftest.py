"""Index fixtures: lattice vectors (exact cosines, many ties) and one local Ray per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest


def lattice(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    """(n, d) unit rows with 16 entries of +-1/4 each (norm exactly 1), the rest 0.

    Every cosine between two such rows is a multiple of 1/16, computed exactly in float32 by any
    kernel in any order: scores agree to the last bit across shards, processes and devices, and
    many of them tie, which puts the tie rule (lower position first) to work.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d), np.float32)
    cols = np.argsort(rng.random((n, d)), axis=1)[:, :16]
    np.put_along_axis(x, cols, rng.choice([-0.25, 0.25], (n, 16)).astype(np.float32), 1)
    return x


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray instance (2 CPUs) for the whole test session: it takes 8-14 s to start."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=256 * 2**20,
        )
    yield ray
    ray.shutdown()
