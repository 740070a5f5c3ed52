"""``asif build --engine ray``: = the local build of the same shards, resumes after SIGKILL.

One local Ray (2 CPUs) serves the whole session (``ray_local`` in tests/conftest.py); the data
are 48 flickr8k pairs as three WebDataset tars of 16, cut into six units of 8 (two batches of
at most 4 new images each), so units and batches arrive out of order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet
from asif.anchors import completed_shards
from asif.build import build_anchor_set, build_folder_of, write_webdataset
from asif.cli import main

N_PAIRS, PER_TAR, SHARD_SIZE, BATCH_SIZE = 48, 16, 8, 4
UNITS = N_PAIRS // SHARD_SIZE
SETTINGS = {"shard_size": SHARD_SIZE, "batch_size": BATCH_SIZE, "show_progress_bar": False}


@pytest.fixture(scope="module")
def small_tars(
    flickr_pairs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> str:
    return write_webdataset(flickr_pairs[:N_PAIRS], tmp_path_factory.mktemp("wds"), per_tar=PER_TAR)


@pytest.fixture(scope="module")
def local_set(small_tars, image_encoder, text_encoder, tmp_path_factory) -> AnchorSet:  # type: ignore[no-untyped-def]
    """The local engine's build of the same tars (the reference)."""
    target = tmp_path_factory.mktemp("local") / "anchors"
    return build_anchor_set(
        [small_tars], target, image_encoder=image_encoder, text_encoder=text_encoder,
        workers=1, **SETTINGS,
    )  # fmt: skip


def assert_close_sets(a: AnchorSet, b: AnchorSet, atol: float = 1e-6) -> float:
    """Same rows, order, ids, keys and columns; embeddings within ``atol``. Returns the max
    absolute difference of the embeddings."""
    assert len(a) == len(b) == N_PAIRS
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.keys == b.keys and a.captions == b.captions and a.image_paths == b.image_paths
    diff = 0.0
    for x, y in ((a.image_embeddings, b.image_embeddings), (a.text_embeddings, b.text_embeddings)):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)
        diff = max(diff, float(np.abs(np.asarray(x) - np.asarray(y)).max()))
    counts = {k: v for k, v in a.provenance["counts"].items()}
    assert counts == b.provenance["counts"] and counts["shards"] == UNITS
    return diff


def test_a_ray_build_equals_the_local_build(  # type: ignore[no-untyped-def]
    ray_local, small_tars, local_set, image_encoder, text_encoder, tmp_path, capsys
) -> None:
    started = time.perf_counter()
    anchors = build_anchor_set(
        [small_tars], tmp_path / "anchors", image_encoder=image_encoder,
        text_encoder=text_encoder, engine="ray", **SETTINGS,
    )  # fmt: skip
    diff = assert_close_sets(anchors, local_set)
    assert anchors.provenance["build"]["settings"] == local_set.provenance["build"]["settings"]
    assert not build_folder_of(tmp_path / "anchors").exists()
    with capsys.disabled():
        print(f"\nray build: {time.perf_counter() - started:.1f} s, max |ray - local| = {diff:.2e}")


def _command(tars: str, target: Path) -> list[str]:
    return [
        sys.executable,
        *("-c", "import sys; from asif.cli import main; sys.exit(main())"),
        *("build", tars, "-o", str(target), "--engine", "ray", "--quiet"),
        *("--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE)),
    ]


def test_a_killed_ray_build_resumes_to_the_same_set(  # type: ignore[no-untyped-def]
    ray_local, small_tars, local_set, tmp_path
) -> None:
    """SIGKILL ``asif build --engine ray`` (a driver on the session's Ray) once its first unit
    is written; the same build run again writes only the rest, and equals the local build."""
    target = tmp_path / "anchors"
    staging = build_folder_of(target)
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        process = subprocess.Popen(
            _command(small_tars, target), env=env, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if staging.is_dir() and completed_shards(staging):
                    break
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    written = completed_shards(staging)
    assert 0 < len(written) < UNITS  # killed mid-way
    first = Path("shards") / f"{written[0]:06d}" / "ids.jsonl"
    before = (staging / first).stat()
    anchors = build_anchor_set(
        [small_tars], target, image_encoder="default", text_encoder="default", engine="ray",
        **SETTINGS,
    )  # fmt: skip
    after = (target / first).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept
    assert not staging.exists()
    assert_close_sets(anchors, local_set)


def test_an_unknown_engine_is_refused_before_any_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"engine must be one of \('local', 'ray'\)"):
        build_anchor_set([tmp_path / "absent.tar"], tmp_path / "anchors", engine="spark")
    with pytest.raises(SystemExit):
        main(["build", "absent.tar", "-o", str(tmp_path / "a"), "--engine", "spark"])
    assert not (tmp_path / "anchors").exists()


def test_the_ray_engine_without_ray_says_what_to_install(monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    with pytest.raises(ImportError, match=r'pip install "asif\[ray\]"'):
        build_anchor_set([tmp_path / "absent.tar"], tmp_path / "anchors", engine="ray")
    assert main(["build", "absent.tar", "-o", str(tmp_path / "a"), "--engine", "ray"]) == 2
    assert 'pip install "asif[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "anchors").exists() and not (tmp_path / "a").exists()
