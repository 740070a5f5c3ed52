"""``asif predict`` on real photos with real encoders: right classes, every output format."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from asif.cli import main
from tests import realdata


@pytest.fixture(scope="module")
def folders(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    space = realdata.default_space()
    photos = root / "photos"
    photos.mkdir()
    for path in realdata.sample_photos():
        shutil.copy(path, photos / path.name)
    return {
        "space": space.save(root / "space"),
        "anchors": space.anchors_.save(root / "anchors"),
        "photos": photos,
        "root": root,
    }


def _truth() -> dict[str, str]:
    return {path.name: label for path, label in realdata.sample_photos().items()}


def test_predict_a_flat_folder_of_photos(folders, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    classes = sorted(set(_truth().values()))
    out = folders["root"] / "out.jsonl"
    argv = ["predict", str(folders["space"]), str(folders["photos"]), "--classes", *classes]
    assert main([*argv, "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = {Path(r["path"]).name: r["class"] for r in rows}
    print(f"\nasif predict on scikit-image photos: {got}")
    assert got == _truth()
    assert all(0 < r["probability"] <= 1 and len(r["top_anchors"]) == 3 for r in rows)
    cat = next(r for r in rows if r["path"].endswith("chelsea.png"))
    assert any("cat" in caption for caption in cat["top_anchors"])

    assert main(argv) == 0  # the table
    table = capsys.readouterr().out
    assert "chelsea.png" in table and "cup of coffee" in table and "%" in table


def test_predict_from_an_anchor_set_with_files_for_classes_and_templates(folders) -> None:  # type: ignore[no-untyped-def]
    classes = folders["root"] / "classes.txt"
    classes.write_text("# what is in the photos\n" + "\n".join(sorted(set(_truth().values()))))
    templates = folders["root"] / "templates.txt"
    templates.write_text("a photo of a {}.\na picture of the {c}.\n")
    out = folders["root"] / "out.csv"
    files = [str(folders["photos"] / name) for name in sorted(_truth())][:3]
    argv = ["predict", str(folders["anchors"]), *files, "--classes-file", str(classes)]
    argv += ["--templates", str(templates), "--top-anchors", "1", "-o", str(out)]
    assert main(argv) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == sorted(_truth())[:3]
    assert all(r["class"] == _truth()[Path(r["path"]).name] for r in rows)
    assert all(r["top_anchors"] and "|" not in r["top_anchors"] for r in rows)


def test_predict_errors_are_clear(folders, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    space, photos = str(folders["space"]), str(folders["photos"])
    assert main(["predict", space, str(folders["root"] / "nope.jpg"), "--classes", "a", "b"]) == 2
    assert "no such image file or folder" in capsys.readouterr().err
    assert main(["predict", space, photos, "--classes-file", "no-such-set"]) == 2
    assert "neither a class-name set" in capsys.readouterr().err
    assert main(["predict", space, photos, "--classes", "a", "b", "-o", "x.txt"]) == 2
    assert "name it .csv or .jsonl" in capsys.readouterr().err
    missing = str(folders["root"] / "missing-space")
    assert main(["predict", missing, photos, "--classes", "a", "b"]) == 2
    assert "not a folder" in capsys.readouterr().err
