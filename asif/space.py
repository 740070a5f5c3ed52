"""``RelativeSpace``: anchors + one FAISS index per modality + (k, p) = a multimodal model.

Images and texts are each compared with the anchors of their own modality; their top-k sparse
relative vectors then share the same N axes (one per anchor pair), where they can be compared.

Hot swap: everything a query reads (anchors, both indexes, a version number) is one immutable
``_State``; ``set_anchors``, ``add_anchors`` and ``remove_anchors`` build a new one and replace the
reference in one assignment, so a query running in another thread sees the old anchors or the new
ones, never a mix. Zero-shot classifiers rebuild their class vectors when the version changes.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from asif import retrieval, storage
from asif.anchors import AnchorSet
from asif.explain import Explanation, explain_similarity
from asif.index import AnchorIndex
from asif.relative import check_p, normalize_rows, relative_from_topk, sparse_scores
from asif.retrieval import Gallery
from asif.transforms import anchor_k_occurrence, hub_weights, resolve_k, reweight_columns
from asif.zeroshot import ZeroShotClassifier

__all__ = ["RelativeSpace"]

Modality = Literal["image", "text"]
_versions = itertools.count(1)
SPACE_FORMAT = "asif-space"
SPACE_FORMAT_VERSION = 1
_PARAMS = ("k", "p", "hubness", "index", "gpu", "device", "batch_size", "show_progress_bar")


@dataclass(frozen=True)
class _State:
    """Everything a query reads, swapped as one object so readers never see a mix."""

    anchors: AnchorSet
    image_index: AnchorIndex
    text_index: AnchorIndex
    version: int
    hub_counts: dict = field(default_factory=dict, compare=False)
    """(modality, k) -> anchor k-occurrence, filled on first use (an idempotent cache)."""


class RelativeSpace:
    """A training-free image-text model: inputs become sparse vectors over N anchor pairs.

    Args:
        k: anchors kept per input (capped at N), or ``"auto"`` (the default): one anchor in
            twenty, up to 1,600 (:func:`asif.transforms.adaptive_k`).
        p: exponent on the kept cosines; larger p gives the closest anchors more weight.
        hubness: alpha of the hub weights (:func:`asif.transforms.hub_weights`): anchors found
            in many anchors' top-k lists count less. 0 turns them off. They cost one search of
            up to 4,096 anchors per modality, on the first query after the anchors change.
            The defaults ``k="auto", p=3.5, hubness=0.5`` are asif's measured default
            (``asif.evaluate.DEFAULT``); ``k=800, p=8, hubness=0`` (and ``combine="max"``) is
            the paper's algorithm exactly.
        image_encoder: encoder name (``"default"``: offline EfficientNet-Lite0) or an object
            with ``encode(inputs, batch_size=..., show_progress_bar=...) -> (n, d) array``.
        text_encoder: likewise for captions (``"default"``: offline all-MiniLM-L6-v2).
        index: ``"Flat"`` for exact search, or a FAISS index-factory string.
        gpu: ``"auto"`` (GPUs when FAISS has them), ``True`` or ``False``.
        device: torch device for the encoders (``None``: cuda when present, else cpu).
        batch_size: encoder batch size.
        show_progress_bar: encoder progress bars (``None``: quiet unless logging at INFO).
        cache: embedding cache for image files and texts (``True``: ``~/.cache/asif``, or a
            folder); ``None`` encodes everything every time.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> anchors = AnchorSet(rng.normal(size=(100, 16)), rng.normal(size=(100, 8)))
        >>> space = RelativeSpace(k=10, p=8).set_anchors(anchors)
        >>> space.transform_images(rng.normal(size=(3, 16))).shape
        (3, 100)
    """

    def __init__(
        self,
        k: int | Literal["auto"] = "auto",
        p: float = 3.5,
        *,
        hubness: float = 0.5,
        image_encoder: str | Any = "default",
        text_encoder: str | Any = "default",
        index: str = "Flat",
        gpu: bool | str = "auto",
        device: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        cache: bool | str | None = None,
    ) -> None:
        self.k = k
        self.p = p
        self.hubness = hubness
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.index = index
        self.gpu = gpu
        self.device = device
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.cache = cache
        self._state: _State | None = None
        self._encoders: dict[Modality, Any] = {}
        self._encoder_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        n = "unfitted" if self._state is None else f"n_anchors={len(self._state.anchors)}"
        return f"RelativeSpace(k={self.k!r}, p={self.p}, hubness={self.hubness}, {n})"

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
            images: N image paths or PIL images (or an (N, d) array of image embeddings).
            captions: N captions, caption i describing image i.
            ids: optional N unique anchor ids.
        """
        captions = list(captions)
        image_embeddings = self._embed_unique(images)
        if image_embeddings.shape[0] != len(captions):
            raise ValueError(
                f"got {image_embeddings.shape[0]} images but {len(captions)} captions: "
                "anchors are pairs, caption i must describe image i."
            )
        anchors = AnchorSet(
            image_embeddings,
            self._embed(captions, "text"),
            captions=captions,
            ids=ids,
            image_paths=[str(x) for x in images] if _all_paths(images) else None,
            image_encoder=self._encoder_name("image"),
            text_encoder=self._encoder_name("text"),
        )
        return self.set_anchors(anchors)

    def set_anchors(self, anchors: AnchorSet) -> RelativeSpace:
        """Use ``anchors`` as the axes of the space; readers switch atomically to the new set.

        No anchor is copied for exact search: float32 arrays (memory-mapped ones included) are
        searched in place; float16 ones are converted to float32 once.

        Raises:
            ValueError: the anchors were made by other encoders than this space's (the space
                is left unchanged).

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> space.n_anchors_
            3
        """
        resolve_k(self.k, 1)
        check_p(self.p)
        if not float(self.hubness) >= 0:
            raise ValueError(
                f"hubness must be >= 0 (0 turns hub weights off), got {self.hubness!r}."
            )
        if not isinstance(anchors, AnchorSet):
            raise TypeError(f"set_anchors expects an AnchorSet, got {type(anchors).__name__}.")
        self._check_encoders(anchors)
        image_index = AnchorIndex(anchors.image_embeddings, factory=self.index, gpu=self.gpu)
        text_index = AnchorIndex(anchors.text_embeddings, factory=self.index, gpu=self.gpu)
        with self._write_lock:
            self._state = _State(anchors, image_index, text_index, next(_versions))
        return self

    def add_anchors(self, anchors: AnchorSet) -> RelativeSpace:
        """Append anchor pairs; existing anchors keep their ids and positions.

        The new pairs' ids must not be in use (``ids=space.next_id_ + np.arange(m)`` gives fresh
        ones). Exact search copies only the new rows, so the cost does not grow with N.

        Example:
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> more = AnchorSet(np.ones((1, 3)), np.ones((1, 3)), ids=[space.next_id_])
            >>> space.add_anchors(more).anchors_.ids.tolist()
            [0, 1, 2, 3]
        """
        if not isinstance(anchors, AnchorSet):
            raise TypeError(f"add_anchors expects an AnchorSet, got {type(anchors).__name__}.")
        with self._write_lock:
            state = self._snapshot()
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
            image_index = state.image_index.with_added(anchors.image_embeddings)
            text_index = state.text_index.with_added(anchors.text_embeddings)
            merged = AnchorSet._trusted(
                image_index,
                text_index,
                (old.image_dim, old.text_dim),
                ids=np.concatenate([old.ids, anchors.ids]),
                captions=_concat_column(old.captions, anchors.captions, len(old), len(anchors)),
                image_paths=_concat_column(
                    old.image_paths, anchors.image_paths, len(old), len(anchors)
                ),
                image_encoder=old.image_encoder or anchors.image_encoder,
                text_encoder=old.text_encoder or anchors.text_encoder,
            )
            self._state = _State(merged, image_index, text_index, next(_versions))
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
            state = self._snapshot()
            old = state.anchors
            positions = old.positions(ids)
            if np.unique(positions).size != positions.size:
                raise ValueError("remove_anchors got the same id more than once.")
            if positions.size == 0:
                return self
            image_index = state.image_index.without(positions)
            text_index = state.text_index.without(positions)
            keep = np.ones(len(old), dtype=bool)
            keep[positions] = False
            remaining = AnchorSet._trusted(
                image_index,
                text_index,
                (old.image_dim, old.text_dim),
                ids=old.ids[keep],
                captions=_compress(old.captions, keep),
                image_paths=_compress(old.image_paths, keep),
                image_encoder=old.image_encoder,
                text_encoder=old.text_encoder,
            )
            self._state = _State(remaining, image_index, text_index, next(_versions))
        return self

    @property
    def next_id_(self) -> int:
        """An id above every current anchor id: ``next_id_ + np.arange(m)`` are free ids."""
        return int(self._snapshot().anchors.ids.max()) + 1

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
        """Write parameters, encoder names and anchors to the folder ``path``, atomically.

        ``RelativeSpace.load(path)`` gives a space with identical predictions (with float32
        storage). Encoders given as objects are recorded by their ``name``.

        Example:
            >>> import tempfile
            >>> space = RelativeSpace(k=2).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
            >>> folder = space.save(Path(tempfile.mkdtemp()) / "space")
            >>> RelativeSpace.load(folder).k
            2
        """
        state = self._snapshot()
        with storage.atomic_folder(path) as tmp:
            state.anchors.save(tmp / "anchors", dtype=dtype)
            params: dict[str, Any] = {name: getattr(self, name) for name in _PARAMS}
            manifest = {
                "format": SPACE_FORMAT,
                "format_version": SPACE_FORMAT_VERSION,
                "params": params,
                "image_encoder": self._encoder_name("image"),
                "text_encoder": self._encoder_name("text"),
            }
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

        Args:
            path: the folder.
            mmap: memory-map the anchor embeddings.
            verify: check sha256 of the anchor files (see :meth:`AnchorSet.load`).
            **overrides: constructor arguments that replace the saved ones (e.g.
                ``image_encoder=my_encoder``, ``device="cpu"``).
        """
        manifest = storage.read_manifest(path, SPACE_FORMAT, SPACE_FORMAT_VERSION)
        unknown = set(overrides) - {*_PARAMS, "image_encoder", "text_encoder"}
        if unknown:
            raise TypeError(f"unknown RelativeSpace arguments: {sorted(unknown)}.")
        kwargs = {**manifest.get("params", {})}
        for side in ("image_encoder", "text_encoder"):
            if manifest.get(side) is not None:
                kwargs[side] = manifest[side]
        kwargs.update(overrides)
        space = cls(**kwargs)
        anchors = AnchorSet.load(Path(path) / "anchors", mmap=mmap, verify=verify)
        return space.set_anchors(anchors)

    @property
    def anchors_(self) -> AnchorSet:
        """The current anchor set."""
        return self._snapshot().anchors

    @property
    def n_anchors_(self) -> int:
        """N, the number of anchor pairs (= the number of axes)."""
        return len(self._snapshot().anchors)

    # ----------------------------------------------------------------- encoding
    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Embed raw images with the image encoder: (n, d) float32, L2-normalised."""
        return self._embed(images, "image")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with the text encoder: (n, d) float32, L2-normalised."""
        return self._embed(texts, "text")

    # ----------------------------------------------------------------- relative vectors
    def transform_images(self, images: Sequence[Any] | np.ndarray) -> sp.csr_array:
        """Sparse relative vectors (n, N) of images (raw inputs or an (n, d) embedding array)."""
        return self._transform(self._snapshot(), self._embed(images, "image"), "image")

    def transform_texts(self, texts: Sequence[str] | np.ndarray) -> sp.csr_array:
        """Sparse relative vectors (n, N) of texts (strings or an (n, d) embedding array)."""
        return self._transform(self._snapshot(), self._embed(texts, "text"), "text")

    def similarity(
        self, images: Sequence[Any] | np.ndarray, texts: Sequence[str] | np.ndarray
    ) -> np.ndarray:
        """Scores (n_images, n_texts) in [0, 1]: inner products of the relative vectors."""
        state = self._snapshot()
        image_vectors = self._transform(state, self._embed(images, "image"), "image")
        text_vectors = self._transform(state, self._embed(texts, "text"), "text")
        return sparse_scores(image_vectors, text_vectors)

    def zero_shot_classifier(
        self,
        classnames: Sequence[str],
        templates: Sequence[str | Callable[[str], str]] = ("a photo of a {}.",),
        *,
        combine: Literal["mean", "max"] = "max",
        prompt_embeddings: np.ndarray | None = None,
    ) -> ZeroShotClassifier:
        """A zero-shot classifier: each class is described by its prompts in the shared space.

        Args:
            classnames: the C class names.
            templates: T ``str.format`` templates (``"a photo of a {}."``) or callables.
            combine: ``"max"``: the best score over a class's prompts (the reference code,
                and asif's measured default); ``"mean"``: the normalised mean of a class's
                prompt vectors.
            prompt_embeddings: (C, T, d) text embeddings of the prompts, to skip the text encoder.
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
        return retrieval.index_gallery(self, items, modality)

    def search(
        self,
        queries: Any,
        gallery: Any,
        top_k: int = 10,
        *,
        query_modality: Modality | None = None,
        gallery_modality: Modality | None = None,
        chunk: int | None = None,
    ) -> retrieval.SearchResult:
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
        return retrieval.search(
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
    def _snapshot(self) -> _State:
        state = self._state
        if state is None:
            raise RuntimeError(
                "this RelativeSpace has no anchors yet: call fit(images, captions) or "
                "set_anchors(AnchorSet(...)) first."
            )
        return state

    def _transform(self, state: _State, embeddings: np.ndarray, modality: Modality) -> sp.csr_array:
        index = state.image_index if modality == "image" else state.text_index
        if embeddings.shape[1] != index.d:
            raise ValueError(
                f"{modality} embeddings have dimension {embeddings.shape[1]} but the anchors' "
                f"{modality} embeddings have {index.d}: encode queries with the encoder that made "
                "the anchors."
            )
        k = resolve_k(self.k, index.n)
        p = check_p(self.p)
        weights = self._hub_weights(state, modality, k)
        parts = []
        for cosines, indices in index.iter_search(embeddings, k):
            vectors = relative_from_topk(indices, cosines, index.n, p)
            parts.append(vectors if weights is None else reweight_columns(vectors, weights))
        return sp.csr_array(sp.vstack(parts, format="csr"))

    def _hub_weights(self, state: _State, modality: Modality, k: int) -> np.ndarray | None:
        alpha = float(self.hubness)  # validated by set_anchors; hub_weights rejects alpha < 0
        if alpha == 0:
            return None
        key = (modality, k)
        counts = state.hub_counts.get(key)
        if counts is None:
            index = state.image_index if modality == "image" else state.text_index
            counts = state.hub_counts.setdefault(key, anchor_k_occurrence(index, k))
        return hub_weights(counts, alpha)

    def _embed(self, inputs: Any, modality: Modality) -> np.ndarray:
        if isinstance(inputs, np.ndarray) and inputs.dtype != object:
            if inputs.ndim != 2:
                raise ValueError(
                    f"{modality} embeddings must be a 2-D array (n, d), got shape {inputs.shape}; "
                    "for one vector pass x[None, :]."
                )
            return normalize_rows(inputs, what=f"{modality} embeddings")
        if isinstance(inputs, str) and modality == "text":
            raise ValueError("texts must be a list of strings, not one string: wrap it in a list.")
        options = {} if self.cache is None else {"cache": self.cache}
        embeddings = self._get_encoder(modality).encode(
            inputs, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, **options
        )
        return normalize_rows(np.asarray(embeddings), what=f"{modality} embeddings")

    def _embed_unique(self, images: Any) -> np.ndarray:
        """Image embeddings, encoding each distinct path once (captioned images often repeat)."""
        if not _all_paths(images):
            return self._embed(images, "image")
        paths = [str(x) for x in images]
        unique, inverse = np.unique(np.array(paths, dtype=object), return_inverse=True)
        return self._embed(list(unique), "image")[inverse]

    def _get_encoder(self, modality: Modality) -> Any:
        with self._encoder_lock:
            if modality not in self._encoders:
                spec = self.image_encoder if modality == "image" else self.text_encoder
                self._encoders[modality] = _load_encoder(spec, modality, self.device)
            return self._encoders[modality]

    def _check_encoders(self, anchors: AnchorSet, current: AnchorSet | None = None) -> None:
        """Refuse anchors made by other encoders than this space's (or than its anchors')."""
        for modality in ("image", "text"):
            theirs = getattr(anchors, f"{modality}_encoder")
            for what, mine in (
                ("this space's", self._encoder_name(modality)),  # type: ignore[arg-type]
                ("the current anchors'", getattr(current, f"{modality}_encoder", None)),
            ):
                if theirs and mine and _canonical(theirs, modality) != _canonical(mine, modality):
                    raise ValueError(
                        f"these anchors' {modality} embeddings were made by {theirs!r} but "
                        f"{what} {modality} encoder is {mine!r}: queries and anchors must come "
                        f"from one encoder. Use RelativeSpace({modality}_encoder={theirs!r}) or "
                        "re-embed the anchors; the space is unchanged."
                    )

    def _encoder_name(self, modality: Modality) -> str | None:
        spec = self.image_encoder if modality == "image" else self.text_encoder
        if modality in self._encoders:
            return getattr(self._encoders[modality], "name", None)
        return spec if isinstance(spec, str) else getattr(spec, "name", None)


def _load_encoder(spec: str | Any, modality: Modality, device: str | None) -> Any:
    if not isinstance(spec, str):
        if not hasattr(spec, "encode"):
            raise TypeError(f"{modality}_encoder must be a name or have an encode() method.")
        return spec
    from asif import encoders

    load = encoders.load_image_encoder if modality == "image" else encoders.load_text_encoder
    return load(spec, device=device)


def _canonical(name: str, modality: str) -> str:
    """The registry's canonical name for an encoder name (the name itself if it has none)."""
    from asif.encoders import _registry

    resolve = _registry.resolve_image_name if modality == "image" else _registry.resolve_text_name
    try:
        return resolve(name).name
    except (ValueError, OSError):
        return name


def _concat_column(a: list[str] | None, b: list[str] | None, na: int, nb: int) -> list[str] | None:
    if a is None and b is None:
        return None
    return (a if a is not None else [""] * na) + (b if b is not None else [""] * nb)


def _compress(column: list[str] | None, keep: np.ndarray) -> list[str] | None:
    return None if column is None else list(itertools.compress(column, keep.tolist()))


def _all_paths(items: Any) -> bool:
    from os import PathLike

    return not isinstance(items, np.ndarray) and all(isinstance(x, (str, PathLike)) for x in items)
