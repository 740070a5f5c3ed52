"""The open_clip face of a space, and a loader for CLIP_benchmark.

Code written for open_clip models runs on an asif space::

    model, _, preprocess = create_model_and_transforms("my-space/")    # a saved space (or anchors)
    tokenizer = get_tokenizer(model)
    image = model.encode_image(preprocess(pil_image)[None])           # (1, N) relative vector
    text = model.encode_text(tokenizer(["a photo of a cat"]))        # (1, N)
    probs = (model.logit_scale.exp() * image @ text.T).softmax(dim=-1)

The features are the space's relative vectors (one axis per anchor pair), made by the one code
path :meth:`SpaceSnapshot.transform <asif.snapshot.SpaceSnapshot.transform>` from the embeddings
of the space's own encoders (:meth:`ImageEncoder.encode_preprocessed
<asif.encoders.ImageEncoder.encode_preprocessed>`, :meth:`TextEncoder.encode_tokens
<asif.encoders.TextEncoder.encode_tokens>`), in float32 even under an outer ``torch.autocast``.
They are unit vectors already, so ``normalize`` changes nothing; ``logit_scale.exp()`` is
``1 / space.temperature``, so the softmax above is ``predict_proba``'s.

A zero-shot classifier built open_clip's way (the normalised mean of a class's normalised
prompt vectors, as CLIP_benchmark does) is asif's ``combine="mean"``.

CLIP_benchmark: :func:`load_asif` has its loader signature; ``python -m asif.open_clip eval
--model_type asif --model my-space/ ...`` runs ``clip_benchmark eval`` with it registered.

Example:
    >>> import numpy as np, torch
    >>> from asif import AnchorSet, RelativeSpace
    >>> space = RelativeSpace(k=2, p=1, hubness=0).set_anchors(AnchorSet(np.eye(3), np.eye(3)))
    >>> features = to_torch(space.snapshot().transform(np.array([[1.0, 0.5, 0.0]]), "image"))
    >>> features.dtype, features.shape
    (torch.float32, torch.Size([1, 3]))
    >>> print(features.numpy().round(3))
    [[0.894 0.447 0.   ]]
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from asif.space import RelativeSpace

__all__ = [
    "AsifCLIP",
    "Tokenizer",
    "create_model_and_transforms",
    "get_tokenizer",
    "load_asif",
    "register_clip_benchmark",
    "to_torch",
]


class AsifCLIP(torch.nn.Module):
    """An open_clip-style model over a :class:`~asif.RelativeSpace`.

    Build it with :func:`create_model_and_transforms`. Its only parameter is ``logit_scale``
    (``log(1 / space.temperature)``, frozen); the encoders are the space's, moved to the
    model's device when it moves.

    Attributes:
        space: the space.
        image_encoder: the space's image encoder (its ``transform`` is the preprocessing).
        text_encoder: the space's text encoder.
        output_dim: N, the number of anchors (the length of every feature vector).
    """

    def __init__(self, space: RelativeSpace, device: str | None = None) -> None:
        super().__init__()
        self.space = space
        self.image_encoder = space.get_encoder("image")
        self.text_encoder = space.get_encoder("text")
        for encoder, needs in (
            (self.image_encoder, ("transform", "encode_preprocessed")),
            (self.text_encoder, ("tokenize", "encode_tokens", "pad_token_id")),
        ):
            missing = [n for n in needs if not hasattr(encoder, n)]
            if missing:
                raise TypeError(
                    f"the open_clip model needs asif's own encoders; {type(encoder).__name__} "
                    f"has no {', '.join(missing)}. Load the space with encoder names."
                )
        device = device or getattr(self.image_encoder, "device", None) or "cpu"
        scale = torch.tensor(math.log(1.0 / space.temperature), dtype=torch.float32)
        self.logit_scale = torch.nn.Parameter(scale.to(device), requires_grad=False)
        self.device = str(self.logit_scale.device)

    def __repr__(self) -> str:
        return (
            f"AsifCLIP(n_anchors={self.output_dim}, image_encoder={self.image_encoder.name!r}, "
            f"text_encoder={self.text_encoder.name!r}, device={self.device!r})"
        )

    @property
    def output_dim(self) -> int:
        return self.space.n_anchors_

    def _apply(self, fn: Any, recurse: bool = True) -> AsifCLIP:
        super()._apply(fn, recurse)
        self.device = str(self.logit_scale.device)  # the encoders follow at their next call
        return self

    def encode_image(
        self, image: torch.Tensor, normalize: bool = False, *, sparse: bool = False
    ) -> torch.Tensor:
        """Relative vectors (B, N) of preprocessed pixels (B, 3, H, W), float32.

        Args:
            image: pixels made by the ``preprocess`` transform (``image_encoder.transform``).
            normalize: accepted for open_clip's signature; the vectors are unit (or zero)
                already.
            sparse: return a sparse CSR tensor instead of a dense one.
        """
        embeddings = self.image_encoder.encode_preprocessed(image, device=self.device)
        vectors = self.space.snapshot().transform(embeddings, "image")
        return to_torch(vectors, sparse=sparse, device=image.device)

    def encode_text(
        self, text: torch.Tensor, normalize: bool = False, *, sparse: bool = False
    ) -> torch.Tensor:
        """Relative vectors (B, N) of token ids (B, L) from :func:`get_tokenizer`, float32.

        Args:
            text: token ids, padded with the text encoder's ``pad_token_id``.
            normalize: as in :meth:`encode_image`.
            sparse: as in :meth:`encode_image`.
        """
        embeddings = self.text_encoder.encode_tokens(text, device=self.device)
        vectors = self.space.snapshot().transform(embeddings, "text")
        return to_torch(vectors, sparse=sparse, device=text.device)

    def forward(
        self, image: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """``(image_features, text_features, logit_scale.exp())``, as open_clip's CLIP returns."""
        image_features = None if image is None else self.encode_image(image, normalize=True)
        text_features = None if text is None else self.encode_text(text, normalize=True)
        return image_features, text_features, self.logit_scale.exp()


class Tokenizer:
    """open_clip's tokenizer interface over a text encoder: texts -> padded token ids.

    Example:
        >>> from asif.encoders import load_text_encoder
        >>> tokenizer = Tokenizer(load_text_encoder("default", device="cpu"))
        >>> tokenizer(["a cat", "a photo of a dog"]).shape
        torch.Size([2, 7])
    """

    def __init__(self, text_encoder: Any, context_length: int | None = None) -> None:
        self.text_encoder = text_encoder
        self.context_length = context_length

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> Any:
        """Token ids (n, L): L is ``context_length`` when given, else the longest text's."""
        length = context_length if context_length is not None else self.context_length
        return self.text_encoder.tokenize(texts, context_length=length)["input_ids"]


def create_model_and_transforms(
    space_or_folder: RelativeSpace | str | os.PathLike[str],
    pretrained: str | None = None,
    *,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> tuple[AsifCLIP, Any, Any]:
    """An open_clip-style ``(model, preprocess_train, preprocess_val)`` for a space.

    Args:
        space_or_folder: a :class:`~asif.RelativeSpace`, or what
            :meth:`RelativeSpace.from_pretrained` takes (a saved space, an anchor-set folder,
            a Hugging Face repo id).
        pretrained: accepted for open_clip's signature; must be None (or ``""``): the space
            is the model.
        device: where the encoders run (default: the space's ``device``).
        **overrides: constructor arguments for a loaded space (``k=``, ``temperature=``...).

    Returns:
        The model, and the image encoder's preprocessing twice: nothing is trained, so the
        training transform is the evaluation one.
    """
    if pretrained not in (None, "", "none", "None"):
        raise ValueError(
            f"pretrained={pretrained!r}: an asif space has no pretrained tags; pass the space "
            "folder (or repo id) as the model name and pretrained=None."
        )
    space = _space(space_or_folder, device, overrides)
    model = AsifCLIP(space, device=None if device is None else str(device))
    model.eval()
    transform = model.image_encoder.transform
    return model, transform, transform


def get_tokenizer(
    model_or_space: AsifCLIP | RelativeSpace | str | os.PathLike[str],
    context_length: int | None = None,
) -> Tokenizer:
    """The tokenizer for :meth:`AsifCLIP.encode_text`: a model, a space, or a space folder
    (pass the model when you have one: a folder loads its text encoder again)."""
    if isinstance(model_or_space, AsifCLIP):
        return Tokenizer(model_or_space.text_encoder, context_length)
    space = _space(model_or_space, None, {})
    return Tokenizer(space.get_encoder("text"), context_length)


def load_asif(
    model_name: str,
    pretrained: str | None = None,
    cache_dir: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[AsifCLIP, Any, Tokenizer]:
    """CLIP_benchmark's loader signature: ``(model, transform, tokenizer)`` for a space.

    Args:
        model_name: a space folder, anchor-set folder or Hugging Face repo id.
        pretrained: must be None (``clip_benchmark eval --pretrained none``).
        cache_dir: the Hugging Face cache for a repo id.
        device: where the encoders run.
    """
    options = {} if cache_dir is None else {"cache_dir": cache_dir}
    space = RelativeSpace.from_pretrained(model_name, device=str(device), **options)
    model, _, transform = create_model_and_transforms(space, pretrained, device=device)
    return model, transform, get_tokenizer(model)


def register_clip_benchmark(name: str = "asif") -> None:
    """Make ``clip_benchmark``'s ``--model_type asif`` load spaces with :func:`load_asif`.

    CLIP_benchmark 1.6.2's top-k ``accuracy`` calls ``float()`` on a one-element array, which
    NumPy 2.4 refuses; where that fails, it is replaced by the same computation with
    ``.item()`` (the zero-shot classification metrics are unchanged).
    """
    try:
        from clip_benchmark import models
        from clip_benchmark.metrics import zeroshot_classification
    except ImportError:
        raise ImportError("CLIP_benchmark is not installed: pip install clip-benchmark") from None
    models.TYPE2FUNC[name] = load_asif
    if name not in models.MODEL_TYPES:
        models.MODEL_TYPES.append(name)
    try:
        zeroshot_classification.accuracy(torch.ones(1, 1), torch.zeros(1, dtype=torch.long))
    except TypeError:
        zeroshot_classification.accuracy = _topk_accuracy


def _topk_accuracy(
    output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """CLIP_benchmark's ``accuracy`` (fraction of rows whose target is in the top k), NumPy 2.4-safe."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def to_torch(
    vectors: sp.csr_array, *, sparse: bool = False, device: str | torch.device | None = None
) -> torch.Tensor:
    """Sparse relative vectors as a float32 torch tensor: dense (n, N), or sparse CSR.

    Made outside any autocast region, so they stay float32.
    """
    vectors = sp.csr_array(vectors, dtype=np.float32)
    device = torch.device("cpu") if device is None else torch.device(device)
    with torch.autocast(device.type, enabled=False):
        if sparse:
            vectors.sort_indices()
            return torch.sparse_csr_tensor(
                torch.from_numpy(vectors.indptr.astype(np.int64)),
                torch.from_numpy(vectors.indices.astype(np.int64)),
                torch.from_numpy(vectors.data),
                size=vectors.shape,
                dtype=torch.float32,
                device=device,
                check_invariants=True,
            )
        return torch.from_numpy(vectors.toarray()).to(device)


def _space(
    space_or_folder: RelativeSpace | str | os.PathLike[str],
    device: str | torch.device | None,
    overrides: dict[str, Any],
) -> RelativeSpace:
    if isinstance(space_or_folder, RelativeSpace):
        if overrides:
            raise TypeError(
                f"{sorted(overrides)} configure a space being loaded; set them on the space."
            )
        return space_or_folder
    if device is not None:
        overrides = {"device": str(device), **overrides}
    return RelativeSpace.from_pretrained(space_or_folder, **overrides)


def _main(argv: Sequence[str] | None = None) -> None:
    """``python -m asif.open_clip eval --model_type asif --model SPACE ...``: CLIP_benchmark's
    command line with the ``asif`` model type registered."""
    register_clip_benchmark()
    from clip_benchmark import cli

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli.main()


if __name__ == "__main__":
    _main()
