"""Shards served by Ray actors: = unsharded search, through RelativeSpace, and hot swap.

One local Ray (2 CPUs) serves the whole session (``ray_local`` in conftest.py); data are small.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.index import AnchorIndex, RayShardedIndex, ShardedIndex
from tests.index.conftest import lattice

pytest.importorskip("ray")

N = 480
LIGHT = {"num_cpus": 0}  # placement only: every actor starts at once on 2 CPUs


def _save(folder: Path, shards: int, seed: int, n: int = N) -> Path:
    pairs = AnchorSet(lattice(n, 32, seed), lattice(n, 16, seed + 1))
    return pairs.save(folder, shard_size=-(-n // shards))


def _same(got: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_actor_shards_equal_unsharded_search(ray_local, tmp_path: Path, shards: int) -> None:
    folder = _save(tmp_path / "set", shards, seed=shards)
    loaded = AnchorSet.load(folder)
    index = RayShardedIndex.from_saved(folder, "image", gpu=False, actor_options=LIGHT)
    try:
        assert (index.n, index.d, len(index.actors)) == (N, 32, shards)
        assert index.offsets == ShardedIndex.from_anchors(loaded, "image", gpu=False).offsets
        assert all(p.startswith("node ") and p.endswith(": cpu") for p in index.placement)
        queries = lattice(70, 32, seed=9)
        whole = AnchorIndex(np.concatenate(loaded.blocks("image")), gpu=False)
        for k in (1, 33, 200, N):
            _same(index.search(queries, k), whole.search(queries, k))
        index.query_batch = 16  # several rounds in flight
        _same(index.search(queries, 50), whole.search(queries, 50))
        np.testing.assert_array_equal(
            index.rows(np.array([N - 1, 0, 200])), whole.rows(np.array([N - 1, 0, 200]))
        )
    finally:
        index.close()


def test_relative_space_over_actors_equals_the_concatenated_set(ray_local, tmp_path) -> None:
    folder = _save(tmp_path / "set", 3, seed=11)
    loaded = AnchorSet.load(folder)
    index = {
        m: RayShardedIndex.from_saved(folder, m, gpu=False, actor_options=LIGHT)
        for m in ("image", "text")
    }
    try:
        whole = AnchorSet(
            np.concatenate(loaded.blocks("image")), np.concatenate(loaded.blocks("text"))
        )
        images, texts = lattice(25, 32, seed=12), lattice(15, 16, seed=13)
        for settings in ({"k": 60, "p": 8, "hubness": 0}, {"k": 30, "p": 3.5, "hubness": 0.5}):
            remote = RelativeSpace(**settings, index=index, gpu=False).set_anchors(loaded)
            plain = RelativeSpace(**settings, gpu=False).set_anchors(whole)
            assert (remote.transform_images(images) != plain.transform_images(images)).nnz == 0
            assert (remote.transform_texts(texts) != plain.transform_texts(texts)).nnz == 0
            np.testing.assert_array_equal(
                remote.similarity(images, texts), plain.similarity(images, texts)
            )
    finally:
        for one in index.values():
            one.close()


def test_random_vectors_agree_to_the_last_bit_under_the_same_threads(ray_local) -> None:
    """70,000 float vectors in 4 actors = one unsharded search run in a Ray task (the same
    single BLAS thread as the actors), bit for bit; each shard streams as the whole set does."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((70_000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((30, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    blocks = np.array_split(x, 4)
    index = RayShardedIndex.from_blocks(blocks, gpu=False, actor_options=LIGHT)
    try:

        @ray_local.remote
        def unsharded(blocks: list[np.ndarray], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return AnchorIndex(blocks, gpu=False).search(q, 800)

        _same(index.search(q, 800), ray_local.get(unsharded.remote(blocks, q)))
    finally:
        index.close()


def test_hot_swap_of_shard_actors_never_mixes_versions(ray_local, tmp_path) -> None:
    """Threads query while a new version's actors start, warm up and take over: every answer
    is all version 1 or all version 2 (anchors, image shards and text shards alike)."""
    folders = [_save(tmp_path / f"v{v}", 2, seed=20 + 10 * v, n=300 + 60 * v) for v in (1, 2)]
    sets = [AnchorSet.load(f) for f in folders]
    images, texts = lattice(12, 32, seed=40), lattice(6, 16, seed=41)
    expected = [
        RelativeSpace(k=40, p=8, hubness=0, gpu=False)
        .set_anchors(AnchorSet(np.asarray(s.image_embeddings), np.asarray(s.text_embeddings)))
        .similarity(images, texts)
        for s in sets
    ]
    assert not np.array_equal(expected[0], expected[1])

    def serve(folder: Path) -> dict[str, RayShardedIndex]:
        return {
            m: RayShardedIndex.from_saved(folder, m, gpu=False, actor_options=LIGHT)
            for m in ("image", "text")
        }

    old = serve(folders[0])
    space = RelativeSpace(k=40, p=8, hubness=0, index=old, gpu=False).set_anchors(sets[0])
    seen: list[list[int]] = [[] for _ in range(3)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def query(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                scores = space.similarity(images, texts)
            except BaseException as error:  # recorded, and fails the test below
                errors.append(error)
                return
            matches = [v for v in (0, 1) if np.array_equal(scores, expected[v])]
            mine.append(matches[0] if matches else -1)

    threads = [threading.Thread(target=query, args=(mine,)) for mine in seen]
    for t in threads:
        t.start()
    new = serve(folders[1])  # started and warmed while version 1 serves
    assert {v for mine in seen for v in mine} == {0}
    space.index = new
    space.set_anchors(sets[1])  # the switch
    switched = sum(map(len, seen))
    deadline = time.monotonic() + 60
    while sum(map(len, seen)) < switched + 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    answers = [v for mine in seen for v in mine]
    assert -1 not in answers, "an answer mixed the versions"
    assert answers.count(0) > 0 and answers.count(1) > 0
    for mine in seen:  # a thread that saw version 2 never sees version 1 again
        assert mine == sorted(mine)
    for one in old.values():
        one.close()  # no search runs on them any more
    assert space.similarity(images, texts).tolist() == expected[1].tolist()
    with pytest.raises(RuntimeError, match="was closed"):
        old["image"].search(images, 5)
    for one in new.values():
        one.close()


def test_close_waits_for_running_searches(ray_local) -> None:
    x = lattice(200, 32)
    index = RayShardedIndex.from_blocks([x[:100], x[100:]], gpu=False, actor_options=LIGHT)
    chunks = index.iter_search(lattice(64, 32, seed=3), 10)
    index.query_batch = 8
    first = next(chunks)  # a search is running (7 more rounds to come)
    closer = threading.Thread(target=index.close)
    closer.start()
    time.sleep(0.3)
    assert closer.is_alive()  # waits for the running search
    rest = list(chunks)
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert first[0].shape == (8, 10) and len(rest) == 7
    with pytest.raises(RuntimeError, match="was closed"):
        index.search(x[:1], 1)


def test_a_shard_that_fails_to_build_is_an_error(ray_local, tmp_path) -> None:
    folder = _save(tmp_path / "set", 2, seed=1)
    target = folder / "shards" / "000001" / "image_embeddings.npy"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"checksum|altered|corrupt"):
        RayShardedIndex.from_saved(folder, "image", gpu=False, actor_options=LIGHT)
