"""AnchorSet and RelativeSpace on disk: round trips, atomic saves, verification, no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace, storage
from asif.storage import AnchorFileError


def _anchors(n: int = 300, seed: int = 0, **kwargs: object) -> AnchorSet:
    rng = np.random.default_rng(seed)
    return AnchorSet(
        rng.normal(size=(n, 24)),
        rng.normal(size=(n, 12)),
        captions=[f"caption {i} \u00e9\n" for i in range(n)],
        ids=np.arange(n) * 3 + 7,
        image_paths=[f"img/{i}.jpg" for i in range(n)],
        **kwargs,  # type: ignore[arg-type]
    )


SHARD = Path("shards", "000000")


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _predictions(space: RelativeSpace) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(99)
    clf = space.zero_shot_classifier(list("abcd"), prompt_embeddings=rng.normal(size=(4, 3, 12)))
    queries = rng.normal(size=(40, 24))
    return clf.decision_function(queries), space.transform_images(queries).toarray()


def test_anchor_round_trip_is_bit_identical(tmp_path: Path) -> None:
    a = _anchors(image_encoder="img-enc", text_encoder="txt-enc")
    b = AnchorSet.load(a.save(tmp_path / "set"))
    assert isinstance(b.image_embeddings, np.memmap)
    for side in ("image_embeddings", "text_embeddings"):
        assert getattr(b, side).dtype == np.float32
        assert getattr(a, side).tobytes() == getattr(b, side).tobytes()
    np.testing.assert_array_equal(a.ids, b.ids)
    assert (b.captions, b.image_paths) == (a.captions, a.image_paths)
    assert (b.image_encoder, b.text_encoder) == ("img-enc", "txt-enc")
    c = AnchorSet.load(tmp_path / "set", mmap=False)
    assert not isinstance(c.image_embeddings, np.memmap)
    assert c.captions is not None and a.captions == c.captions


def test_optional_columns_stay_absent(tmp_path: Path) -> None:
    a = AnchorSet(np.eye(3), np.eye(3))
    b = AnchorSet.load(a.save(tmp_path / "s"))
    assert b.captions is None and b.image_paths is None and b.keys is None
    assert not (tmp_path / "s" / SHARD / "captions.jsonl").exists()
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["n"] == 3 and manifest["format_version"] == 2
    assert manifest["columns"] == ["ids"] and manifest["provenance"] == {}
    assert set(manifest["shards"][0]["files"]) == {
        "image_embeddings.npy",
        "text_embeddings.npy",
        "ids.jsonl",
    }


def test_space_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    space = RelativeSpace(k=20, p=6.0, image_encoder="img-enc", text_encoder="txt-enc")
    space.set_anchors(_anchors())
    before = _predictions(space)
    loaded = RelativeSpace.load(space.save(tmp_path / "space"))
    assert (loaded.k, loaded.p, loaded.index) == (20, 6.0, "Flat")
    assert (loaded.image_encoder, loaded.text_encoder) == ("img-enc", "txt-enc")
    after = _predictions(loaded)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert RelativeSpace.load(tmp_path / "space", k=5).k == 5
    with pytest.raises(TypeError, match="unknown RelativeSpace arguments"):
        RelativeSpace.load(tmp_path / "space", kk=5)


def test_float16_storage_halves_files_and_computes_in_float32(tmp_path: Path) -> None:
    a = _anchors()
    a.save(tmp_path / "f32")
    b = AnchorSet.load(a.save(tmp_path / "f16", dtype="float16"))
    big = (tmp_path / "f32" / SHARD / "image_embeddings.npy").stat().st_size
    small = (tmp_path / "f16" / SHARD / "image_embeddings.npy").stat().st_size
    assert small < 0.51 * big
    assert b.dtype == np.float16 and b.nbytes * 2 == a.nbytes
    np.testing.assert_array_equal(b.image_embeddings, a.image_embeddings.astype(np.float16))
    space = RelativeSpace(k=20).set_anchors(b)
    assert space.snapshot().image_index.vectors().dtype == np.float32
    scores, _ = _predictions(space)
    reference, _ = _predictions(RelativeSpace(k=20).set_anchors(a))
    np.testing.assert_allclose(scores, reference, atol=0.05)
    with pytest.raises(ValueError, match="dtype must be one of"):
        a.save(tmp_path / "x", dtype="int8")


def test_exception_mid_save_leaves_previous_set_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _anchors(seed=1)
    old.save(tmp_path / "set")
    before = _contents(tmp_path / "set")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(storage, "write_jsonl", fail)
    with pytest.raises(OSError, match="injected"):
        _anchors(seed=2).save(tmp_path / "set")
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary folder left
    assert _contents(tmp_path / "set") == before
    loaded = AnchorSet.load(tmp_path / "set", verify=True)
    np.testing.assert_array_equal(loaded.image_embeddings, old.image_embeddings)


def test_exception_at_the_rename_leaves_previous_set_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _anchors(seed=1).save(tmp_path / "set")

    def fail(tmp: Path, target: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "_publish", fail)
    with pytest.raises(KeyboardInterrupt):
        _anchors(seed=2).save(tmp_path / "set")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    np.testing.assert_array_equal(
        AnchorSet.load(tmp_path / "set").image_embeddings, _anchors(seed=1).image_embeddings
    )


def test_save_replaces_a_previous_set(tmp_path: Path) -> None:
    _anchors(seed=1).save(tmp_path / "set")
    new = _anchors(n=50, seed=2)
    new.save(tmp_path / "set")
    assert len(AnchorSet.load(tmp_path / "set", verify=True)) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_save_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        _anchors().save(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_flipped_byte_is_detected_with_verify(tmp_path: Path) -> None:
    folder = _anchors().save(tmp_path / "set")
    path = folder / SHARD / "image_embeddings.npy"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(AnchorFileError, match="checksum"):
        AnchorSet.load(folder, verify=True)
    lazy = AnchorSet.load(folder)  # by default: checked on the first read of the rows
    with pytest.raises(AnchorFileError, match=r"image_embeddings\.npy does not match its checksum"):
        RelativeSpace(k=5).set_anchors(lazy)
    with pytest.raises(AnchorFileError, match="checksum"):
        _ = lazy.image_embeddings
    assert lazy.text_embeddings.shape == (300, 12)  # the other modality is intact
    assert AnchorSet.load(folder, verify=False).image_embeddings.shape == (300, 24)  # opt-out


@pytest.mark.parametrize("verify", [True, False, None])
def test_truncated_and_missing_files_are_detected(tmp_path: Path, verify: bool | None) -> None:
    folder = _anchors().save(tmp_path / "set")
    path = folder / SHARD / "text_embeddings.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(AnchorFileError, match="truncated"):
        AnchorSet.load(folder, verify=verify)
    path.unlink()
    with pytest.raises(AnchorFileError, match="missing"):
        AnchorSet.load(folder, verify=verify)


def test_not_a_saved_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AnchorSet.load(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        AnchorSet.load(tmp_path)
    folder = _anchors().save(tmp_path / "set")
    with pytest.raises(AnchorFileError, match="asif-space"):
        RelativeSpace.load(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    storage.write_json(folder / "manifest.json", manifest)
    with pytest.raises(AnchorFileError, match="upgrade asif"):
        AnchorSet.load(folder)


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    folder = AnchorSet(np.eye(2), np.eye(2)).save(tmp_path / "set")
    path = folder / SHARD / "image_embeddings.npy"
    np.save(path, np.array([[{"evil": 1}, None], [None, None]], dtype=object))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][0]["files"]["image_embeddings.npy"]["bytes"] = path.stat().st_size
    storage.write_json(folder / "manifest.json", manifest)  # re-sealed: only the array is wrong
    with pytest.raises(AnchorFileError, match=r"image_embeddings\.npy holds object"):
        AnchorSet.load(folder, verify=False)


def test_encoder_mismatch_is_refused_and_space_unchanged() -> None:
    space = RelativeSpace(k=5, image_encoder="img-a", text_encoder="txt-a")
    space.set_anchors(_anchors(image_encoder="img-a", text_encoder="txt-a"))
    state = space.snapshot()
    with pytest.raises(ValueError, match=r"made by 'img-b'.*the space is unchanged"):
        space.set_anchors(_anchors(image_encoder="img-b", text_encoder="txt-a"))
    with pytest.raises(ValueError, match="text embeddings were made by 'txt-b'"):
        space.add_anchors(_anchors(n=3, seed=5, text_encoder="txt-b"))
    assert space.snapshot().key == state.key
    # Aliases of one encoder are the same encoder; unnamed anchors are accepted.
    RelativeSpace(k=5).set_anchors(_anchors(image_encoder="efficientnet-lite0"))
    RelativeSpace(k=5, image_encoder="img-a").set_anchors(_anchors())
