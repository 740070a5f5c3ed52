"""Readers for caption pairs and image folders, on small files and on the real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from asif.data import (
    CaptionPairs,
    list_image_files,
    read_caption_pairs,
    read_image_folder,
)


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff\xd8")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "images" / "a.jpg", tmp_path / "images" / "b.jpg"]
    _touch(*paths)
    return paths


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_resolves_paths_against_its_folder(tmp_path, images) -> None:
    rows = [
        {"image": "images/a.jpg", "caption": "a cat", "split": "train"},
        {"image": "images/a.jpg", "caption": "a tabby cat", "split": "train"},
        {"image": str(images[1]), "caption": "a dog", "split": "dev"},
    ]
    file = tmp_path / "captions.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pairs = read_caption_pairs(file)
    assert len(pairs) == 3
    assert pairs.image_paths == [str(images[0]), str(images[0]), str(images[1])]
    assert pairs.captions == ["a cat", "a tabby cat", "a dog"]
    assert pairs.splits == ["train", "train", "dev"]
    dev = pairs.select("dev")
    assert dev.captions == ["a dog"] and dev.image_paths == [str(images[1])]
    with pytest.raises(ValueError, match="unknown split"):
        pairs.select("test")


def test_jsonl_other_caption_field_and_no_split(tmp_path, images) -> None:
    file = tmp_path / "labels.jsonl"
    file.write_text(json.dumps({"image": "images/a.jpg", "label": "tench"}) + "\n")
    pairs = read_caption_pairs(file, caption_key="label")
    assert pairs.captions == ["tench"] and pairs.splits is None
    with pytest.raises(ValueError, match="no split column"):
        pairs.select("train")


def test_jsonl_errors_name_the_line(tmp_path, images) -> None:
    file = tmp_path / "c.jsonl"
    file.write_text('{"image": "images/a.jpg", "caption": "x"}\n{"image": "images/b.jpg"}\n')
    with pytest.raises(ValueError, match=r"c.jsonl:2: no 'caption' field"):
        read_caption_pairs(file)
    file.write_text('{"image": "images/a.jpg", "caption": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"c.jsonl:2: not valid JSON"):
        read_caption_pairs(file)


def test_missing_images_and_empty_files(tmp_path, images) -> None:
    file = tmp_path / "c.jsonl"
    file.write_text(json.dumps({"image": "images/zzz.jpg", "caption": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match=r"zzz\.jpg"):
        read_caption_pairs(file)
    assert read_caption_pairs(file, check_files=False).image_paths[0].endswith("zzz.jpg")
    file.write_text("\n")
    with pytest.raises(ValueError, match="no image-caption pairs"):
        read_caption_pairs(file)
    with pytest.raises(FileNotFoundError, match="caption file not found"):
        read_caption_pairs(tmp_path / "absent.jsonl")


def test_format_is_guessed_or_given(tmp_path, images) -> None:
    file = tmp_path / "captions.txt"
    file.write_text(json.dumps({"image": "images/a.jpg", "caption": "x"}) + "\n")
    with pytest.raises(ValueError, match="format"):
        read_caption_pairs(file)
    assert read_caption_pairs(file, format="jsonl").captions == ["x"]
    with pytest.raises(ValueError, match="unknown caption format"):
        read_caption_pairs(file, format="parquet")


# --- CSV -------------------------------------------------------------------------------------


def test_csv_and_tsv(tmp_path, images) -> None:
    file = tmp_path / "pairs.csv"
    with file.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption", "split"])
        writer.writerow(["images/a.jpg", "a cat, sitting", "train"])
        writer.writerow(["images/b.jpg", 'a "dog"', "dev"])
    pairs = read_caption_pairs(file)
    assert pairs.captions == ["a cat, sitting", 'a "dog"']
    assert pairs.image_paths == [str(p) for p in images] and pairs.splits == ["train", "dev"]

    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("file\ttext\nimages/b.jpg\ta dog\n")
    pairs = read_caption_pairs(tsv, image_key="file", caption_key="text")
    assert pairs.captions == ["a dog"] and pairs.splits is None


def test_csv_missing_column(tmp_path, images) -> None:
    file = tmp_path / "pairs.csv"
    file.write_text("image,text\nimages/a.jpg,a cat\n")
    with pytest.raises(ValueError, match="no 'caption' column"):
        read_caption_pairs(file)


# --- COCO ------------------------------------------------------------------------------------


def test_coco_caption_json(tmp_path) -> None:
    _touch(tmp_path / "val" / "1.jpg", tmp_path / "val" / "2.jpg")
    data = {
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
        "annotations": [
            {"id": 10, "image_id": 2, "caption": "A dog. "},
            {"id": 11, "image_id": 1, "caption": "A cat."},
            {"id": 12, "image_id": 2, "caption": "A brown dog."},
        ],
    }
    file = tmp_path / "annotations" / "captions_val.json"
    file.parent.mkdir()
    file.write_text(json.dumps(data))
    pairs = read_caption_pairs(file, image_root=tmp_path / "val")
    assert pairs.captions == ["A dog.", "A cat.", "A brown dog."]
    assert [Path(p).name for p in pairs.image_paths] == ["2.jpg", "1.jpg", "2.jpg"]

    data["annotations"].append({"id": 13, "image_id": 3, "caption": "?"})
    file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown image ids"):
        read_caption_pairs(file, image_root=tmp_path / "val")
    file.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="'annotations'"):
        read_caption_pairs(file)


# --- image folders ---------------------------------------------------------------------------


def test_image_folder_classes_labels_and_order(tmp_path) -> None:
    _touch(
        tmp_path / "dog" / "2.jpg",
        tmp_path / "dog" / "1.PNG",
        tmp_path / "cat" / "x.jpeg",
        tmp_path / ".hidden" / "y.jpg",
    )
    (tmp_path / "dog" / "readme.txt").write_text("skip me")
    (tmp_path / "dog" / ".3.jpg").write_bytes(b"")
    folder = read_image_folder(tmp_path)
    assert folder.classnames == ["cat", "dog"]
    assert [Path(p).name for p in folder.paths] == ["x.jpeg", "1.PNG", "2.jpg"]
    assert folder.labels == [0, 1, 1] and len(folder) == 3


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_image_folder(tmp_path / "absent")
    with pytest.raises(ValueError, match="no class folders"):
        read_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        read_image_folder(tmp_path)
    with pytest.raises(ValueError, match="no image files"):
        list_image_files(tmp_path / "empty")
    assert list_image_files(tmp_path / "empty", allow_empty=True) == []


# --- the real data ---------------------------------------------------------------------------


def test_real_coco_mini_captions(data_dir) -> None:
    pairs = read_caption_pairs(data_dir / "coco-mini" / "captions.jsonl")
    assert isinstance(pairs, CaptionPairs)
    assert len(pairs) == 1195 and len(set(pairs.image_paths)) == 239
    assert all(Path(p).is_absolute() for p in pairs.image_paths)
    assert all(c.strip() for c in pairs.captions)


def test_real_flickr8k_splits(data_dir) -> None:
    pairs = read_caption_pairs(data_dir / "flickr8k" / "captions.jsonl")
    assert len(pairs) == 35455
    dev = pairs.select("dev")
    assert len(set(dev.image_paths)) == 1000 and len(dev) == 5000


def test_real_cifar10_test_folder(data_dir) -> None:
    folder = read_image_folder(data_dir / "cifar10-test")
    assert len(folder) == 10000 and len(folder.classnames) == 10
    assert folder.classnames[3] == "cat"
    assert folder.labels.count(3) == 1000


def test_named_anchor_sources_concatenate(data_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from asif.eval.sources import load_anchor_pairs

    monkeypatch.setenv("ASIF_DATA", str(data_dir))
    coco = load_anchor_pairs("coco-mini")
    both = load_anchor_pairs(["coco-mini", "imagenet-sample"])
    assert len(coco) == 1195 and len(both) == 1195 + 1000
    assert both.captions[:1195] == coco.captions
    assert both.captions[1195].startswith("a photo of a ")
    with pytest.raises(ValueError, match="no anchor sources"):
        load_anchor_pairs([])
