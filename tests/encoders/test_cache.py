"""The embedding cache never returns a wrong row: damage, stale models, replaced files, two writers.

The damage and concurrency tests drive the public ``encode(..., cache=...)`` path with a small fake
text model (deterministic rows from the text, counting what it is asked to encode); the fingerprint
tests use the real default encoders.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asif.encoders import EmbeddingCache, TextEncoder
from asif.encoders import cache as cache_module
from asif.encoders.cache import text_key

# --- a fake text model: fast, deterministic, counting ------------------------------------------


def _rows(texts: list[str], dim: int, seed: int) -> np.ndarray:
    """The rows the fake model gives: unit vectors seeded by (seed, text)."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
        v = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(dim)
        out[i] = v / np.linalg.norm(v)
    return out


class _FakeModel:
    """Stands in for a ``SentenceTransformer``: ``encode`` and ``get_embedding_dimension``."""

    device = "cpu"

    def __init__(self, dim: int, seed: int) -> None:
        self.dim, self.seed, self.seen = dim, seed, 0

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, items: list[str], **_: Any) -> np.ndarray:
        self.seen += len(items)
        return _rows(list(items), self.dim, self.seed)


class FakeTextEncoder(TextEncoder):
    """A ``TextEncoder`` on the fake model; the fingerprint is whatever the test says."""

    fingerprint: str | None = None  # overrides TextEncoder.fingerprint (a property)

    def __init__(
        self, dim: int = 8, seed: int = 0, fingerprint: str | None = "fake", name: str = "fake"
    ) -> None:
        super().__init__(name, _FakeModel(dim, seed))  # type: ignore[arg-type]
        self.fingerprint = fingerprint

    @property
    def seen(self) -> int:
        return self.model.seen  # type: ignore[attr-defined]


TEXTS = ["a photo of a cat.", "a red car.", "two dogs on a beach."]


def _cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _filled(root: Path, texts: list[str] = TEXTS) -> FakeTextEncoder:
    enc = FakeTextEncoder()
    enc.encode(texts, cache=root)
    assert enc.seen == len(texts)
    return enc


def _check_right_rows(root: Path, texts: list[str] = TEXTS) -> None:
    """A fresh encoder reading the cache gets exactly the fake model's rows, never others."""
    enc = FakeTextEncoder()
    np.testing.assert_array_equal(enc.encode(texts, cache=root), _rows(texts, 8, 0))


# --- damaged shards and indexes ------------------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zero(data: bytes) -> bytes:
    return b""


def _flip_header(data: bytes) -> bytes:
    return data[:20] + bytes([data[20] ^ 0x01]) + data[21:]


def _flip_data(data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 0x01]) + data[-4:]


def _fewer_rows(data: bytes) -> bytes:
    """A valid .npy with one row: every index entry beyond row 0 points past its end."""
    rows = np.load(io.BytesIO(data), allow_pickle=False)
    out = io.BytesIO()
    np.save(out, rows[:1], allow_pickle=False)
    return out.getvalue()


def _swapped_rows(data: bytes) -> bytes:
    """A valid .npy of the same shape whose rows are in another order."""
    rows = np.load(io.BytesIO(data), allow_pickle=False)
    out = io.BytesIO()
    np.save(out, rows[::-1].copy(), allow_pickle=False)
    return out.getvalue()


SHARD_DAMAGE = [_truncate, _zero, _flip_header, _flip_data, _fewer_rows, _swapped_rows]


@pytest.mark.parametrize("damage", SHARD_DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damaged_shard_is_re_encoded_with_a_warning(damage, tmp_path, caplog) -> None:
    root = tmp_path / "c"
    _filled(root)
    for shard in root.rglob("*.npy"):
        shard.write_bytes(damage(shard.read_bytes()))
    enc = FakeTextEncoder()
    with caplog.at_level(logging.WARNING, logger="asif"):
        np.testing.assert_array_equal(enc.encode(TEXTS, cache=root), _rows(TEXTS, 8, 0))
    assert enc.seen == len(TEXTS)  # every damaged row was encoded again
    assert any("shard" in r.getMessage() for r in caplog.records)
    again = FakeTextEncoder()  # the fresh copy is now the one read, silently
    np.testing.assert_array_equal(again.encode(TEXTS, cache=root), _rows(TEXTS, 8, 0))
    assert again.seen == 0


def _garbage(data: bytes) -> bytes:
    return b"{not json"


def _truncated_json(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _other_row(data: bytes) -> bytes:
    """Well-formed JSON with one row number changed (0 -> 1 or 1 -> 2, wherever one shows)."""
    text = data.decode()
    for old, new in ((",0]", ",1]"), (",1]", ",2]"), ('",0', '",1')):
        if old in text:
            return text.replace(old, new, 1).encode()
    return data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]


INDEX_DAMAGE = [_garbage, _zero, _truncated_json, _other_row]


@pytest.mark.parametrize("merged", [False, True], ids=["records", "index"])
@pytest.mark.parametrize("damage", INDEX_DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damaged_index_is_re_encoded_never_misread(damage, merged, tmp_path, monkeypatch) -> None:
    if merged:  # every put merges the records into index.json
        monkeypatch.setattr(cache_module, "_COMPACT_AT", 1, raising=False)
    root = tmp_path / "c"
    _filled(root, TEXTS[:2])
    _filled(root, TEXTS[2:])  # a second write: an index with several shards or records
    assert any(p.name == "index.json" for p in _cache_files(root)) == merged
    for index in root.rglob("*.json"):
        index.write_bytes(damage(index.read_bytes()))
    _check_right_rows(root)
    _check_right_rows(root)  # and after the re-encoded rows were written back


def test_compaction_merges_records_and_clears_what_is_damaged_or_left_behind(
    tmp_path, monkeypatch
) -> None:
    root = tmp_path / "c"
    for text in TEXTS:
        _filled(root, [text])
    folder = next(root.rglob("*.npy")).parent.parent
    records = sorted((folder / "new").iterdir())
    records[0].write_bytes(b"")  # a damaged record: it and its shard go
    orphan = folder / "shards" / f"{time.time_ns():019d}-{'0' * 16}.npy"  # a dead writer's shard
    orphan.write_bytes(b"rows nobody recorded")
    young = folder / "shards" / f"{time.time_ns():019d}-{'1' * 16}.npy"  # a live writer's, so far
    young.write_bytes(b"rows about to be recorded")
    leftover = folder / ".index.json.0123.tmp"
    leftover.write_bytes(b"{")
    old = time.time() - 7200
    for path in (orphan, leftover):
        os.utime(path, (old, old))
    cache_module._compact(folder, "fake", 8)
    assert not list((folder / "new").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "new", "shards"]
    shards = {p.name for p in (folder / "shards").iterdir()}
    assert shards == {r.name.replace(".json", ".npy") for r in records[1:]} | {young.name}
    assert len(cache_module._load_records(folder, "fake", 8)) == 2
    enc = FakeTextEncoder()
    np.testing.assert_array_equal(enc.encode(TEXTS, cache=root), _rows(TEXTS, 8, 0))
    assert enc.seen == 1  # only the text whose record was damaged


def test_every_single_byte_flip_of_the_cache_files_gives_right_rows_or_a_miss(tmp_path) -> None:
    """Flip the low bit of each byte of each cache file in turn: what comes back is always right."""
    root = tmp_path / "c"
    enc = _filled(root)
    cache = EmbeddingCache(root)
    keys = [text_key(t) for t in TEXTS]
    expected = dict(zip(keys, _rows(TEXTS, 8, 0), strict=True))
    files = _cache_files(root)
    assert [p.suffix for p in files] == [".json", ".npy"]
    misses = 0
    for path in files:
        original = path.read_bytes()
        for i in range(len(original)):
            path.write_bytes(original[:i] + bytes([original[i] ^ 0x01]) + original[i + 1 :])
            found = cache.get(enc, keys)
            misses += len(found) < len(keys)
            for key, row in found.items():
                assert np.array_equal(row, expected[key]), f"{path.name} byte {i}"
        path.write_bytes(original)
    assert misses == sum(p.stat().st_size for p in files)  # every flip was noticed
    assert cache.get(enc, keys).keys() == set(keys)


def test_an_old_format_cache_folder_is_ignored(tmp_path) -> None:
    """Folders of the first format (index keyed by encoder name only) are never read."""
    root = tmp_path / "c"
    old = root / f"fake-{hashlib.sha1(b'fake').hexdigest()[:10]}"  # where format 1 put it
    old.mkdir(parents=True)
    np.save(old / "a.npy", np.ones((3, 8), dtype=np.float32))
    entries = {text_key(t): ["a.npy", i] for i, t in enumerate(TEXTS)}
    index = {"format": 1, "encoder": "fake", "dim": 8, "entries": entries}
    (old / "index.json").write_text(json.dumps(index))
    _check_right_rows(root)


# --- what the key is made of -------------------------------------------------------------------


def test_same_name_other_model_misses(tmp_path) -> None:
    root = tmp_path / "c"
    _filled(root)
    other = FakeTextEncoder(seed=1, fingerprint="fake, retrained")  # same name, other weights
    np.testing.assert_array_equal(other.encode(TEXTS, cache=root), _rows(TEXTS, 8, 1))
    assert other.seen == len(TEXTS)


def test_same_name_other_output_size_misses(tmp_path) -> None:
    root = tmp_path / "c"
    _filled(root)
    wider = FakeTextEncoder(dim=16, fingerprint="fake")  # even a fingerprint that forgot the size
    out = wider.encode(TEXTS, cache=root)
    assert out.shape == (3, 16) and wider.seen == len(TEXTS)
    np.testing.assert_array_equal(out, _rows(TEXTS, 16, 0))


def test_an_encoder_without_a_fingerprint_does_not_use_the_cache(tmp_path, caplog) -> None:
    root = tmp_path / "c"
    enc = FakeTextEncoder(fingerprint=None)
    with caplog.at_level(logging.WARNING, logger="asif"):
        enc.encode(TEXTS, cache=root)
        enc.encode(TEXTS, cache=root)
    assert enc.seen == 2 * len(TEXTS)
    assert not root.exists() or not _cache_files(root)
    assert any("fingerprint" in r.getMessage() for r in caplog.records)
    assert EmbeddingCache(root).get("a plain name", [text_key(TEXTS[0])]) == {}


def test_real_encoders_have_stable_fingerprints_that_follow_the_weights(
    image_encoder, text_encoder
) -> None:
    import torch

    from asif.encoders import ImageEncoder

    fp = image_encoder.fingerprint
    assert isinstance(fp, str) and len(fp) == 64
    assert image_encoder.fingerprint == fp  # memoised
    assert isinstance(text_encoder.fingerprint, str)
    assert text_encoder.fingerprint != fp

    twin = ImageEncoder(
        image_encoder.name, copy.deepcopy(image_encoder.model), image_encoder.data_config, "cpu"
    )
    assert twin.fingerprint == fp  # the same weights elsewhere in memory: the same fingerprint
    saved = {k: v.clone() for k, v in twin.model.state_dict().items()}
    changed = dict(saved)
    first = next(k for k, v in saved.items() if v.is_floating_point())
    changed[first] = saved[first] + 0.01
    twin.model.load_state_dict(changed)  # weights changed in place, same model object
    assert twin.fingerprint != fp
    twin.model.load_state_dict(saved)
    assert twin.fingerprint == fp
    with torch.no_grad():
        twin.model.half()  # same values, another dtype: other embeddings
    assert twin.fingerprint != fp

    config = dict(image_encoder.data_config, crop_pct=0.5)  # other preprocessing
    cropped = ImageEncoder(image_encoder.name, twin.model, config, "cpu")
    assert cropped.fingerprint != fp


def test_real_image_encoder_same_name_other_weights_misses(image_encoder, photos, tmp_path) -> None:
    import torch

    from asif.encoders import ImageEncoder

    root = tmp_path / "c"
    photos = photos[:2]
    first = image_encoder.encode(photos, cache=root)
    model = copy.deepcopy(image_encoder.model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)
    other = ImageEncoder(image_encoder.name, model, image_encoder.data_config, "cpu")
    seen: list[int] = []
    embed = other._embed_batch
    other._embed_batch = lambda pixels: seen.append(len(pixels)) or embed(pixels)  # type: ignore[method-assign]
    got = other.encode(photos, cache=root)
    assert sum(seen) == len(photos)  # a miss: the other model computed every row
    assert not np.allclose(got, first, atol=1e-3)


def test_real_text_encoder_same_name_other_size_misses(text_encoder, tmp_path) -> None:
    root = tmp_path / "c"
    text_encoder.encode(TEXTS, cache=root)
    model = copy.deepcopy(text_encoder.model)
    model.truncate_dim = 128
    short = TextEncoder(text_encoder.name, model)
    assert short.dim == 128 and short.fingerprint != text_encoder.fingerprint
    seen: list[str] = []
    encode = short._encode
    short._encode = lambda items, *args: seen.extend(items) or encode(items, *args)  # type: ignore[method-assign]
    assert short.encode(TEXTS, cache=root).shape == (3, 128)
    assert sorted(seen) == sorted(TEXTS)  # a miss: the 128-d model computed every row


# --- file hashes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small photos of equal size in bytes (BMP), different content."""
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = folder / f"{i}.bmp"
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        pixels[:, : 16 * (i + 1)] = 40 * i  # different pictures, not only different noise
        Image.fromarray(pixels).save(path)
        paths.append(path)
    assert len({p.stat().st_size for p in paths}) == 1
    return paths


@pytest.fixture(scope="module")
def photo_rows(image_encoder, photos) -> np.ndarray:
    """The photos' embeddings, encoded without a cache."""
    return image_encoder.encode(photos)


def _replace_keeping_size_and_mtime(path: Path, content: bytes) -> None:
    """What ``cp -p`` or ``rsync -t`` does: new bytes, the old file's size and times."""
    st = path.stat()
    assert len(content) == st.st_size
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_file_replaced_with_the_same_size_and_mtime_gets_its_new_hash(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    f = tmp_path / "a.bin"
    f.write_bytes(b"A" * 1000)
    assert cache.hash_files([str(f)]) == [hashlib.sha256(b"A" * 1000).hexdigest()]
    _replace_keeping_size_and_mtime(f, b"B" * 1000)
    assert cache.hash_files([str(f)]) == [hashlib.sha256(b"B" * 1000).hexdigest()]


def test_the_memo_is_keyed_on_inode_and_ctime(tmp_path, monkeypatch) -> None:
    """With the recency guard off, a memoised file replaced as ``cp -p`` does still re-hashes."""
    monkeypatch.setattr(cache_module, "_RACY_NS", 0, raising=False)
    cache = EmbeddingCache(tmp_path / "c")
    f = tmp_path / "a.bin"
    f.write_bytes(b"A" * 1000)
    cache.hash_files([str(f)])
    reads: list[str] = []
    original = cache_module._sha256_file
    monkeypatch.setattr(cache_module, "_sha256_file", lambda p: reads.append(p) or original(p))
    assert cache.hash_files([str(f)]) == [hashlib.sha256(b"A" * 1000).hexdigest()]
    assert reads == []  # memoised
    time.sleep(0.05)  # past the file system's timestamp tick
    _replace_keeping_size_and_mtime(f, b"B" * 1000)
    assert cache.hash_files([str(f)]) == [hashlib.sha256(b"B" * 1000).hexdigest()]
    g = tmp_path / "g.bin"  # rsync's way: a new file renamed over the old one
    g.write_bytes(b"C" * 1000)
    st = f.stat()
    os.utime(g, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(g, f)
    assert cache.hash_files([str(f)]) == [hashlib.sha256(b"C" * 1000).hexdigest()]


def test_real_image_replaced_with_cp_p_is_re_encoded(
    image_encoder, photos, photo_rows, tmp_path
) -> None:
    target = tmp_path / "photo.bmp"
    target.write_bytes(photos[0].read_bytes())
    root = tmp_path / "c"
    image_encoder.encode([target], cache=root)
    _replace_keeping_size_and_mtime(target, photos[1].read_bytes())
    np.testing.assert_allclose(
        image_encoder.encode([target], cache=root)[0], photo_rows[1], atol=1e-6
    )


def test_a_file_changed_while_being_encoded_is_not_stored_under_its_old_hash(
    image_encoder, photos, photo_rows, tmp_path, monkeypatch
) -> None:
    import asif.encoders.image as image_module

    target = tmp_path / "photo.bmp"
    target.write_bytes(photos[0].read_bytes())
    original = image_module.load_image

    def load_after_a_change(item, **options):  # type: ignore[no-untyped-def]
        Path(item).write_bytes(photos[2].read_bytes())  # changed between hashing and decoding
        return original(item, **options)

    monkeypatch.setattr(image_module, "load_image", load_after_a_change)
    image_encoder.encode([target], cache=tmp_path / "c")
    monkeypatch.setattr(image_module, "load_image", original)
    target.write_bytes(photos[0].read_bytes())  # the hashed content again
    got = image_encoder.encode([target], cache=tmp_path / "c")
    np.testing.assert_allclose(got[0], photo_rows[0], atol=1e-6)


# --- two processes, one cache ------------------------------------------------------------------


def _write_texts(root: str, proc: int, n: int) -> None:
    """One writer: n texts, one encode call (one get, one put) each."""
    enc = FakeTextEncoder()
    for i in range(n):
        enc.encode([f"text {proc} {i}"], cache=root)


def _run_writers(root: Path, procs: int, n: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_texts, args=(str(root), p, n)) for p in range(procs)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=600)
            assert w.exitcode == 0
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
    return [f"text {p} {i}" for p in range(procs) for i in range(n)]


def _recorded_shards(root: Path) -> Iterator[tuple[Path, set[str]]]:
    """Each encoder folder with the shard names its index and record files name."""
    for folder in {p.parent.parent for p in root.rglob("*.npy")}:  # <folder>/shards/<stem>.npy
        named: set[str] = set()
        for record in cache_module._load_records(folder, "fake", 8):
            named.add(record["shard"])
        yield folder, named


def _check_writers_result(root: Path, texts: list[str]) -> None:
    reader = FakeTextEncoder()
    np.testing.assert_array_equal(reader.encode(texts, cache=root), _rows(texts, 8, 0))
    assert reader.seen == 0, f"{reader.seen} of {len(texts)} entries lost"
    assert not [p for p in _cache_files(root) if p.name.endswith(".tmp")]
    for folder, named in _recorded_shards(root):
        on_disk = {p.name for p in folder.rglob("*.npy")}
        assert on_disk == named, f"{len(on_disk - named)} orphaned shard files"


def test_two_processes_writing_one_cache_lose_nothing(tmp_path) -> None:
    root = tmp_path / "c"
    texts = _run_writers(root, procs=2, n=200)
    _check_writers_result(root, texts)


@pytest.mark.slow
def test_soak_four_writers_and_a_killed_one(tmp_path, monkeypatch) -> None:
    root = tmp_path / "c"
    ctx = multiprocessing.get_context("spawn")
    victim = ctx.Process(target=_write_texts, args=(str(root), 9, 100_000))
    victim.start()
    try:
        texts = _run_writers(root, procs=4, n=2000)
    finally:
        victim.kill()
        victim.join()
    _check_right_rows(root, texts)
    monkeypatch.setattr(cache_module, "_STALE_NS", 0, raising=False)
    FakeTextEncoder().encode(["one more"], cache=root)  # a put that cleans after the dead writer
    cache_module._compact(next(root.rglob("*.npy")).parent.parent, "fake", 8)
    _check_writers_result(root, texts)


@pytest.mark.slow
def test_cost_of_shard_checks_and_file_hashing(data_dir, tmp_path) -> None:
    """The figures in ``asif.encoders.cache``'s docstring: run with ``-m slow -s -k cost``."""

    def best(f: Any, n: int = 5) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return min(times)

    enc = FakeTextEncoder(dim=1280, fingerprint="bench")
    rows = np.random.default_rng(0).standard_normal((7091, 1280)).astype(np.float32)
    keys = [text_key(str(i)) for i in range(len(rows))]
    cache = EmbeddingCache(tmp_path / "c")
    cache.put(enc, keys, rows)
    (shard,) = (tmp_path / "c").rglob("*.npy")
    got = best(lambda: cache.get(enc, keys))
    mapped = best(lambda: np.array(np.load(shard, mmap_mode="r")))
    plain = best(lambda: np.load(io.BytesIO(shard.read_bytes())))
    sha = best(lambda: hashlib.sha256(shard.read_bytes()).digest())
    print(
        f"\nget of {len(rows)} x 1280 rows ({rows.nbytes / 1e6:.0f} MB, one shard): {got * 1e3:.0f} ms;"
        f" read + np.load {plain * 1e3:.0f} ms, sha256 {sha * 1e3:.0f} ms,"
        f" np.load(mmap_mode='r') {mapped * 1e3:.0f} ms"
    )
    assert cache.get(enc, keys).keys() == set(keys)

    paths = sorted(str(p) for p in (data_dir / "flickr8k" / "images").glob("*.jpg"))
    if not paths:
        pytest.skip("flickr8k images not found")
    size = sum(os.path.getsize(p) for p in paths) / 1e6

    def evict() -> None:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)

    hashing = EmbeddingCache(tmp_path / "h")
    monkey = pytest.MonkeyPatch()
    monkey.setattr(cache_module, "_RACY_NS", 10**30)  # memoise nothing: every call hashes
    warm = best(lambda: hashing.hash_files(paths), 3)
    cold = min((evict(), best(lambda: hashing.hash_files(paths), 1))[1] for _ in range(3))
    monkey.undo()
    hashing.hash_files(paths)
    memo = best(lambda: hashing.hash_files(paths), 3)
    print(
        f"sha256 of {len(paths)} files ({size:.0f} MB): {warm:.2f} s from the page cache,"
        f" {cold:.2f} s cold; memo hit {memo * 1e3:.0f} ms"
    )
    assert memo < warm
