"""Index fixtures: lattice vectors (exact cosines, many ties); ``ray_local`` is in tests/conftest.py."""

from __future__ import annotations

import numpy as np


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
