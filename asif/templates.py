"""Prompt templates for zero-shot classification, as plain constants selectable by name.

Example:
    >>> get_templates("simple")
    ('a photo of a {}.',)
    >>> len(get_templates("cifar"))
    18
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["CIFAR_TEMPLATES", "GENERIC_TEMPLATES", "SIMPLE_TEMPLATES", "TEMPLATES", "get_templates"]

Template = str | Callable[[str], str]

SIMPLE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

# The 18 CIFAR prompts of CLIP's zero-shot evaluation (as used by CLIP_benchmark).
CIFAR_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)

# A short set that suits most photo datasets.
GENERIC_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "simple": SIMPLE_TEMPLATES,
    "cifar": CIFAR_TEMPLATES,
    "generic": GENERIC_TEMPLATES,
}


def get_templates(templates: str | Sequence[Template]) -> tuple[Template, ...]:
    """Templates by name (``"simple"``, ``"cifar"``, ``"generic"``) or a user's own list, checked."""
    if isinstance(templates, str):
        if templates in TEMPLATES:
            return TEMPLATES[templates]
        if "{}" in templates:
            return (templates,)
        raise ValueError(
            f"unknown template set {templates!r}: use one of {sorted(TEMPLATES)}, "
            "or a list of str.format templates such as ['a photo of a {}.']."
        )
    result = tuple(templates)
    if not result:
        raise ValueError("templates is empty: give at least one, e.g. ['a photo of a {}.'].")
    for t in result:
        if not callable(t) and (not isinstance(t, str) or "{}" not in t):
            raise ValueError(
                f"template {t!r} has no '{{}}' for the class name and is not callable."
            )
    return result
