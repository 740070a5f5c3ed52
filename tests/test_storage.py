"""Anchor sets, spaces and compressed indexes on disk: nothing lost, nothing mixed, nothing outside.

Each test here fails on a defect of issue 17: loads mixing two saves, saves deleting foreign
folders, manifests trusted, temporaries piling up, unverified FAISS files, malformed files raising
the wrong error. The long soak and kill loops are marked ``slow`` (``pytest -m slow``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asif import AnchorSet, RelativeSpace, storage
from asif.anchors import completed_shards, write_manifest, write_shard
from asif.index import AnchorIndex, CompressedIndex
from asif.storage import AnchorFileError

ROOT = Path(__file__).resolve().parents[1]
SHARD = Path("shards", "000000")

# The child processes build the same sets from the same seeds as the tests: one definition.
MAKE_SET = """
import numpy as np
from asif import AnchorSet

def make_set(n, seed, d=(24, 12)):
    rng = np.random.default_rng(seed)
    return AnchorSet(
        rng.normal(size=(n, d[0])),
        rng.normal(size=(n, d[1])),
        captions=[f"s{seed} caption {i} \\u00e9" for i in range(n)],
        ids=np.arange(n) * 7 + seed,
        image_paths=[f"img/{seed}/{i}.jpg" for i in range(n)],
        keys=[f"{seed}-{i:06d}" for i in range(n)],
        image_encoder=f"img-{seed}",
        text_encoder="txt",
        provenance={"seed": seed, "sources": ["synthetic"]},
        hub_statistics={("image", 5): np.arange(n) % 4, ("text", 3): np.ones(n, int)},
    )
"""
_namespace: dict[str, Any] = {}
exec(MAKE_SET, _namespace)
make_set = _namespace["make_set"]


def assert_same(a: AnchorSet, b: AnchorSet, *, metadata: bool = True) -> None:
    """Everything a set holds is equal, bit for bit."""
    np.testing.assert_array_equal(a.ids, b.ids)
    for side in ("image_embeddings", "text_embeddings"):
        assert getattr(a, side).tobytes() == getattr(b, side).tobytes()
    assert (a.captions, a.image_paths, a.keys) == (b.captions, b.image_paths, b.keys)
    if metadata:
        assert (a.image_encoder, a.text_encoder, a.provenance) == (
            b.image_encoder,
            b.text_encoder,
            b.provenance,
        )
        assert a.hub_statistics.keys() == b.hub_statistics.keys()
        for key, counts in a.hub_statistics.items():
            np.testing.assert_array_equal(counts, b.hub_statistics[key])


def load_all(folder: Path, verify: bool | None = None) -> AnchorSet:
    """Load and read every row (so lazy checks run too)."""
    anchors = AnchorSet.load(folder, verify=verify)
    _ = anchors.image_embeddings, anchors.text_embeddings
    return anchors


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / storage.MANIFEST).read_text(encoding="utf-8"))


def reseal(folder: Path, document: dict[str, Any]) -> None:
    """Write an edited manifest with a valid checksum, as a careful hand edit would."""
    storage.write_json(folder / storage.MANIFEST, document)


def rewrite(folder: Path, relative: str | Path, data: bytes) -> None:
    """Replace one file and update its record in the manifest: only its content is wrong."""
    path = folder / relative
    path.write_bytes(data)
    checksum = storage.Checksum()
    checksum.update(data)
    record = {"bytes": len(data), "checksum": checksum.value()}
    document = manifest(folder)
    parts = Path(relative).parts
    if parts[0] == "shards":
        document["shards"][int(parts[1])]["files"][parts[2]] = record
    else:
        (entry,) = [
            h for h in document["hub_statistics"] if f"{h['modality']}-k{h['k']}.npy" == parts[1]
        ]
        entry.update(record)
    reseal(folder, document)


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def child(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", MAKE_SET + code], env=env, cwd=ROOT)


# --------------------------------------------------------------------------- the v2 format
def test_multi_shard_round_trip_maps_every_shard_and_searches_in_place(tmp_path: Path) -> None:
    a = make_set(30, seed=1)
    folder = a.save(tmp_path / "set", shard_size=7)
    assert sorted(p.name for p in (folder / "shards").iterdir()) == [f"{i:06d}" for i in range(5)]
    b = AnchorSet.load(folder)
    blocks = b.blocks("image")
    assert [x.shape[0] for x in blocks] == [7, 7, 7, 7, 2]
    assert all(isinstance(x, np.memmap) for x in blocks)
    assert_same(a, b)
    queries = np.random.default_rng(5).normal(size=(6, 24)).astype(np.float32)
    for got, want in zip(
        AnchorIndex(blocks).search(queries, 9),
        AnchorIndex(a.image_embeddings).search(queries, 9),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    space = RelativeSpace(k=9, hubness=0, image_encoder="img-1", text_encoder="txt")
    single = space.set_anchors(a).transform_images(queries).toarray()
    sharded = space.set_anchors(b).transform_images(queries).toarray()
    np.testing.assert_array_equal(single, sharded)


def test_manifest_is_a_readable_card(tmp_path: Path) -> None:
    folder = make_set(10, seed=2).save(tmp_path / "set", dtype="float16", shard_size=4)
    document = manifest(folder)
    assert document["format"] == "asif-anchors" and document["format_version"] == 2
    assert (document["n"], document["dtype"], document["image_encoder"]) == (10, "float16", "img-2")
    assert document["columns"] == ["ids", "captions", "image_paths", "keys"]
    assert [s["n"] for s in document["shards"]] == [4, 4, 2]
    assert document["provenance"] == {"seed": 2, "sources": ["synthetic"]}
    assert {(h["modality"], h["k"]) for h in document["hub_statistics"]} == {
        ("image", 5),
        ("text", 3),
    }
    assert document["checksum"].startswith(storage.CHECKSUM + ":")
    loaded = AnchorSet.load(folder)
    assert loaded.dtype == np.float16 and loaded.hub_statistics[("image", 5)].dtype == np.int64


def test_select_and_concat_carry_keys_and_drop_hub_statistics() -> None:
    a = make_set(6, seed=3)
    b = a.select([4, 1])
    assert b.keys == ["3-000004", "3-000001"] and b.hub_statistics == {}
    assert b.provenance == a.provenance
    other = make_set(2, seed=100)
    other.image_encoder = a.image_encoder
    c = a.concat(other)
    assert c.keys[-1] == "100-000001" and c.hub_statistics == {}
    assert c.provenance == {"concat": [a.provenance, {"seed": 100, "sources": ["synthetic"]}]}


def _write_v1(folder: Path, a: AnchorSet) -> None:
    """A set as format 1 wrote it (no shards, sha256 records, an unsealed manifest)."""
    import hashlib

    folder.mkdir()
    files = {}
    for name, data in (
        ("image_embeddings.npy", npy_bytes(a.image_embeddings)),
        ("text_embeddings.npy", npy_bytes(a.text_embeddings)),
        ("ids.jsonl", "".join(f"{i}\n" for i in a.ids.tolist()).encode()),
        ("captions.jsonl", "".join(json.dumps(c) + "\n" for c in a.captions).encode()),
    ):
        (folder / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    document = {
        "format": "asif-anchors",
        "format_version": 1,
        "n": len(a),
        "image_dim": a.image_dim,
        "text_dim": a.text_dim,
        "dtype": "float32",
        "image_encoder": "old-img",
        "text_encoder": None,
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(document))


def test_format_1_folders_still_load_and_are_checked(tmp_path: Path) -> None:
    a = make_set(12, seed=4)
    _write_v1(tmp_path / "old", a)
    b = load_all(tmp_path / "old", verify=True)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.image_embeddings.tobytes() == b.image_embeddings.tobytes()
    assert b.captions == a.captions and b.image_paths is None and b.image_encoder == "old-img"
    path = tmp_path / "old" / "text_embeddings.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(AnchorFileError, match=r"text_embeddings\.npy does not match its checksum"):
        load_all(tmp_path / "old")
    b.save(tmp_path / "old")  # an old set is replaced by a new one
    assert manifest(tmp_path / "old")["format_version"] == 2


# --------------------------------------------------------------------------- builders' shards
def test_shards_written_one_at_a_time_in_any_order_load_as_one_set(tmp_path: Path) -> None:
    a = make_set(9, seed=5)
    staging = tmp_path / "staging"
    for index in (2, 0, 1):
        rows = slice(3 * index, 3 * index + 3)
        write_shard(
            staging,
            index,
            image_embeddings=a.image_embeddings[rows],
            text_embeddings=iter([a.text_embeddings[rows][:1], a.text_embeddings[rows][1:]]),
            ids=a.ids[rows],
            captions=a.captions[rows],
            image_paths=a.image_paths[rows],
            keys=a.keys[rows],
        )
    assert completed_shards(staging) == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="build did not finish"):
        AnchorSet.load(staging)
    with pytest.raises(FileExistsError, match="another build wrote it"):
        write_shard(
            staging,
            1,
            image_embeddings=a.image_embeddings[:1],
            text_embeddings=a.text_embeddings[:1],
            ids=[999],
        )
    write_manifest(
        staging,
        image_encoder=a.image_encoder,
        text_encoder=a.text_encoder,
        provenance=a.provenance,
        hub_statistics=a.hub_statistics,
    )
    with pytest.raises(FileExistsError, match="finished"):
        write_manifest(staging)
    a.select([0]).save(tmp_path / "anchors")
    storage.replace_folder(staging, tmp_path / "anchors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anchors"]
    assert_same(a, load_all(tmp_path / "anchors", verify=True))


def test_write_manifest_refuses_gaps_disagreements_and_repeated_ids(tmp_path: Path) -> None:
    x = np.eye(4, dtype=np.float32)
    write_shard(tmp_path / "gap", 1, image_embeddings=x, text_embeddings=x, ids=range(4))
    with pytest.raises(ValueError, match="lacks shards"):
        write_manifest(tmp_path / "gap")
    write_shard(tmp_path / "gap", 0, image_embeddings=x, text_embeddings=x, ids=range(4, 8))
    with pytest.raises(ValueError, match=r"lacks shards \['000002'\]"):
        write_manifest(tmp_path / "gap", shards=3)  # the builder knows how many it wrote
    with pytest.raises(ValueError, match="more than the 1 expected"):
        write_manifest(tmp_path / "gap", shards=1)
    assert write_manifest(tmp_path / "gap", shards=2)["n"] == 8
    for index, ids in enumerate(([0, 1, 2, 3], [3, 4, 5, 6])):
        write_shard(tmp_path / "dup", index, image_embeddings=x, text_embeddings=x, ids=ids)
    with pytest.raises(ValueError, match=r"\[3\] repeat"):
        write_manifest(tmp_path / "dup")
    write_shard(tmp_path / "dims", 0, image_embeddings=x, text_embeddings=x, ids=range(4))
    write_shard(
        tmp_path / "dims",
        1,
        image_embeddings=x[:, :3] * 0 + [1, 0, 0],
        text_embeddings=x,
        ids=range(4, 8),
    )
    with pytest.raises(ValueError, match="disagree"):
        write_manifest(tmp_path / "dims")
    with pytest.raises(ValueError, match="not L2-normalised"):
        write_shard(tmp_path / "bad", 0, image_embeddings=2 * x, text_embeddings=x, ids=range(4))
    with pytest.raises(ValueError, match="not L2-normalised"):
        write_shard(
            tmp_path / "bad", 0, image_embeddings=x * np.nan, text_embeddings=x, ids=range(4)
        )
    assert completed_shards(tmp_path / "bad") == []
    assert [p.name for p in (tmp_path / "bad" / "shards").iterdir()] == []  # nothing half-written


def test_a_damaged_shard_is_not_counted_as_complete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = np.eye(2, dtype=np.float32)
    for index in range(2):
        write_shard(
            tmp_path, index, image_embeddings=x, text_embeddings=x, ids=[2 * index, 2 * index + 1]
        )
    document = tmp_path / "shards" / "000001" / "shard.json"
    document.write_text(document.read_text().replace('"n": 2', '"n": 3'))
    with caplog.at_level(logging.WARNING, logger="asif"):
        assert completed_shards(tmp_path) == [0]
    assert "000001 is damaged" in caplog.text


# --------------------------------------------------------------------------- what save replaces
def test_save_refuses_a_folder_that_merely_has_a_manifest(tmp_path: Path) -> None:
    web = tmp_path / "site"
    (web / "src").mkdir(parents=True)
    (web / "index.html").write_text("<html>")
    (web / "src" / "app.js").write_text("x")
    (web / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    for save in (
        lambda: make_set(3, seed=1).save(web),
        lambda: RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3))).save(web),
        lambda: CompressedIndex.build([np.eye(4, dtype=np.float32)], "Flat", gpu=False).save(web),
    ):
        with pytest.raises(FileExistsError, match="not a folder written by asif"):
            save()
    assert sorted(str(p.relative_to(web)) for p in web.rglob("*")) == [
        "index.html",
        "manifest.json",
        "src",
        "src/app.js",
    ]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        make_set(3, seed=1).save(tmp_path / "file")
    make_set(3, seed=1).save(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(FileExistsError, match="symbolic link"):
        make_set(3, seed=2).save(tmp_path / "link")
    (tmp_path / "empty").mkdir()
    make_set(3, seed=2).save(tmp_path / "empty")  # an empty folder is fine
    make_set(4, seed=2).save(tmp_path / "real")  # and so is an asif folder
    assert len(AnchorSet.load(tmp_path / "link")) == 4


# --------------------------------------------------------------------------- the manifest is not trusted
@pytest.mark.parametrize(
    "name",
    ["../outside.npy", "/etc/passwd", "image_embeddings.npy/../../x", ".hidden", "extra.jsonl"],
)
def test_manifest_file_lists_name_only_the_format_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    folder = make_set(5, seed=1).save(tmp_path / "set")
    document = manifest(folder)
    files = document["shards"][0]["files"]
    files[name] = files.pop("text_embeddings.npy")
    reseal(folder, document)
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    with pytest.raises(AnchorFileError, match="must list exactly"):
        AnchorSet.load(folder)
    monkeypatch.undo()
    assert not any(".." in p or p.startswith("/etc") or "outside" in p for p in opened)


def test_a_required_file_left_out_of_the_manifest_is_refused(tmp_path: Path) -> None:
    folder = make_set(5, seed=1).save(tmp_path / "set")
    document = manifest(folder)
    del document["shards"][0]["files"]["ids.jsonl"]
    reseal(folder, document)
    with pytest.raises(AnchorFileError, match="must list exactly"):
        AnchorSet.load(folder, verify=True)


@pytest.mark.parametrize(
    "target", ["shards", "shards/000000", "shards/000000/ids.jsonl", "hub_statistics/text-k3.npy"]
)
def test_symbolic_links_inside_the_folder_are_refused(tmp_path: Path, target: str) -> None:
    folder = make_set(5, seed=1).save(tmp_path / "set")
    real = folder / target
    moved = tmp_path / "elsewhere"
    real.rename(moved)
    real.symlink_to(moved)
    with pytest.raises(AnchorFileError, match="symbolic link"):
        load_all(folder, verify=False)


def test_load_opens_each_file_once_through_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_set(8, seed=1).save(tmp_path / "set", shard_size=3)
    opened: list[tuple[str, bool]] = []
    real_open = os.open

    def spy(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> int:
        opened.append((os.fsdecode(path), dir_fd is not None))
        return real_open(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    load_all(folder, verify=True)
    monkeypatch.undo()
    names = [name for name, _ in opened]
    assert names[0] == str(folder) and all(relative for _, relative in opened[1:])
    files = [n for n in names[1:] if "." in n]
    assert files.count(storage.MANIFEST) == 1
    for name in ("image_embeddings.npy", "text_embeddings.npy", "ids.jsonl", "keys.jsonl"):
        assert files.count(name) == 3  # once in each of the three shards


# --------------------------------------------------------------------------- every file damaged
def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _damage(path: Path, how: str, tmp_path: Path) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(data))
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "delete":
        path.unlink()
    else:  # the same bytes, behind a link
        copy = tmp_path / "copy"
        copy.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(copy)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "symlink"])
@pytest.mark.parametrize("verify", [None, True])
def test_every_damaged_file_is_an_anchor_file_error(
    tmp_path: Path, how: str, verify: bool | None
) -> None:
    original = make_set(6, seed=1)
    clean = original.save(tmp_path / "clean", shard_size=4)
    for relative in _files(clean):
        folder = tmp_path / "damaged"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(clean, folder)
        _damage(folder / relative, how, tmp_path)
        if relative.endswith("shard.json"):  # a builder's record, not read by load
            assert_same(original, load_all(folder, verify=verify))
            continue
        expected = (
            FileNotFoundError
            if relative == storage.MANIFEST and how == "delete"
            else AnchorFileError
        )
        with pytest.raises(expected, match=os.path.basename(relative).replace(".", r"\.")):
            load_all(folder, verify=verify)
        (tmp_path / "copy").unlink(missing_ok=True)


def test_single_bit_flips_in_the_manifest_are_all_detected(tmp_path: Path) -> None:
    folder = make_set(4, seed=1).save(tmp_path / "set")
    data = (folder / storage.MANIFEST).read_bytes()
    rng = np.random.default_rng(0)
    for bit in rng.choice(8 * len(data), size=300, replace=False):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        (folder / storage.MANIFEST).write_bytes(bytes(flipped))
        with pytest.raises(AnchorFileError):
            AnchorSet.load(folder)


# --------------------------------------------------------------------------- manifest fuzzing
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += _paths(item, (*prefix, i))
    return paths


@pytest.fixture(scope="module")
def fuzz_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnchorSet, Path]:
    original = make_set(5, seed=8)
    return original, original.save(tmp_path_factory.mktemp("fuzz") / "set", shard_size=3)


def _outcome_is_clean(original: AnchorSet, folder: Path) -> None:
    try:
        loaded = load_all(folder, verify=True)
    except AnchorFileError:
        return
    assert_same(original, loaded, metadata=False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_manifests_load_the_right_data_or_raise_anchor_file_error(
    fuzz_source: tuple[AnchorSet, Path],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    original, source = fuzz_source
    folder = tmp_path_factory.mktemp("case") / "set"
    shutil.copytree(source, folder)
    document = manifest(folder)
    path = data.draw(st.sampled_from(_paths(document)[1:]), label="path")
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "replace" or not isinstance(parent, (dict, list)):
        parent[path[-1]] = data.draw(_json, label="value")
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6), label="key")] = data.draw(_json, label="value")
    else:
        parent.append(data.draw(_json, label="value"))
    resealed = data.draw(st.booleans(), label="resealed")
    if resealed:
        reseal(folder, document)
    else:
        (folder / storage.MANIFEST).write_text(json.dumps(document))
    _outcome_is_clean(original, folder)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_manifest_bytes_raise_anchor_file_error(
    fuzz_source: tuple[AnchorSet, Path],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    original, source = fuzz_source
    folder = tmp_path_factory.mktemp("bytes") / "set"
    shutil.copytree(source, folder)
    raw = bytearray((folder / storage.MANIFEST).read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at : at + data.draw(st.integers(0, 4))] = data.draw(st.binary(min_size=0, max_size=4))
    (folder / storage.MANIFEST).write_bytes(bytes(raw))
    _outcome_is_clean(original, folder)


# --------------------------------------------------------------------------- load refuses what the constructor does
def _bad_ids(folder: Path, ids: list[Any]) -> None:
    rewrite(folder, SHARD / "ids.jsonl", "".join(json.dumps(i) + "\n" for i in ids).encode())


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0, 1, 1], "repeat"),
        ([0, 1, 2.5], "integers"),
        ([0, 1, 2.0], "integers"),
        ([0, 1, True], "integers"),
        ([0, 1, [2]], "integers"),
        ([0, 1, "2"], "integers"),
        ([0, 1, None], "integers"),
        ([0, 1, 2**63], "int64 range"),
        ([0, 1, -(2**63) - 1], "int64 range"),
    ],
)
def test_loaded_ids_are_checked_like_the_constructors(
    tmp_path: Path, values: list[Any], match: str
) -> None:
    folder = make_set(3, seed=1).save(tmp_path / "set")
    _bad_ids(folder, values)
    with pytest.raises(AnchorFileError, match=match):
        AnchorSet.load(folder)


def test_ids_repeated_across_shards_are_refused(tmp_path: Path) -> None:
    folder = make_set(4, seed=1).save(tmp_path / "set", shard_size=2)
    rewrite(folder, Path("shards", "000001", "ids.jsonl"), b"1\n8\n")
    with pytest.raises(AnchorFileError, match=r"\[1, 8\] repeat"):
        AnchorSet.load(folder)


@pytest.mark.parametrize("column", ["captions", "image_paths", "keys"])
@pytest.mark.parametrize("value", [123, None, ["a"], {"a": 1}])
def test_loaded_strings_are_strings(tmp_path: Path, column: str, value: Any) -> None:
    folder = make_set(2, seed=1).save(tmp_path / "set")
    rewrite(folder, SHARD / f"{column}.jsonl", ('"ok"\n' + json.dumps(value) + "\n").encode())
    with pytest.raises(AnchorFileError, match="must be a string"):
        AnchorSet.load(folder)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'"ok"\n"\xff\xfe"\n', "not UTF-8"),
        (b'"ok"\n"unterminated\n', "not valid JSONL"),
        (b'"ok"\n', "1 values"),
        (b'"ok"\n\n"x"\n', "not valid JSONL"),
        (b'"ok"\nNaN\n', "not valid JSONL"),
        (b"[" * 100000 + b"\n", "not valid JSONL"),
    ],
)
def test_malformed_jsonl_is_an_anchor_file_error(tmp_path: Path, data: bytes, match: str) -> None:
    folder = make_set(2, seed=1).save(tmp_path / "set")
    rewrite(folder, SHARD / "captions.jsonl", data)
    with pytest.raises(AnchorFileError, match=match):
        AnchorSet.load(folder)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("row", [np.nan, np.inf, 0.0])
def test_loaded_rows_must_be_finite_and_non_zero_where_verified(
    tmp_path: Path, dtype: str, row: float
) -> None:
    a = make_set(4, seed=1)
    folder = a.save(tmp_path / "set", dtype=dtype)
    bad = a.text_embeddings.astype(dtype)
    bad[2] = row
    rewrite(folder, SHARD / "text_embeddings.npy", npy_bytes(bad))
    with pytest.raises(AnchorFileError, match=r"rows \[2\].*not unit vectors"):
        AnchorSet.load(folder, verify=True)
    lazy = AnchorSet.load(folder)
    with pytest.raises(AnchorFileError, match="not unit vectors"):
        lazy.blocks("text")
    AnchorSet.load(folder, verify=False).blocks("text")  # the opt-out trusts the file


def test_n_zero_and_mismatched_counts_are_refused(tmp_path: Path) -> None:
    folder = make_set(3, seed=1).save(tmp_path / "set")
    for edit, match in (
        (lambda d: d.update(n=0), "'n' must be a positive integer"),
        (lambda d: d.update(n=4), "n = 4 but its shards hold 3"),
        (lambda d: d.update(n=True), "'n' must be a positive integer"),
        (lambda d: d["shards"][0].update(n=2), "holds float32 \\(3, 24\\)"),
        (lambda d: d.update(image_dim=25), "holds float32 \\(3, 24\\)"),
        (lambda d: d.update(dtype="float64"), "dtype"),
        (lambda d: d["shards"][0].update(name="../000000"), "must be named 000000"),
        (lambda d: d.update(columns=["captions"]), "'columns'"),
        (lambda d: d.update(provenance=[1]), "provenance"),
        (lambda d: d["hub_statistics"][0].update(k="5"), "'k'"),
        (lambda d: d.update(image_encoder=7), "image_encoder"),
        (lambda d: d.update(shards=[]), "'shards'"),
        (lambda d: d.update(format_version="2"), "format_version"),
    ):
        document = manifest(folder)
        edit(document)
        original = (folder / storage.MANIFEST).read_bytes()
        reseal(folder, document)
        with pytest.raises(AnchorFileError, match=match):
            load_all(folder)
        (folder / storage.MANIFEST).write_bytes(original)


def test_malformed_npy_headers_are_anchor_file_errors(tmp_path: Path) -> None:
    a = make_set(3, seed=1)
    folder = a.save(tmp_path / "set")
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 12), 'x': '''"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    crafted = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    for data in (
        crafted
        + a.text_embeddings.tobytes(),  # an unterminated string: tokenize.TokenError in numpy
        b"\x93NUMPY\x09\x00" + crafted[8:],
        b"not an npy file at all",
        npy_bytes(np.asfortranarray(a.text_embeddings)),
        npy_bytes(a.text_embeddings.astype(">f4")),
        npy_bytes(a.text_embeddings) + b"trailing",
    ):
        rewrite(folder, SHARD / "text_embeddings.npy", data)
        with pytest.raises(AnchorFileError, match=r"text_embeddings\.npy"):
            AnchorSet.load(folder, verify=False)


def test_a_declared_size_beyond_memory_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_set(64, seed=1).save(tmp_path / "set")
    monkeypatch.setattr(storage, "_available_memory", lambda: 1000)
    allocated: list[Any] = []
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocated.append(a) or real_empty(*a, **k))
    with pytest.raises(MemoryError, match="mmap=True"):
        AnchorSet.load(folder, mmap=False)
    assert allocated == []
    monkeypatch.undo()
    assert len(AnchorSet.load(folder)) == 64  # mapped, it needs no memory up front


def test_space_manifests_are_sealed_and_need_params(tmp_path: Path) -> None:
    space = RelativeSpace(k=3, image_encoder="img-1", text_encoder="txt").set_anchors(
        make_set(5, seed=1)
    )
    folder = space.save(tmp_path / "space")
    document = manifest(folder)
    assert document["format_version"] == 2 and "checksum" in document
    for edit, match in (
        (lambda d: d.pop("params"), "no 'params'"),
        (lambda d: d["params"].update(k="3"), "invalid params"),
        (lambda d: d["params"].update(k=2.5), "invalid params"),
        (lambda d: d.update(image_encoder=["x"]), "image_encoder"),
    ):
        edited = json.loads(json.dumps(document))
        edit(edited)
        reseal(folder, edited)
        with pytest.raises(AnchorFileError, match=match):
            RelativeSpace.load(folder)
    (folder / storage.MANIFEST).write_text(json.dumps(document).replace('"k": 3', '"k": 4'))
    with pytest.raises(AnchorFileError, match="own checksum"):
        RelativeSpace.load(folder)


def test_constructor_and_select_refuse_what_they_cannot_hold() -> None:
    x = np.eye(3)
    with pytest.raises(ValueError, match="fit in int64"):
        AnchorSet(x, x, ids=np.array([1, 2, 2**63 + 5], dtype=np.uint64))
    with pytest.raises(ValueError, match="shape"):
        AnchorSet(x, x, ids=[[0], [1], [2]])
    with pytest.raises(ValueError, match="integers"):
        AnchorSet(x, x, ids=[0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="captions must be strings"):
        AnchorSet(x, x, captions=["a", 2, "c"])
    with pytest.raises(TypeError, match="keys must be strings"):
        AnchorSet(x, x, keys=["a", None, "c"])
    assert AnchorSet(x, x, image_paths=[Path("a.jpg"), "b", "c"]).image_paths[0] == "a.jpg"
    with pytest.raises(ValueError, match="JSON"):
        AnchorSet(x, x, provenance={"when": object()})
    with pytest.raises(ValueError, match="hub_statistics"):
        AnchorSet(x, x, hub_statistics={("image", 5): [1.5, 2, 3]})
    a = AnchorSet(x, x)
    for rows in ([3], [-1], [0, 5]):
        with pytest.raises(ValueError, match="outside"):
            a.select(rows)
    with pytest.raises(ValueError, match="integer row positions"):
        a.select([0.5])


# --------------------------------------------------------------------------- stale temporaries
def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = storage._HOST
    dead, alive = _dead_pid(), os.getppid()
    stale = [
        tmp_path / f".set.tmp-{host}-{dead}-0123abcd",
        tmp_path / f".set.old-{host}-{dead}-89abcdef",
    ]
    kept = [
        tmp_path / f".set.tmp-{host}-{alive}-0123abcd",  # a writer still running
        tmp_path / f".set.tmp-otherhost-{dead}-0123abcd",  # another machine's writer
        tmp_path / f".other.tmp-{host}-{dead}-0123abcd",  # another target's
        tmp_path / ".set.tmp-notours",
    ]
    for path in stale + kept:
        path.mkdir()
        (path / "big.npy").write_bytes(b"x" * 1000)
    with caplog.at_level(logging.WARNING, logger="asif"):
        make_set(3, seed=1).save(tmp_path / "set")
    assert all(not p.exists() for p in stale) and all(p.exists() for p in kept)
    assert caplog.text.count("a writer that died") == 2 and str(stale[0]) in caplog.text
    shard_tmp = tmp_path / "b" / "shards" / f".000000.tmp-{host}-{dead}-0123abcd"
    shard_tmp.mkdir(parents=True)
    x = np.eye(2, dtype=np.float32)
    write_shard(tmp_path / "b", 0, image_embeddings=x, text_embeddings=x, ids=[0, 1])
    assert not shard_tmp.exists()


# --------------------------------------------------------------------------- load during save
def test_a_load_that_sees_its_folder_replaced_returns_one_complete_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = make_set(40, seed=1), make_set(25, seed=2)
    old.save(tmp_path / "set", shard_size=10)
    real_npy = storage.OpenFile.npy
    calls = []

    def npy_then_save(self: storage.OpenFile, *args: Any, **kwargs: Any) -> storage.NpyFile:
        calls.append(self.path)
        if len(calls) == 3:  # mid-load: another writer replaces the folder and deletes the old one
            new.save(tmp_path / "set", shard_size=10)
        return real_npy(self, *args, **kwargs)

    monkeypatch.setattr(storage.OpenFile, "npy", npy_then_save)
    loaded = load_all(tmp_path / "set", verify=True)
    monkeypatch.undo()
    assert_same(new, loaded)
    assert len(calls) > 3  # it started again on the new version


def test_a_space_load_reads_manifest_and_anchors_of_one_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_set(10, seed=1), make_set(12, seed=2)
    RelativeSpace(k=3, image_encoder="img-1", text_encoder="txt").set_anchors(a).save(
        tmp_path / "s"
    )
    later = RelativeSpace(k=4, image_encoder="img-2", text_encoder="txt").set_anchors(b)
    real = storage.read_manifest
    done = []

    def read_then_save(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            later.save(tmp_path / "s")
        return result

    monkeypatch.setattr(storage, "read_manifest", read_then_save)
    loaded = RelativeSpace.load(tmp_path / "s")
    monkeypatch.undo()
    assert (loaded.k, len(loaded.anchors_)) in ((3, 10), (4, 12))


_SAVER = """
import sys, time
from pathlib import Path
path, seconds, count = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
sets = [make_set(3000, seed=1), make_set(2000, seed=2)]
end, i = time.time() + seconds, 0
while time.time() < end:
    sets[i % 2].save(path, shard_size=1024)
    i += 1
    count.write_text(str(i))
"""


def _load_while_saving(
    tmp_path: Path, loads: int, saves: int, seconds: float
) -> tuple[int, int, int]:
    """(loads, mixed loads, saves): load until ``loads`` loads and ``saves`` saves are done (or
    ``seconds`` pass) while a child process saves two sets in turn over one path."""
    sets = {3000: make_set(3000, seed=1), 2000: make_set(2000, seed=2)}
    path, count = tmp_path / "set", tmp_path / "saves"
    sets[3000].save(path, shard_size=1024)
    saver = subprocess.Popen(
        [sys.executable, "-c", MAKE_SET + _SAVER, str(path), str(seconds), str(count)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    def saved() -> int:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(count.read_text())
        return 0

    done = mixed = 0
    try:
        while saver.poll() is None:
            loaded = load_all(path, verify=done % 2 == 0)
            try:
                assert_same(sets[len(loaded)], loaded)
            except (AssertionError, KeyError):
                mixed += 1
            done += 1
            if done >= loads and saved() >= saves:
                saver.terminate()
    finally:
        saver.wait()
    print(f"{done} loads, {mixed} mixed, while {saved()} saves replaced the set")
    return done, mixed, saved()


def test_loads_while_another_process_saves_are_never_mixed(tmp_path: Path) -> None:
    done, mixed, saves = _load_while_saving(tmp_path, loads=40, saves=3, seconds=20)
    assert mixed == 0 and done >= 40 and saves >= 3


@pytest.mark.slow
def test_soak_500_loads_while_another_process_saves(tmp_path: Path) -> None:
    done, mixed, saves = _load_while_saving(tmp_path, loads=600, saves=100, seconds=400)
    assert mixed == 0 and done >= 500 and saves >= 100


# --------------------------------------------------------------------------- SIGKILL during save
_KILLED_SAVER = """
import sys
from pathlib import Path
make_set(20000, seed=2, d=(256, 128)).save(Path(sys.argv[1]), shard_size=4096)
"""


def _kill_during_saves(tmp_path: Path, trials: int) -> None:
    old, new = make_set(5000, seed=1, d=(256, 128)), make_set(20000, seed=2, d=(256, 128))
    path = tmp_path / "set"
    old.save(path)
    rng = np.random.default_rng(0)
    for _ in range(trials):
        process = subprocess.Popen(
            [sys.executable, "-c", MAKE_SET + _KILLED_SAVER, str(path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        time.sleep(rng.uniform(0.3, 2.5))  # interpreter start ~0.5 s, then the save
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        loaded = load_all(path, verify=True)
        assert_same(new if len(loaded) == len(new) else old, loaded)
        leftovers = [p for p in tmp_path.iterdir() if p.name != "set"]
        assert len(leftovers) <= 1  # at most the killed writer's own temporary
        (new if len(loaded) == len(new) else old).save(path)  # cleans it
        assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_sigkill_during_save_leaves_the_old_set_or_the_new_one(tmp_path: Path) -> None:
    _kill_during_saves(tmp_path, trials=1)


@pytest.mark.slow
def test_soak_sigkill_at_random_points_during_saves(tmp_path: Path) -> None:
    _kill_during_saves(tmp_path, trials=25)


# --------------------------------------------------------------------------- CompressedIndex
def _index(n: int = 600, seed: int = 0) -> tuple[CompressedIndex, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return CompressedIndex.build([x], "IVF4,SQ8;nprobe=4", dims=12, gpu=False), x


def test_compressed_index_saves_a_verified_folder(tmp_path: Path) -> None:
    index, x = _index()
    folder = index.save(tmp_path / "ix")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "manifest.json"]
    loaded = CompressedIndex.load(folder, gpu=False)
    assert (loaded.n, loaded.d, loaded.dims, loaded.factory_) == (600, 16, 12, "IVF4,SQ8;nprobe=4")
    for got, want in zip(loaded.search(x[:5], 7), index.search(x[:5], 7), strict=True):
        np.testing.assert_array_equal(got, want)
    _index(300, seed=1)[0].save(folder)  # replaced whole: never new index with old metadata
    assert CompressedIndex.load(folder, gpu=False).n == 300


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "symlink"])
def test_damaged_compressed_index_files_are_refused(tmp_path: Path, how: str) -> None:
    index, _ = _index()
    for name in ("index.faiss", "manifest.json"):
        shutil.rmtree(tmp_path / "ix", ignore_errors=True)
        folder = index.save(tmp_path / "ix")
        _damage(folder / name, how, tmp_path)
        expected = (
            FileNotFoundError if (name, how) == ("manifest.json", "delete") else AnchorFileError
        )
        with pytest.raises(expected, match=name.replace(".", r"\.")):
            CompressedIndex.load(folder, gpu=False)
        (tmp_path / "copy").unlink(missing_ok=True)


def test_every_flipped_byte_of_a_faiss_file_is_detected(tmp_path: Path) -> None:
    index, _ = _index(200)
    folder = index.save(tmp_path / "ix")
    data = (folder / "index.faiss").read_bytes()
    for at in np.random.default_rng(1).choice(len(data), size=60, replace=False):
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        (folder / "index.faiss").write_bytes(bytes(flipped))
        with pytest.raises(AnchorFileError, match="checksum"):
            CompressedIndex.load(folder, gpu=False)


def test_compressed_index_metadata_must_match_the_index(tmp_path: Path) -> None:
    index, _ = _index()
    folder = index.save(tmp_path / "ix")
    for edit in ({"n": 5}, {"d": 3}, {"factory": 1}, {"dims": "12"}, {"files": {"../x": {}}}):
        document = {**manifest(folder), **edit}
        original = (folder / storage.MANIFEST).read_bytes()
        reseal(folder, document)
        with pytest.raises(AnchorFileError):
            CompressedIndex.load(folder, gpu=False)
        (folder / storage.MANIFEST).write_bytes(original)


def test_compressed_index_files_of_the_old_format_still_load(tmp_path: Path) -> None:
    import faiss

    index, x = _index()
    faiss.write_index(index._index, str(tmp_path / "old.index"))
    (tmp_path / "old.index.json").write_text(
        json.dumps({"factory": index.factory_, "dims": 12, "refine": None, "n": 600})
    )
    loaded = CompressedIndex.load(tmp_path / "old.index", gpu=False)
    np.testing.assert_array_equal(loaded.search(x[:3], 4)[1], index.search(x[:3], 4)[1])
    (tmp_path / "old.index.json").write_text("{not json")
    with pytest.raises(AnchorFileError, match="not valid JSON"):
        CompressedIndex.load(tmp_path / "old.index", gpu=False)
