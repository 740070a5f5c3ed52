"""Prompt templates for zero-shot classification, as plain constants selectable by name.

Example:
    >>> get_templates("simple")
    ('a photo of a {}.',)
    >>> len(get_templates("cifar"))
    18
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "CIFAR_TEMPLATES",
    "GENERIC_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "TEMPLATES",
    "format_prompts",
    "get_templates",
]

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
    """Templates by name (``"simple"``, ``"cifar"``, ``"generic"``), one template, or a list.

    A template is a ``str.format`` string with ``{}`` or ``{c}`` (CLIP_benchmark's style) where
    the class name goes, or a callable ``name -> prompt``.

    Raises:
        ValueError: an unknown name, an empty list, or a template with no place for the name.

    Example:
        >>> get_templates("a sketch of a {c}.")
        ('a sketch of a {c}.',)
        >>> get_templates(["a {}", "the {c}"])
        ('a {}', 'the {c}')
    """
    if isinstance(templates, str):
        if templates in TEMPLATES:
            return TEMPLATES[templates]
        if _has_slot(templates):
            return (templates,)
        raise ValueError(
            f"unknown template set {templates!r}: use one of {sorted(TEMPLATES)}, a template "
            "such as 'a photo of a {}.', or a list of them."
        )
    result = tuple(templates)
    if not result:
        raise ValueError("templates is empty: give at least one, e.g. ['a photo of a {}.'].")
    for t in result:
        if not callable(t) and (not isinstance(t, str) or not _has_slot(t)):
            raise ValueError(
                f"template {t!r} has no '{{}}' or '{{c}}' for the class name and is not callable."
            )
    return result


def format_prompts(classnames: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """All prompts, class-major: class 0 with every template, then class 1, ...

    Example:
        >>> format_prompts(["cat", "dog"], ["a {}.", "my {c}", lambda c: c.upper()])
        ['a cat.', 'my cat', 'CAT', 'a dog.', 'my dog', 'DOG']
    """
    return [t(c) if callable(t) else t.format(c, c=c) for c in classnames for t in templates]


def _has_slot(template: str) -> bool:
    return "{}" in template or "{c}" in template or "{0}" in template
