"""The zero-shot classifier's prompts: named template sets, one template, ``{c}`` templates."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.templates import CIFAR_TEMPLATES, format_prompts, get_templates


class RecordingTextEncoder:
    """A text encoder that remembers what it was asked to embed (deterministic vectors)."""

    name = "recording-text"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts, batch_size=32, show_progress_bar=None):  # type: ignore[no-untyped-def]
        self.seen.extend(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=8) for s in seeds])


def _space(encoder: RecordingTextEncoder) -> RelativeSpace:
    rng = np.random.default_rng(0)
    anchors = AnchorSet(rng.normal(size=(50, 4)), rng.normal(size=(50, 8)))
    return RelativeSpace(k=5, text_encoder=encoder).set_anchors(anchors)


def test_a_named_template_set_is_its_templates_not_its_letters() -> None:
    encoder = RecordingTextEncoder()
    clf = _space(encoder).zero_shot_classifier(["cat", "dog"], templates="cifar")
    assert clf.n_templates == len(CIFAR_TEMPLATES) == 18
    assert encoder.seen == format_prompts(["cat", "dog"], CIFAR_TEMPLATES)
    assert "a blurry photo of a dog." in encoder.seen


def test_one_template_string_and_clip_benchmark_style_templates() -> None:
    encoder = RecordingTextEncoder()
    space = _space(encoder)
    assert space.zero_shot_classifier(["cat"], templates="a sketch of a {}.").n_templates == 1
    assert encoder.seen == ["a sketch of a cat."]
    encoder.seen.clear()
    space.zero_shot_classifier(["cat", "dog"], templates=["a {c}.", "the {}!", str.upper])
    assert encoder.seen == ["a cat.", "the cat!", "CAT", "a dog.", "the dog!", "DOG"]


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ("nonsense", "unknown template set"),
        (["a photo"], "no '{}' or '{c}'"),
        ([], "templates is empty"),
        ([3], "no '{}' or '{c}'"),
    ],
)
def test_templates_without_a_place_for_the_name_are_refused(templates, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        _space(RecordingTextEncoder()).zero_shot_classifier(["cat"], templates=templates)


def test_class_names_must_be_strings() -> None:
    space = _space(RecordingTextEncoder())
    with pytest.raises(TypeError, match="class names must be strings"):
        space.zero_shot_classifier(["cat", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not one string"):
        space.zero_shot_classifier("cat")  # type: ignore[arg-type]


def test_get_templates_by_name() -> None:
    assert get_templates("simple") == ("a photo of a {}.",)
    assert get_templates(("x {}",)) == ("x {}",)
