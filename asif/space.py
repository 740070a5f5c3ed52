"""``RelativeSpace``: anchors + one index per modality + (k, p) = a multimodal model.

Images and texts are each compared with the anchors of their own modality; their top-k sparse
relative vectors then share the same N axes (one per anchor pair), where they can be compared.

Hot swap: the anchors, both indexes, the centring means and a version number form one
immutable state; ``set_anchors``, ``add_anchors`` and ``remove_anchors`` build a new one and
replace the reference in one assignment. A query reads it once, through :meth:`snapshot`, so a
query running in another thread sees the old anchors or the new ones, never a mix; zero-shot
classifiers and galleries rebuild their vectors when the snapshot's ``key`` changes.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from asif import storage
from asif.anchors import AnchorSet
from asif.calibration import DEFAULT_TEMPERATURE
from asif.explain import Explanation, explain_similarity
from asif.index import AnchorSearch, build_index, check_index, check_k
from asif.relative import check_p, normalize_rows, sparse_scores
from asif.retrieval import Gallery, SearchResult, index_gallery, search
from asif.settings import DEFAULT
from asif.snapshot import MODALITIES, Modality, SpaceSnapshot
from asif.templates import Template
from asif.transforms import check_hubness, resolve_k, update_hub_counts
from asif.zeroshot import ZeroShotClassifier

__all__ = ["RelativeSpace"]

_versions = itertools.count(1)
SPACE_FORMAT = "asif-space"
SPACE_FORMAT_VERSION = 2
"""Version 2 seals its manifest (a checksum of its own content); version 1 is still read."""
_PARAMS = (
    "k",
    "p",
    "hubness",
    "center",
    "index",
    "gpu",
    "device",
    "batch_size",
    "show_progress_bar",
    "cache",
    "temperature",
)


@dataclass(frozen=True)
class _State:
    """The anchors and what was built from them, swapped as one object."""

    anchors: AnchorSet
    image_index: AnchorSearch
    text_index: AnchorSearch
    version: int
    means: dict[str, np.ndarray] | None
    hub_counts: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hub_drift: int = 0  # anchors added or removed since hub_counts were exact


class RelativeSpace:
    """A training-free image-text model: inputs become sparse vectors over N anchor pairs.

    Args:
        k: anchors kept per input (capped at N), or ``"auto"``: one anchor in twenty, up to
            1,600 (:func:`asif.transforms.adaptive_k`).
        p: exponent on the kept cosines; larger p gives the closest anchors more weight.
        hubness: alpha of the hub weights (:func:`asif.transforms.hub_weights`): anchors found
            in many anchors' top-k lists count less. 0 turns them off. They cost one search of
            up to 4,096 anchors per modality, on the first query after the anchors change.
        center: subtract each modality's anchor mean before comparing
            (:class:`asif.transforms.Centering`); the indexes then hold centred copies.
            The defaults are :data:`asif.settings.DEFAULT` (``k="auto", p=3.5, hubness=0.5``,
            no centring), asif's measured default; ``k=800, p=8, hubness=0`` (and
            ``combine="max"``) is the paper's algorithm exactly (:data:`asif.settings.PAPER`).
        image_encoder: encoder name (``"default"``: offline EfficientNet-Lite0) or an object
            with ``encode(inputs, batch_size=..., show_progress_bar=...) -> (n, d) array``.
        text_encoder: likewise for captions (``"default"``: offline all-MiniLM-L6-v2).
        index: how each modality's anchors are searched: a factory string (``"Flat"``: exact
            search, the default; ``"auto"``; any ``faiss.index_factory`` string with optional
            ``";"`` search parameters), an index already built over the anchors (e.g. an
            :class:`asif.index.CompressedIndex`), or a callable ``vectors -> index``; or a dict
            ``{"image": ..., "text": ...}`` of these.
        gpu: ``"auto"`` (GPUs where there are some: torch's for exact search, FAISS's for other
            indexes; ``placement`` on an index says where it searches), ``True`` or ``False``.
        device: torch device for the encoders (``None``: cuda when present, else cpu).
        batch_size: encoder batch size.
        show_progress_bar: encoder progress bars (``None``: quiet unless logging at INFO).
        cache: embedding cache for image files and texts (``True``: ``~/.cache/asif``, or a
            folder); ``None`` encodes everything every time.
        temperature: the softmax temperature of its zero-shot classifiers' ``predict_proba``
            (saved with the space); choose one on held-out labelled images with
            :meth:`ZeroShotClassifier.choose_temperature`. 0.01 is a fixed guess.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anchors = AnchorSet(rng.normal(size=(100, 16)), rng.normal(size=(100, 8)))
        >>> space = RelativeSpace(k=10, p=8).set_anchors(anchors)
        >>> space.transform_images(rng.normal(size=(3, 16))).shape
        (3, 100)
    """

    def __init__(
        self,
        k: int | Literal["auto"] = DEFAULT.k,
        p: float = DEFAULT.p,
        *,
        hubness: float = DEFAULT.hubness,
        center: bool = DEFAULT.center,
        image_encoder: str | Any = "default",
        text_encoder: str | Any = "default",
        index: Any = "Flat",
        gpu: bool | str = "auto",
        device: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        cache: bool | str | os.PathLike[str] | Any | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        self.k = k
        self.p = p
        self.hubness = hubness
        self.center = center
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.index = index
        self.gpu = gpu
        self.device = device
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.cache = cache
        self.temperature = temperature
        self._state: _State | None = None
        self._encoders: dict[Modality, Any] = {}
        self._encoder_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        n = "unfitted" if self._state is None else f"n_anchors={len(self._state.anchors)}"
        centred = ", center=True" if self.center else ""
        return f"RelativeSpace(k={self.k!r}, p={self.p}, hubness={self.hubness}{centred}, {n})"

    # ----------------------------------------------------------------- anchors
    def fit(
        self,
        images: Sequence[Any] | np.ndarray,
        captions: Sequence[str],
        *,
        ids: Sequence[int] | None = None,
    ) -> RelativeSpace:
        """Encode N image-caption pairs with the frozen encoders and use them as the anchors.

        Args:
            images: N images (paths, PIL images, image arrays) or an (N, d) embedding array; a
                path named several times (an image with several captions) is encoded once.
            captions: N captions, caption i describing image i.
            ids: optional N unique anchor ids.
        """
        captions = _check_texts(captions, "captions")
        if not isinstance(images, (np.ndarray, Sequence)) and not _is_torch_tensor(images):
            images = list(images)  # a generator: read it once
        paths = _paths(images)
        if paths is not None:
            unique, inverse = np.unique(np.array(paths, dtype=object), return_inverse=True)
            image_embeddings = self.encode_images(list(unique))[inverse.reshape(-1)]
        else:
            image_embeddings = self.encode_images(images)
        if image_embeddings.shape[0] != len(captions):
            raise ValueError(
                f"got {image_embeddings.shape[0]} images but {len(captions)} captions: "
                "anchors are pairs, caption i must describe image i."
            )
        anchors = AnchorSet(
            image_embeddings,
            self.encode_texts(captions),
            captions=captions,
            ids=ids,
            image_paths=paths,
            image_encoder=self._encoder_name("image"),
            text_encoder=self._encoder_name("text"),
        )
        return self.set_anchors(anchors)

    def set_anchors(self, anchors: AnchorSet) -> RelativeSpace:
        """Use ``anchors`` as the axes of the space; readers switch atomically to the new set.

        No anchor is copied for exact search: float32 arrays (memory-mapped ones included) are
        searched in place; float16 ones are converted to float32 once. To swap in indexes built
        beforehand (a new version's shard actors: :class:`asif.index.RayShardedIndex`), set
        ``space.index`` to them first; this call then switches anchors and indexes together.

        Raises:
            ValueError: the anchors were made by other encoders than this space's, a parameter
                is invalid, or an index cannot search k anchors (its ``max_k``: 2,048 on FAISS
                GPUs); the space is left unchanged.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> space.n_anchors_
            3
        """
        self._check_params()
        if not isinstance(anchors, AnchorSet):
            raise TypeError(f"set_anchors expects an AnchorSet, got {type(anchors).__name__}.")
        self._check_encoders(anchors)
        state = self._build_state(anchors)
        for modality, index in (("image", state.image_index), ("text", state.text_index)):
            check_k(index, resolve_k(self.k, index.n), f"the {modality} index")
        with self._write_lock:
            self._state = state
        return self

    def add_anchors(self, anchors: AnchorSet) -> RelativeSpace:
        """Append anchor pairs; existing anchors keep their ids and positions.

        The new pairs' ids must not be in use (``ids=space.next_id_ + np.arange(m)`` gives fresh
        ones). Exact search copies only the new rows, so the cost does not grow with N; other
        indexes are rebuilt (or extended, where they can be) over all anchors.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> more = AnchorSet(np.ones((1, 3)), np.ones((1, 3)), ids=[space.next_id_])
            >>> space.add_anchors(more).anchors_.ids.tolist()
            [0, 1, 2, 3]
        """
        if not isinstance(anchors, AnchorSet):
            raise TypeError(f"add_anchors expects an AnchorSet, got {type(anchors).__name__}.")
        with self._write_lock:
            state = self._current()
            old = state.anchors
            if (anchors.image_dim, anchors.text_dim) != (old.image_dim, old.text_dim):
                raise ValueError(
                    f"added anchors have dims {(anchors.image_dim, anchors.text_dim)} but the "
                    f"space's have {(old.image_dim, old.text_dim)}: embed them with the same "
                    "encoders."
                )
            self._check_encoders(anchors, old)
            taken = np.isin(anchors.ids, old.ids)
            if taken.any():
                raise ValueError(
                    f"anchor ids already in use: {anchors.ids[taken][:10].tolist()} (first 10 "
                    f"shown); give new anchors fresh ids, e.g. ids={self.next_id_} + np.arange(m)."
                )
            hubs, drift = _updated_hubs(state, added=len(anchors))
            if not _updatable(state, "with_added"):
                joined = old.concat(anchors)
                joined.hub_statistics = hubs
                self._state = self._build_state(joined, hub_drift=drift)
                return self
            image_index = state.image_index.with_added(anchors.image_embeddings)  # type: ignore[attr-defined]
            text_index = state.text_index.with_added(anchors.text_embeddings)  # type: ignore[attr-defined]
            n_old, n_new = len(old), len(anchors)
            merged = AnchorSet(
                image_index,
                text_index,
                ids=np.concatenate([old.ids, anchors.ids]),
                captions=_concat_column(old.captions, anchors.captions, n_old, n_new),
                image_paths=_concat_column(old.image_paths, anchors.image_paths, n_old, n_new),
                image_encoder=old.image_encoder or anchors.image_encoder,
                text_encoder=old.text_encoder or anchors.text_encoder,
                keys=_concat_column(old.keys, anchors.keys, n_old, n_new),
                provenance=old.provenance
                if old.provenance == anchors.provenance
                else {"concat": [old.provenance, anchors.provenance]},
                hub_statistics=hubs,
            )
            self._state = _State(
                merged, image_index, text_index, next(_versions), None, dict(hubs), hub_drift=drift
            )
        return self

    def remove_anchors(self, ids: Sequence[int] | np.ndarray) -> RelativeSpace:
        """Remove the anchor pairs with these ids; the others keep their ids (and order).

        Raises:
            KeyError: an id is not in the space (nothing is removed).
            ValueError: ids repeat, or they are every anchor.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> space.remove_anchors([1]).anchors_.ids.tolist()
            [0, 2]
        """
        with self._write_lock:
            state = self._current()
            old = state.anchors
            positions = old.positions(ids)
            if np.unique(positions).size != positions.size:
                raise ValueError("remove_anchors got the same id more than once.")
            if positions.size == 0:
                return self
            if positions.size == len(old):
                raise ValueError("cannot remove every anchor: a space needs at least one.")
            keep = np.ones(len(old), dtype=bool)
            keep[positions] = False
            hubs, drift = _updated_hubs(state, keep=keep)
            if not _updatable(state, "without"):
                selected = old.select(keep)
                selected.hub_statistics = hubs
                self._state = self._build_state(selected, hub_drift=drift)
                return self
            image_index = state.image_index.without(positions)  # type: ignore[attr-defined]
            text_index = state.text_index.without(positions)  # type: ignore[attr-defined]
            remaining = AnchorSet(
                image_index,
                text_index,
                ids=old.ids[keep],
                captions=_compress(old.captions, keep),
                image_paths=_compress(old.image_paths, keep),
                image_encoder=old.image_encoder,
                text_encoder=old.text_encoder,
                keys=_compress(old.keys, keep),
                provenance=old.provenance,
                hub_statistics=hubs,
            )
            self._state = _State(
                remaining,
                image_index,
                text_index,
                next(_versions),
                None,
                dict(hubs),
                hub_drift=drift,
            )
        return self

    @property
    def next_id_(self) -> int:
        """An id above every current anchor id: ``next_id_ + np.arange(m)`` are free ids."""
        return int(self._current().anchors.ids.max()) + 1

    @property
    def anchors_(self) -> AnchorSet:
        """The current anchor set."""
        return self._current().anchors

    @property
    def n_anchors_(self) -> int:
        """N, the number of anchor pairs (= the number of axes)."""
        return len(self._current().anchors)

    def snapshot(self) -> SpaceSnapshot:
        """What a query reads, fixed at this moment: anchors, indexes, hub statistics, version
        and the ``k, p, hubness`` in force (:class:`asif.snapshot.SpaceSnapshot`).

        Raises:
            RuntimeError: the space has no anchors yet.
            ValueError: a parameter was set to an invalid value, or ``center`` changed since
                the anchors were indexed.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> snap = space.snapshot()
            >>> snap.n_anchors, snap.k_for("image"), snap.key == space.snapshot().key
            (3, 2, True)
        """
        state = self._current()
        if bool(self.center) != (state.means is not None):
            raise ValueError(
                f"center is {self.center!r} but the anchors were indexed with center="
                f"{state.means is not None}: call set_anchors(space.anchors_) to index them again."
            )
        return SpaceSnapshot(
            anchors=state.anchors,
            image_index=state.image_index,
            text_index=state.text_index,
            version=state.version,
            k=self.k,
            p=self.p,
            hubness=self.hubness,
            means=state.means,
            hub_counts=state.hub_counts,
            _lock=state.lock,
        )

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
        """Write parameters, encoder names and anchors to the folder ``path``, atomically.

        ``RelativeSpace.load(path)`` gives a space with identical predictions (with float32
        storage). Encoders given as objects are recorded by their ``name``; one without a name
        is recorded as unknown, and loading then asks for it. The folder holds a sealed
        ``manifest.json`` and the anchor set under ``anchors/`` (:meth:`AnchorSet.save`), and
        replaces only an asif folder, as anchor sets do.

        Raises:
            ValueError: ``index`` is an index object or a callable, which a folder cannot hold
                (save such an index with its own ``save`` and pass it to ``load(index=...)``).

        Example:
            >>> import tempfile
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> folder = space.save(Path(tempfile.mkdtemp()) / "space")
            >>> RelativeSpace.load(folder).k
            2
        """
        state = self._current()
        params = {name: getattr(self, name) for name in _PARAMS}
        params["cache"] = _cache_param(self.cache)
        for modality, spec in _index_specs(self.index).items():
            if not isinstance(spec, str):
                raise ValueError(
                    f"this space searches its {modality} anchors with a {type(spec).__name__}, "
                    "which save cannot record: save that index with its own save() and pass it "
                    "to RelativeSpace.load(path, index=...), or use a factory string."
                )
        manifest = {
            "format": SPACE_FORMAT,
            "format_version": SPACE_FORMAT_VERSION,
            "params": params,
            "image_encoder": self._encoder_name("image"),
            "text_encoder": self._encoder_name("text"),
        }
        with storage.atomic_folder(path) as tmp:
            state.anchors.save(tmp / "anchors", dtype=dtype)
            storage.write_json(tmp / storage.MANIFEST, manifest)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = True,
        verify: bool | None = None,
        **overrides: Any,
    ) -> RelativeSpace:
        """Load a space written by :meth:`save` (no encoder is loaded until one is needed).

        The manifest and the anchors are read through one opened folder, so a load sees one
        complete save even while another process saves over ``path``.

        Args:
            path: the folder.
            mmap: memory-map the anchor embeddings.
            verify: when to check the anchor files' checksums (see :meth:`AnchorSet.load`).
            **overrides: constructor arguments that replace the saved ones (e.g.
                ``image_encoder=my_encoder``, ``device="cpu"``).

        Raises:
            asif.storage.AnchorFileError: the manifest lacks its parameters, holds invalid ones
                or is malformed, or an anchor file is.
            ValueError: the space was saved with an encoder object that had no name, and no
                override names one.
        """
        unknown = set(overrides) - {*_PARAMS, "image_encoder", "text_encoder"}
        if unknown:
            raise TypeError(f"unknown RelativeSpace arguments: {sorted(unknown)}.")

        def read(folder: storage.Folder) -> tuple[dict[str, Any], AnchorSet]:
            manifest = storage.read_manifest(
                folder, SPACE_FORMAT, SPACE_FORMAT_VERSION, unsealed=(1,)
            )
            with folder.folder("anchors") as anchors_folder:
                return manifest, AnchorSet.load(anchors_folder, mmap=mmap, verify=verify)

        manifest, anchors = storage.load_folder(path, read)
        where = Path(path) / storage.MANIFEST
        params = manifest.get("params")
        if not isinstance(params, dict):
            raise storage.AnchorFileError(f"{where} has no 'params' object: it is incomplete.")
        extra = set(params) - set(_PARAMS)
        if extra:
            raise storage.AnchorFileError(f"{where} has unknown params {sorted(extra)}.")
        kwargs: dict[str, Any] = dict(params)
        for modality in MODALITIES:
            side = f"{modality}_encoder"
            name = manifest.get(side)
            if name is not None and not isinstance(name, str):
                raise storage.AnchorFileError(f"{where}: {side!r} must be a string or null.")
            if side in overrides:
                continue
            if name is None:
                raise ValueError(
                    f"{path} was saved with a {modality} encoder object that has no name: pass "
                    f"RelativeSpace.load(path, {side}=...) with the encoder that made it."
                )
            kwargs[side] = name
        try:
            cls(**kwargs)._check_params()
        except (TypeError, ValueError) as error:
            raise storage.AnchorFileError(f"{where} has invalid params: {error}") from None
        kwargs.update(overrides)
        return cls(**kwargs).set_anchors(anchors)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """:meth:`save` with a ``README.md`` model card, ready to share
        (:func:`asif.hub.save_pretrained`)."""
        from asif import hub

        return hub.save_pretrained(self, save_directory)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **options: Any) -> RelativeSpace:
        """Load a space from a folder or a Hugging Face repo id (:func:`asif.hub.from_pretrained`:
        ``revision``, ``cache_dir``, ``token``, ``local_files_only`` and constructor overrides)."""
        from asif import hub

        return hub.from_pretrained(cls, name_or_path, **options)

    def push_to_hub(self, repo_id: str, **options: Any) -> Any:
        """Upload the space to a Hugging Face model repo (:func:`asif.hub.push_to_hub`)."""
        from asif import hub

        return hub.push_to_hub(self, repo_id, **options)

    # ----------------------------------------------------------------- encoding
    def encode_images(
        self,
        images: Any,
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        device: str | None = None,
    ) -> np.ndarray:
        """Embed images with the image encoder: (n, d) float32, L2-normalised.

        Args:
            images: image paths, PIL images, a folder, a NumPy ``uint8`` image array (H x W x
                3, or n x H x W x 3), torch pixel tensors (3 x H x W or n x 3 x H x W, uint8
                or float in [0, 1]), a torch ``DataLoader`` of such tensors, a Hugging Face
                ``datasets.Dataset`` with an image column, or an (n, d) embedding array (only
                normalised).
            batch_size: images per forward pass (default: the space's).
            show_progress_bar: a progress bar (default: the space's).
            device: run the encoder on this torch device (it moves there and stays, as in
                sentence-transformers; default: where it is, first the space's ``device``).

        Example:
            >>> space = RelativeSpace()
            >>> space.encode_images(np.array([[3.0, 4.0]]))
            array([[0.6, 0.8]], dtype=float32)
        """
        return self._encode(images, "image", batch_size, show_progress_bar, device)

    def encode_texts(
        self,
        texts: Sequence[str] | np.ndarray,
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        device: str | None = None,
    ) -> np.ndarray:
        """Embed texts with the text encoder: (n, d) float32, L2-normalised.

        Args:
            texts: a list of strings, or an (n, d) embedding array (only normalised).
            batch_size: texts per forward pass (default: the space's).
            show_progress_bar: a progress bar (default: the space's).
            device: as in :meth:`encode_images`.
        """
        return self._encode(texts, "text", batch_size, show_progress_bar, device)

    def get_encoder(self, modality: Modality) -> Any:
        """The space's encoder of one modality (``"image"`` or ``"text"``), loaded on first use.

        For its building blocks: an image encoder's ``transform`` and ``encode_preprocessed``,
        a text encoder's ``tokenize`` and ``encode_tokens`` (:mod:`asif.open_clip` uses them).
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}.")
        return self._get_encoder(modality)

    # ----------------------------------------------------------------- relative vectors
    def transform_images(self, images: Any) -> sp.csr_array:
        """Sparse relative vectors (n, N) of images (any input ``encode_images`` takes)."""
        return self.snapshot().transform(self.encode_images(images), "image")

    def transform_texts(self, texts: Sequence[str] | np.ndarray) -> sp.csr_array:
        """Sparse relative vectors (n, N) of texts (strings or an (n, d) embedding array)."""
        return self.snapshot().transform(self.encode_texts(texts), "text")

    def similarity(self, images: Any, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """Scores (n_images, n_texts) in [0, 1]: inner products of the relative vectors."""
        snap = self.snapshot()
        image_vectors = snap.transform(self.encode_images(images), "image")
        text_vectors = snap.transform(self.encode_texts(texts), "text")
        return sparse_scores(image_vectors, text_vectors)

    def zero_shot_classifier(
        self,
        classnames: Sequence[str],
        templates: str | Sequence[Template] = ("a photo of a {}.",),
        *,
        combine: Literal["mean", "max"] = DEFAULT.combine,
        prompt_embeddings: np.ndarray | None = None,
    ) -> ZeroShotClassifier:
        """A zero-shot classifier: each class is described by its prompts in the shared space.

        Args:
            classnames: the C class names.
            templates: a named set (``"cifar"``, ``"simple"``, ... of :mod:`asif.templates`),
                one template string, or T templates: ``str.format`` strings with ``{}`` or
                ``{c}`` for the class name (``"a photo of a {}."``), or callables.
            combine: ``"max"``: the best score over a class's prompts (the reference code,
                and asif's measured default); ``"mean"``: the normalised mean of a class's
                prompt vectors (CLIP_benchmark's).
            prompt_embeddings: (C, T, d) text embeddings of the prompts, to skip the text encoder.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> space.zero_shot_classifier(["a", "b"], prompt_embeddings=np.eye(3)[:2, None])
            ZeroShotClassifier(n_classes=2, n_templates=1, combine='max')
        """
        return ZeroShotClassifier(
            self, classnames, templates, combine=combine, prompt_embeddings=prompt_embeddings
        )

    # ----------------------------------------------------------------- retrieval, explanations
    def index_gallery(self, items: Any, modality: Modality | None = None) -> Gallery:
        """Embed items once and keep their relative vectors, to search them many times.

        Args:
            items: image paths or PIL images, texts, or an (m, d) embedding array.
            modality: ``"image"`` or ``"text"``; required for strings (paths and texts are both
                strings) and for arrays whose width fits both encoders.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> space.index_gallery(np.eye(3), modality="text")
            Gallery(modality='text', n_items=3)
        """
        return index_gallery(self, items, modality)

    def search(
        self,
        queries: Any,
        gallery: Any,
        top_k: int = 10,
        *,
        query_modality: Modality | None = None,
        gallery_modality: Modality | None = None,
        chunk: int | None = None,
    ) -> SearchResult:
        """The ``top_k`` best gallery items per query (image→text, text→image, or same modality).

        Queries and gallery are each a :class:`~asif.retrieval.Gallery`, raw inputs, an
        embedding array or sparse relative vectors; strings need an explicit modality. See
        :func:`asif.retrieval.search`.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> texts = space.index_gallery(np.eye(3), modality="text")
            >>> space.search(np.eye(3)[[2]], texts, top_k=1, query_modality="image").indices
            array([[2]])
        """
        return search(
            self,
            queries,
            gallery,
            top_k,
            query_modality=query_modality,
            gallery_modality=gallery_modality,
            chunk=chunk,
        )

    def explain_similarity(self, image: Any, text: Any, top: int | None = 5) -> Explanation:
        """The anchor pairs behind ``similarity([image], [text])`` (:func:`asif.explain.explain_similarity`)."""
        return explain_similarity(self, image, text, top=top)

    # ----------------------------------------------------------------- internals
    def _current(self) -> _State:
        state = self._state
        if state is None:
            raise RuntimeError(
                "this RelativeSpace has no anchors yet: call fit(images, captions) or "
                "set_anchors(AnchorSet(...)) first."
            )
        return state

    def _check_params(self) -> None:
        resolve_k(self.k, 1)
        check_p(self.p)
        check_hubness(self.hubness)
        if isinstance(self.temperature, bool) or not (
            isinstance(self.temperature, (int, float)) and self.temperature > 0
        ):
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}.")
        if not isinstance(self.center, (bool, np.bool_)):
            raise ValueError(f"center must be True or False, got {self.center!r}.")

    def _build_state(self, anchors: AnchorSet, *, hub_drift: int = 0) -> _State:
        """Index ``anchors`` (centred copies when ``center``) into a new state.

        The state's hub counts start from the set's stored ``hub_statistics`` (computed over
        the uncentred anchors, so not when ``center``): a query then searches no anchors to
        weight the hubs.
        """
        specs = _index_specs(self.index)
        means = {} if self.center else None
        indexes = {}
        for modality in MODALITIES:
            spec = specs[modality]
            if isinstance(spec, AnchorSearch):
                if self.center:
                    raise ValueError(
                        "center=True indexes centred copies of the anchors: pass a factory "
                        "string or a callable vectors -> index, not an index built beforehand."
                    )
                dim = getattr(anchors, f"{modality}_dim")
                indexes[modality] = check_index(spec, len(anchors), dim, f"the {modality} index")
                continue
            vectors: Any
            if means is not None:
                embeddings = normalize_rows(getattr(anchors, f"{modality}_embeddings"))
                means[modality] = embeddings.mean(axis=0)
                vectors = normalize_rows(
                    embeddings - means[modality], what=f"centred {modality} anchors"
                )
            else:
                blocks = anchors.blocks(modality)
                vectors = blocks[0] if len(blocks) == 1 else blocks
            indexes[modality] = build_index(spec, vectors, gpu=self.gpu)
        hubs = {} if means is not None else dict(anchors.hub_statistics)
        return _State(
            anchors,
            indexes["image"],
            indexes["text"],
            next(_versions),
            means,
            hubs,
            hub_drift=hub_drift if hubs else 0,
        )

    def _encode(
        self,
        inputs: Any,
        modality: Modality,
        batch_size: int | None,
        show: bool | None,
        device: str | None = None,
    ) -> np.ndarray:
        embeddings = _embedding_array(inputs, modality)
        if embeddings is not None:
            return normalize_rows(embeddings, what=f"{modality} embeddings")
        if modality == "text":
            inputs = _check_texts(inputs, "texts")
        options: dict[str, Any] = {} if self.cache is None else {"cache": self.cache}
        if device is not None:
            options["device"] = device
        encoded = self._get_encoder(modality).encode(
            inputs,
            batch_size=self.batch_size if batch_size is None else batch_size,
            show_progress_bar=self.show_progress_bar if show is None else show,
            **options,
        )
        return normalize_rows(np.asarray(encoded), what=f"{modality} embeddings")

    def _get_encoder(self, modality: Modality) -> Any:
        """The encoder of ``modality``; with a cache, a named one loads only when a row is
        missing from it (:class:`asif.encoders.deferred.DeferredEncoder`)."""
        with self._encoder_lock:
            if modality not in self._encoders:
                spec = self.image_encoder if modality == "image" else self.text_encoder

                def load() -> Any:
                    return _load_encoder(spec, modality, self.device, self.show_progress_bar)

                self._encoders[modality] = _deferred(spec, modality, load, self.cache)
            return self._encoders[modality]

    def _check_encoders(self, anchors: AnchorSet, current: AnchorSet | None = None) -> None:
        """Refuse anchors made by other encoders than this space's (or than its anchors')."""
        from asif.encoders import canonical_encoder_name

        for modality in MODALITIES:
            theirs = getattr(anchors, f"{modality}_encoder")
            for what, mine in (
                ("this space's", self._encoder_name(modality)),
                ("the current anchors'", getattr(current, f"{modality}_encoder", None)),
            ):
                if (
                    theirs
                    and mine
                    and canonical_encoder_name(theirs, modality)
                    != canonical_encoder_name(mine, modality)
                ):
                    raise ValueError(
                        f"these anchors' {modality} embeddings were made by {theirs!r} but "
                        f"{what} {modality} encoder is {mine!r}: queries and anchors must come "
                        f"from one encoder. Use RelativeSpace({modality}_encoder={theirs!r}) or "
                        "re-embed the anchors; the space is unchanged."
                    )

    def _encoder_name(self, modality: Modality) -> str | None:
        """The canonical name of this space's encoder (None for an object without a name)."""
        from asif.encoders import canonical_encoder_name

        if modality in self._encoders:
            return getattr(self._encoders[modality], "name", None)
        spec = self.image_encoder if modality == "image" else self.text_encoder
        name = spec if isinstance(spec, str) else getattr(spec, "name", None)
        return canonical_encoder_name(name, modality) if isinstance(name, str) else None


def _load_encoder(
    spec: str | Any, modality: Modality, device: str | None, show: bool | None = None
) -> Any:
    if not isinstance(spec, str):
        if not hasattr(spec, "encode"):
            raise TypeError(f"{modality}_encoder must be a name or have an encode() method.")
        return spec
    from asif import encoders

    if modality == "image":
        return encoders.load_image_encoder(spec, device=device)
    return encoders.load_text_encoder(spec, device=device, show_progress_bar=show)


def _deferred(spec: Any, modality: Modality, load: Any, cache: Any) -> Any:
    """A named encoder behind a cache, deferred until a row is missing; else ``load()``."""
    if not isinstance(spec, str) or cache is None:
        return load()
    from asif.encoders.cache import resolve_cache
    from asif.encoders.deferred import DeferredEncoder

    return DeferredEncoder(spec, modality, load=load, cache=resolve_cache(cache))


def _updated_hubs(
    state: _State, *, keep: np.ndarray | None = None, added: int = 0
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """The state's hub counts after a removal or an addition (:func:`update_hub_counts`)."""
    with state.lock:
        counts = dict(state.hub_counts)
    n = len(state.anchors)
    return update_hub_counts(counts, n, keep=keep, added=added, drift=state.hub_drift)


def _index_specs(index: Any) -> dict[str, Any]:
    """The index spec per modality from ``RelativeSpace(index=...)``."""
    if isinstance(index, dict):
        if set(index) != set(MODALITIES):
            raise ValueError(
                f"index as a dict needs exactly the keys 'image' and 'text', got {sorted(index)}."
            )
        return dict(index)
    if not isinstance(index, str) and not callable(index):
        raise TypeError(
            "an index object serves one modality: pass index={'image': ..., 'text': ...}, or "
            "a factory string such as 'Flat', or a callable vectors -> index."
        )
    return {m: index for m in MODALITIES}


def _updatable(state: _State, method: str) -> bool:
    """True when both indexes can derive an updated copy (``with_added`` / ``without``) and
    the space is not centred (a new mean moves every centred vector)."""
    return state.means is None and all(
        hasattr(index, method) for index in (state.image_index, state.text_index)
    )


def _embedding_array(inputs: Any, modality: Modality) -> np.ndarray | None:
    """``inputs`` as an (n, d) embedding array, or None when they are raw inputs."""
    if _is_torch_tensor(inputs):
        if inputs.ndim != 2:  # pixels: the image encoder takes them
            return None
        inputs = inputs.detach().cpu().float().numpy()
    if not isinstance(inputs, np.ndarray) or inputs.dtype == object:
        return None
    if modality == "image" and inputs.dtype == np.uint8 and inputs.ndim in (3, 4):
        return None  # an image (H x W x 3) or a batch of images (n x H x W x 3)
    if inputs.ndim != 2:
        kinds = (
            "a uint8 image array (H x W x 3 or n x H x W x 3) or " if modality == "image" else ""
        )
        raise ValueError(
            f"{modality} inputs as an array must be {kinds}a 2-D (n, d) embedding array, got "
            f"shape {inputs.shape} and dtype {inputs.dtype}; for one embedding pass x[None, :]."
        )
    return inputs


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "ndim") and hasattr(x, "detach")


def _check_texts(texts: Any, what: str) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{what} must be a list of strings, not one string: wrap it in a list.")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"{what} must be strings; item {bad[0]} is a {type(texts[bad[0]]).__name__}."
        )
    return texts


def _paths(images: Any) -> list[str] | None:
    """The images as path strings when they are all paths, else None."""
    if isinstance(images, (str, os.PathLike, np.ndarray)) or _is_torch_tensor(images):
        return None
    if images and all(isinstance(x, (str, os.PathLike)) for x in images):
        return [os.fspath(x) for x in images]
    return None


def _cache_param(cache: Any) -> bool | str | None:
    """The ``cache`` argument as a manifest can hold it (a cache object by its folder)."""
    if cache is None or isinstance(cache, bool):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return os.fspath(cache)
    root = getattr(cache, "root", None)
    if root is None:
        raise ValueError(f"cannot record cache={cache!r}: pass True, a folder or None.")
    return os.fspath(root)


def _concat_column(a: list[str] | None, b: list[str] | None, na: int, nb: int) -> list[str] | None:
    if a is None and b is None:
        return None
    return (a if a is not None else [""] * na) + (b if b is not None else [""] * nb)


def _compress(column: list[str] | None, keep: np.ndarray) -> list[str] | None:
    return None if column is None else list(itertools.compress(column, keep.tolist()))
