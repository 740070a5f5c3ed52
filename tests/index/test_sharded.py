"""Sharded search in one process: per-shard top-k merged by global position = unsharded search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import asif.anchors as anchors
from asif import AnchorSet, RelativeSpace
from asif.index import AnchorIndex, ShardedIndex, load_shard, merge_topk, saved_shards
from asif.index.sharded import SET_FORMAT
from asif.storage import AnchorFileError
from tests.index.conftest import lattice

N = 600


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _saved(tmp: Path, shards: int, seed: int = 0) -> Path:
    """A lattice anchor set of N pairs saved in ``shards`` shards."""
    pairs = AnchorSet(lattice(N, 32, seed), lattice(N, 16, seed + 1), ids=np.arange(N) * 3)
    return pairs.save(tmp / f"set{shards}", shard_size=-(-N // shards))


def _assert_same(got: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(got[1], ref[1])  # positions
    np.testing.assert_array_equal(got[0], ref[0])  # cosines, to the last bit


@pytest.mark.parametrize("shards", [2, 3, 4])
@pytest.mark.parametrize("k", [1, 17, 250, N])
def test_sharded_search_equals_unsharded(tmp_path: Path, shards: int, k: int) -> None:
    loaded = AnchorSet.load(_saved(tmp_path, shards))
    assert saved_shards(tmp_path / f"set{shards}") == [b.shape[0] for b in loaded.blocks("image")]
    assert len(loaded.blocks("image")) == shards
    queries = lattice(40, 32, seed=7)
    sharded = ShardedIndex.from_anchors(loaded, "image", gpu=False)
    assert sharded.offsets == tuple(
        np.cumsum([0] + [b.shape[0] for b in loaded.blocks("image")])[:-1]
    )
    whole = np.concatenate(loaded.blocks("image"))
    for ref in (AnchorIndex(loaded.blocks("image"), gpu=False), AnchorIndex(whole, gpu=False)):
        _assert_same(sharded.search(queries, k), ref.search(queries, k))
    # lattice cosines tie a lot: the tie rule is what makes these equal
    cos = sharded.search(queries, N)[0]
    assert (cos[:, 1:] == cos[:, :-1]).mean() > 0.5


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_random_vectors_shards_of_a_set_agree_to_the_last_bit(shards: int) -> None:
    rng = np.random.default_rng(shards)
    x = _unit(rng.standard_normal((3000, 24)))
    q = _unit(rng.standard_normal((50, 24)))
    blocks = np.array_split(x, shards)
    _assert_same(
        ShardedIndex.from_blocks(blocks, gpu=False).search(q, 300),
        AnchorIndex(blocks, gpu=False).search(q, 300),
    )


def test_shards_use_the_kernel_of_the_whole_set() -> None:
    """70,000 anchors stream (asif.topk) even though each shard alone would use FAISS."""
    rng = np.random.default_rng(1)
    x = _unit(rng.standard_normal((70_000, 8)))
    q = _unit(rng.standard_normal((20, 8)))
    blocks = np.array_split(x, 4)
    sharded = ShardedIndex.from_blocks(blocks, gpu=False)
    assert {s.kernel for s in sharded.shards} == {"stream"}
    _assert_same(sharded.search(q, 800), AnchorIndex(blocks, gpu=False).search(q, 800))


def test_equal_scores_go_to_the_lower_global_position() -> None:
    row = lattice(1, 32, seed=3)
    others = lattice(50, 32, seed=4)
    # the same anchor at positions 5 (shard 0), 51 (shard 1) and 102 (shard 2)
    x = np.concatenate([others[:5], row, others[5:], row, others[:50], row])
    sharded = ShardedIndex.from_blocks([x[:30], x[30:90], x[90:]], gpu=False)
    cos, pos = sharded.search(row, 3)
    assert pos.tolist() == [[5, 51, 102]]
    assert cos.tolist() == [[1.0, 1.0, 1.0]]


def test_merge_keeps_missing_results_missing() -> None:
    shard_a = (np.array([[0.5, -np.inf]], np.float32), np.array([[0, -1]]))
    shard_b = (np.array([[0.75, 0.25]], np.float32), np.array([[1, 0]]))
    cos, pos = merge_topk([shard_a, shard_b], [0, 100], 4)
    assert pos.tolist() == [[101, 0, 100, -1]]
    assert cos[0, :3].tolist() == [0.75, 0.5, 0.25]


def test_relative_space_over_shards_equals_the_concatenated_set(tmp_path: Path) -> None:
    loaded = AnchorSet.load(_saved(tmp_path, 3))
    whole = AnchorSet(
        np.concatenate(loaded.blocks("image")),
        np.concatenate(loaded.blocks("text")),
        ids=loaded.ids,
    )
    images, texts = lattice(30, 32, seed=11), lattice(20, 16, seed=12)
    for settings in ({"k": 40, "p": 8, "hubness": 0}, {"k": 25, "p": 3.5, "hubness": 0.5}):
        index = {m: ShardedIndex.from_anchors(loaded, m, gpu=False) for m in ("image", "text")}
        sharded = RelativeSpace(**settings, index=index, gpu=False).set_anchors(loaded)
        plain = RelativeSpace(**settings, gpu=False).set_anchors(whole)
        for got, ref in (
            (sharded.transform_images(images), plain.transform_images(images)),
            (sharded.transform_texts(texts), plain.transform_texts(texts)),
        ):
            assert (got != ref).nnz == 0
            np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_array_equal(
            sharded.similarity(images, texts), plain.similarity(images, texts)
        )


def test_add_and_remove_through_the_space(tmp_path: Path) -> None:
    loaded = AnchorSet.load(_saved(tmp_path, 2))
    index = {m: ShardedIndex.from_anchors(loaded, m, gpu=False) for m in ("image", "text")}
    space = RelativeSpace(k=30, p=8, hubness=0, index=index, gpu=False).set_anchors(loaded)
    more = AnchorSet(lattice(40, 32, 21), lattice(40, 16, 22), ids=space.next_id_ + np.arange(40))
    space.add_anchors(more).remove_anchors(loaded.ids[::7])
    assert isinstance(space.snapshot().image_index, ShardedIndex)
    rebuilt = RelativeSpace(k=30, p=8, hubness=0, gpu=False).set_anchors(
        AnchorSet(
            np.asarray(space.anchors_.image_embeddings),
            np.asarray(space.anchors_.text_embeddings),
            ids=space.anchors_.ids,
        )
    )
    q = lattice(25, 32, seed=23)
    assert (space.transform_images(q) != rebuilt.transform_images(q)).nnz == 0


def test_load_shard_reads_one_checked_shard(tmp_path: Path) -> None:
    folder = _saved(tmp_path, 3)
    loaded = AnchorSet.load(folder)
    for j, block in enumerate(loaded.blocks("text")):
        np.testing.assert_array_equal(load_shard(folder, j, "text"), block)
    with pytest.raises(IndexError, match=r"shards 0\.\.2"):
        load_shard(folder, 3, "image")
    target = folder / "shards" / "000001" / "image_embeddings.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(AnchorFileError):
        load_shard(folder, 1, "image")
    load_shard(folder, 1, "image", verify=False)  # the others are not read
    load_shard(folder, 2, "image")


def test_shard_reader_reads_the_anchor_format() -> None:
    assert (anchors.FORMAT, anchors.FORMAT_VERSION) == SET_FORMAT


def test_bad_shards_are_refused() -> None:
    with pytest.raises(ValueError, match="different dimensions"):
        ShardedIndex(
            [AnchorIndex(np.eye(3, dtype=np.float32)), AnchorIndex(np.eye(4, dtype=np.float32))]
        )
    with pytest.raises(TypeError, match="not an index"):
        ShardedIndex([np.eye(3)])
    with pytest.raises(ValueError, match="shape"):
        ShardedIndex.from_blocks([np.eye(3, dtype=np.float32)]).search(np.ones((1, 4)), 1)
