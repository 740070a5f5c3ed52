"""Sharing spaces the way models are shared: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``.

A space saved with :func:`save_pretrained` is the folder :meth:`RelativeSpace.save
<asif.RelativeSpace.save>` writes (a sealed manifest and the anchor set, no pickle) plus a
``README.md`` model card. :func:`push_to_hub` uploads that folder to a Hugging Face model repo;
:func:`from_pretrained` loads a local folder or a repo id through ``huggingface_hub`` (the
Hugging Face cache, ``HF_HUB_OFFLINE``, ``revision`` and ``token`` work as for any hub model).

The Hugging Face cache stores files as symbolic links to its blobs, and a saved asif folder is
read only from real files (links are refused: see :mod:`asif.storage`), so a downloaded
snapshot is loaded from a folder of hard links to the same blobs (copies where the file system
has no hard links) under ``$ASIF_CACHE/hub``, made once per commit.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from asif import AnchorSet, RelativeSpace
    >>> space = RelativeSpace(k=2, temperature=0.02).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
    >>> folder = space.save_pretrained(Path(tempfile.mkdtemp()) / "my-space")
    >>> sorted(p.name for p in folder.iterdir())
    ['README.md', 'anchors', 'manifest.json']
    >>> RelativeSpace.from_pretrained(folder).temperature
    0.02
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from asif.encoders._offline import cache_dir
from asif.encoders._registry import hub_offline, is_hub_id
from asif.snapshot import SpaceSnapshot

__all__ = ["download_space", "from_pretrained", "hub_offline", "push_to_hub", "save_pretrained"]

_COMPLETE = ".asif-complete"


class SharedSpace(Protocol):
    """What this module needs of a space (``RelativeSpace`` has it)."""

    k: Any
    p: float
    hubness: float
    temperature: float

    def save(self, path: str | os.PathLike[str]) -> Path: ...

    def snapshot(self) -> SpaceSnapshot: ...


def save_pretrained(space: SharedSpace, save_directory: str | os.PathLike[str]) -> Path:
    """Save ``space`` to a folder (:meth:`RelativeSpace.save`) with a ``README.md`` model card.

    Returns:
        The folder, ready for :func:`from_pretrained` or an upload.
    """
    folder = space.save(save_directory)
    (folder / "README.md").write_text(model_card(space), encoding="utf-8")
    return folder


def from_pretrained(
    cls: Any,
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    **overrides: Any,
) -> Any:
    """Load a space from a local folder or a Hugging Face repo id (``"owner/name"``).

    An anchor-set folder (:meth:`AnchorSet.save <asif.AnchorSet.save>`) gives a space with
    the default parameters over those anchors, with the encoders that made them.

    Args:
        cls: the space class (``RelativeSpace``).
        name_or_path: a folder written by :func:`save_pretrained` (or ``save``), or a repo id.
        revision: a branch, tag or commit of the repo.
        cache_dir: the Hugging Face cache folder (default: huggingface_hub's).
        token: a Hugging Face token for private repos.
        local_files_only: never download; use the Hugging Face cache only.
        **overrides: constructor arguments that replace the saved ones (``device="cpu"``...).

    Raises:
        FileNotFoundError: no such folder, and the repo cannot be found or downloaded (the
            message says when ``HF_HUB_OFFLINE`` is why).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if _manifest_format(path) == "asif-anchors":
            return _space_over_anchors(cls, path, overrides)
        return cls.load(path, **overrides)
    name = os.fspath(name_or_path)
    if not is_hub_id(name):
        raise FileNotFoundError(
            f"{name} is not a folder, nor a Hugging Face repo id ('owner/name'): give the folder "
            "save_pretrained wrote, or a repo id."
        )
    folder = download_space(
        name,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )
    return cls.load(folder, **overrides)


def _manifest_format(folder: Path) -> str | None:
    try:
        document = json.loads((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None  # load() explains what is wrong with the folder
    return document.get("format") if isinstance(document, dict) else None


def _space_over_anchors(cls: Any, folder: Path, overrides: dict[str, Any]) -> Any:
    from asif.anchors import AnchorSet

    anchors = AnchorSet.load(folder)
    options = dict(overrides)
    for side in ("image_encoder", "text_encoder"):
        name = getattr(anchors, side)
        if side not in options and name is None:
            raise ValueError(
                f"the anchor set {folder} does not name its {side.replace('_', ' ')}: pass "
                f"{side}=... (the encoder that embedded its anchors)."
            )
        options.setdefault(side, name)
    return cls(**options).set_anchors(anchors)


def download_space(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The files of a space repo as a local folder of real files (downloaded when needed).

    Raises:
        FileNotFoundError: the repo is not in the cache and cannot be downloaded.
    """
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            library_name="asif",
        )
    except (OSError, ValueError) as error:
        if hub_offline():
            why = (
                "HF_HUB_OFFLINE is set, so it was not downloaded: unset HF_HUB_OFFLINE to "
                "download it"
            )
        elif local_files_only:
            why = "local_files_only=True, so it was not downloaded"
        else:
            why = "it could not be downloaded (no network, a private repo without a token, or no such repo)"
        raise FileNotFoundError(
            f"{repo_id!r} is not a local folder and not in the Hugging Face cache; {why}. "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''})"
        ) from error
    return real_files(Path(snapshot))


def push_to_hub(
    space: SharedSpace,
    repo_id: str,
    *,
    commit_message: str = "Upload asif space",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
) -> Any:
    """Upload ``space`` (:func:`save_pretrained`'s folder) to the model repo ``repo_id``.

    The repo is created when missing. Anchor files left from an earlier, larger upload are
    deleted in the same commit, so the repo always holds exactly one saved space.

    Args:
        api: a ``huggingface_hub.HfApi`` (default: ``HfApi(token=token)``).

    Returns:
        huggingface_hub's ``CommitInfo`` (its ``commit_url``, ``oid``).

    Raises:
        OSError: ``HF_HUB_OFFLINE`` is set.
    """
    if hub_offline():
        raise OSError(
            f"cannot push to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it, or save the space "
            "with save_pretrained(folder) and upload the folder later."
        )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="asif")
    with tempfile.TemporaryDirectory(prefix="asif-push-") as tmp:
        folder = save_pretrained(space, Path(tmp) / "space")
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            delete_patterns=["anchors/**"],
        )


def real_files(snapshot: Path, root: Path | None = None) -> Path:
    """``snapshot`` itself when it holds no symbolic links; else a copy of it made of hard
    links (or copies) of the files the links point to, under ``root/<repo>/<commit>``
    (default root: ``$ASIF_CACHE/hub``), made once."""
    entries = list(snapshot.rglob("*"))
    if not any(p.is_symlink() for p in entries):
        return snapshot
    root = cache_dir() / "hub" if root is None else root
    target = root / snapshot.parent.parent.name / snapshot.name
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{snapshot.name}-"))
    try:
        for entry in entries:
            if entry.is_dir():
                continue
            dest = tmp / entry.relative_to(snapshot)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(entry.resolve(), dest)
            except OSError:  # another file system, or no hard links here
                shutil.copyfile(entry.resolve(), dest)
        (tmp / _COMPLETE).touch()
        if target.exists():  # an unfinished earlier attempt
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # not a concurrent finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_card(space: SharedSpace) -> str:
    """A ``README.md`` for a saved space: hub metadata, what it is made of, how to load it."""
    snap = space.snapshot()
    anchors = snap.anchors
    return f"""---
library_name: asif
tags:
- asif
- zero-shot-image-classification
- image-text
---

# An asif space

A training-free image-text model ([ASIF](https://arxiv.org/abs/2210.01738)): {len(anchors):,}
anchor image-caption pairs embedded by two frozen unimodal encoders; every image or text is
represented by its similarities to the anchors of its own modality.

| | |
|---|---|
| image encoder | `{anchors.image_encoder}` |
| text encoder | `{anchors.text_encoder}` |
| anchors | {len(anchors):,} |
| k, p, hubness | {space.k}, {space.p:g}, {space.hubness:g} |
| softmax temperature | {space.temperature:g} |

```python
from asif import RelativeSpace

space = RelativeSpace.from_pretrained("<this repo id or folder>")
clf = space.zero_shot_classifier(["cat", "dog"], templates="imagenet")
print(clf.predict(["photo.jpg"]), clf.predict_proba(["photo.jpg"]))
```

Files: `manifest.json` (parameters, encoder names, checksums) and `anchors/` (embeddings as
`.npy`, captions as JSON lines); no pickle.
"""
