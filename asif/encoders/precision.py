"""Reduced precision for the frozen encoders: bf16 or fp16 where the device runs it natively.

An image encoder runs its convolutions under ``torch.autocast`` (its model is wrapped, so its
``fingerprint`` changes and cached rows of the two precisions never mix); a text encoder's
weights are cast. Embeddings stay float32 and L2-normalised on the way out.

Measured against fp32 in ``benchmarks/bench_build.py`` (cosine of each embedding to its fp32
one, and the change of zero-shot predictions). CPUs without bf16/fp16 instructions emulate them
about 30 times slower than fp32 (EfficientNet-Lite0 on an AVX2 AMD EPYC: 6-10 s an image), so
there :func:`check_precision` refuses them.

Example:
    >>> check_precision("fp32", "cpu")
    'fp32'
    >>> check_precision("fp8", "cpu")
    Traceback (most recent call last):
    ValueError: precision must be one of ('fp32', 'bf16', 'fp16'), got 'fp8'.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "apply_precision", "check_precision"]

PRECISIONS = ("fp32", "bf16", "fp16")
_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def check_precision(precision: str, device: str | None) -> str:
    """``precision`` if ``device`` runs it natively, else a ``ValueError`` that says what does.

    fp32 runs everywhere; on CUDA, fp16 always and bf16 where ``torch.cuda.is_bf16_supported()``;
    on a CPU, only with the instructions for it (bf16: AVX512-BF16 or AMX; fp16: AVX512-FP16 or
    AMX-FP16).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "fp32":
        return precision
    import torch

    kind = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    if kind == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError("this CUDA device has no bf16: use --precision fp16 (or fp32).")
        return precision
    if kind == "cpu":
        flags = _cpu_flags()
        if not flags & set(_CPU_FLAGS[precision]):
            raise ValueError(
                f"{precision} needs a CPU with {' or '.join(_CPU_FLAGS[precision])}; this one "
                f"would emulate it, about 30 times slower than fp32. Use fp32 here (the "
                "default), or a CUDA device."
            )
        return precision
    raise ValueError(f"{precision} is supported on CUDA and CPU devices, not on {kind!r}.")


def apply_precision(encoder: Any, precision: str) -> Any:
    """Make an :class:`~asif.encoders.ImageEncoder` or :class:`~asif.encoders.TextEncoder` run
    at ``precision`` (in place; returns it). Its ``fingerprint`` changes with it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == getattr(encoder, "precision", "fp32"):
        return encoder
    if getattr(encoder, "precision", "fp32") != "fp32":
        raise ValueError(f"{encoder!r} runs at {encoder.precision} already: load it again.")
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if hasattr(encoder, "data_config"):  # an image encoder: autocast around its model
        encoder.model = _autocast(encoder.model, dtype)
    else:  # sentence-transformers handles half-precision weights and returns float32
        encoder.model.to(dtype)
    encoder.precision = precision
    return encoder


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_autocast_class: type | None = None


def _autocast(inner: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``inner`` run under ``torch.autocast(dtype)``, returning float32 (one class, made once:
    torch is imported only when a precision is applied)."""
    global _autocast_class
    if _autocast_class is None:
        import torch

        class Autocast(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module, dtype: torch.dtype) -> None:
                super().__init__()
                self.inner = inner
                self.dtype = dtype
                self.num_features = getattr(inner, "num_features", None)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                with torch.autocast(x.device.type, dtype=self.dtype):
                    return self.inner(x).float()

            def extra_repr(self) -> str:
                return f"dtype={self.dtype}"

        _autocast_class = Autocast
    return _autocast_class(inner, dtype)
