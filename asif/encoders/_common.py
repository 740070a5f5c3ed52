"""Small helpers shared by the image and text encoders: device choice and progress bars."""

from __future__ import annotations

import logging

logger = logging.getLogger("asif")


def resolve_device(device: str | None) -> str:
    """Return ``device``, or ``"cuda"`` when it is None and a CUDA GPU is present, else ``"cpu"``."""
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def show_progress(show_progress_bar: bool | None) -> bool:
    """Resolve ``show_progress_bar``: None means "show when the asif logger is at INFO or lower"."""
    if show_progress_bar is None:
        return logger.getEffectiveLevel() <= logging.INFO
    return bool(show_progress_bar)
