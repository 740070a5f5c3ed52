"""The generalisation suites on tiny real subsets: JSON layout, and the numbers against ``asif eval``,
the public API, hand computations and invariances between suites."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asif.cli import main
from asif.eval.robustness import expit, fit_line, logit
from asif.eval.suites.common import (
    AnchorPool,
    AnchorSpec,
    allocate,
    knn_scores,
    nearest_class_mean_scores,
)

if (
    importlib.util.find_spec("imagecorruptions") is None
    or importlib.util.find_spec("easy_vqa") is None
):
    pytest.skip("needs the eval extra: pip install 'asif[eval]'", allow_module_level=True)

LIMIT = 40
CORRUPT = ["--corruptions", "gaussian_noise", "fog", "--severities", "1", "5"]
TESTS = ("cifar10", "cifar10-c", "photos", "edges", "silhouettes")


def _run(
    argv: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    out = tmp / "results.json"
    assert main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _eval_top1(argv: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    results, _ = _run(["eval", *argv], tmp, capsys)
    return {r["method"]: r["top1"] for r in results["classification"]}


@pytest.fixture(scope="module")
def shift(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("shift")
    out, plot = tmp / "shift.json", tmp / "shift.png"
    argv = [
        "eval",
        "--suite",
        "shift",
        "--anchor-set",
        "coco-mini",
        "--limit",
        str(LIMIT),
        *CORRUPT,
    ]
    argv += ["--boot", "200", "--json", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    return {"results": json.loads(out.read_text()), "plot": plot}


def test_shift_json_layout(shift: dict[str, Any]) -> None:
    results = shift["results"]
    assert set(results) == {"suite", "config", "tables", "notes"} and results["suite"] == "shift"
    assert results["config"]["test_images"] == dict.fromkeys(TESTS, LIMIT)
    rows = results["tables"]["accuracy"]
    assert [r["method"] for r in rows] == ["paper", "asif", "label-transfer"]
    for row in rows:
        assert row["anchors"] == "coco-mini" and row["n_anchors"] == 1195
        for test in TESTS:
            low, high = row[f"{test}_ci"]
            assert 0 <= low <= row[test] <= high <= 1, (test, row)
    assert set(results["tables"]["robustness"]) == {
        "cifar10 -> cifar10-c",
        "photos -> edges",
        "photos -> silhouettes",
    }
    assert shift["plot"].read_bytes()[:4] == b"\x89PNG"
    assert any("glass_blur" in n or "fog" in n for n in results["notes"])  # the NumPy-2 repair


def test_shift_clean_accuracy_equals_asif_eval(
    shift: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {r["method"]: r for r in shift["results"]["tables"]["accuracy"]}
    for folder, test in (("cifar10-test", "cifar10"), ("texture-shape/edges", "edges")):
        argv = ["--anchors", "coco-mini", "--images", folder, "--limit", str(LIMIT)]
        expected = _eval_top1(argv, tmp_path, capsys)
        for method in ("paper", "asif", "label-transfer"):
            # the same predictions: accuracies agree to rounding (1/40 apart otherwise)
            assert rows[method][test] == pytest.approx(expected[method], abs=1e-12), (
                folder,
                method,
            )


def test_shift_clean_accuracy_equals_the_public_classifier(
    shift: dict[str, Any], data_dir: Path
) -> None:
    from asif import RelativeSpace
    from asif.data import read_image_folder
    from asif.eval import balanced_subset
    from asif.eval.sources import load_anchor_pairs

    pairs = load_anchor_pairs("coco-mini")
    space = RelativeSpace(k=800, p=8, hubness=0, cache=True).fit(pairs.image_paths, pairs.captions)
    folder = read_image_folder(data_dir / "cifar10-test")
    chosen = balanced_subset(np.asarray(folder.labels), LIMIT, 0)
    clf = space.zero_shot_classifier(folder.classnames, templates="cifar", combine="max")
    predicted = clf.predict([folder.paths[i] for i in chosen])
    truth = [folder.classnames[folder.labels[i]] for i in chosen]
    paper = shift["results"]["tables"]["accuracy"][0]
    assert paper["method"] == "paper"
    assert paper["cifar10"] == pytest.approx(
        np.mean(np.asarray(predicted) == np.asarray(truth)), abs=1e-12
    )


def test_shift_corruption_cells_average_to_cifar10c(shift: dict[str, Any]) -> None:
    results = shift["results"]
    for row in results["tables"]["accuracy"]:
        cells = [r for r in results["tables"]["corruptions"] if r["method"] == row["method"]]
        by_corruption = [r["top1"] for r in cells if r["severity"] == "all"]
        by_severity = [r["top1"] for r in cells if r["corruption"] == "all"]
        assert len(by_corruption) == 2 and len(by_severity) == 2
        assert np.mean(by_corruption) == pytest.approx(row["cifar10-c"])
        assert np.mean(by_severity) == pytest.approx(row["cifar10-c"])


def test_shift_effective_robustness_matches_its_rows(shift: dict[str, Any]) -> None:
    for name, table in shift["results"]["tables"]["robustness"].items():
        clean = np.array([r["clean"] for r in table["rows"]])
        shifted = np.array([r["shifted"] for r in table["rows"]])
        refit = fit_line(clean, shifted)
        assert table["fit"]["slope"] == pytest.approx(refit.slope), name
        for r in table["rows"]:
            line = table["fit"]["slope"] * logit(r["clean"]) + table["fit"]["intercept"]
            assert r["effective_robustness"] == pytest.approx(r["shifted"] - expit(line))
        accuracy = {row["method"]: row for row in shift["results"]["tables"]["accuracy"]}
        clean_test, shifted_test = name.split(" -> ")
        for r in table["rows"]:
            method = r["name"].split(" | ")[-1]
            assert (r["clean"], r["shifted"]) == (
                accuracy[method][clean_test],
                accuracy[method][shifted_test],
            )


def test_anchors_suite_agrees_with_the_shift_suite(
    shift: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "eval",
        "--suite",
        "anchors",
        "--anchor-set",
        "coco-mini",
        "--limit",
        str(LIMIT),
        *CORRUPT,
    ]
    argv += ["--sizes", "300", "all", "--equal-size", "300", "--draws", "2", "--boot", "100"]
    results, printed = _run(argv, tmp_path, capsys)
    assert results["suite"] == "anchors" and "accuracy vs number of anchor pairs" in printed
    curve = {r["n_anchors"]: r for r in results["tables"]["curve"]}
    assert sorted(curve) == [300, 1195] and curve[300]["draws"] == 2 and curve[1195]["draws"] == 1
    # all of coco-mini with asif's default is the shift suite's coco-mini row
    asif_row = next(r for r in shift["results"]["tables"]["accuracy"] if r["method"] == "asif")
    for test in TESTS:
        assert curve[1195][test] == asif_row[test], test
    # the diversity table's coco-mini@300 is the curve's 300 (same spec, same draws)
    (diverse,) = results["tables"]["diversity"]
    assert diverse["anchors"] == "coco-mini@300"
    for test in TESTS:
        assert diverse[test] == curve[300][test]
    assert curve[300]["n_anchor_images"] <= 239


def test_compositional_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--suite", "compositional", "--limit", "8", "--boot", "100"]
    results, printed = _run([*argv, "--plot", str(tmp_path / "c.png")], tmp_path, capsys)
    config = results["config"]
    assert (config["n_anchors"], config["n_test"], config["n_test_unseen"]) == (
        16 * 2,
        24 * 8,
        8 * 8,
    )
    rows = {r["method"]: r for r in results["tables"]["accuracy"]}
    assert set(rows) >= {
        "asif",
        "label-transfer",
        "vision NCM (combinations)",
        "vision NCM (colour x shape)",
    }
    # a classifier of the 16 seen combinations never names an unseen one
    assert rows["vision NCM (combinations)"]["unseen"] == 0.0
    for row in rows.values():
        for part in ("seen", "unseen"):
            assert row[part] <= min(row[f"{part}_colour"], row[f"{part}_shape"]) + 1e-12
    assert "seen colour" in printed and (tmp_path / "c.png").stat().st_size > 1000


def test_easy_vqa_labels_from_its_questions() -> None:
    from asif.eval.suites.compositional import easy_vqa_images

    train, test = easy_vqa_images("train"), easy_vqa_images("test")
    assert (len(train), len(test)) == (3578, 888)  # 11% of the images stay undetermined
    # the first train images, as they look (checked by eye)
    seen = {Path(p).name: (c, s) for p, c, s in train}
    expected = {
        "0.png": ("blue", "rectangle"),
        "1.png": ("blue", "triangle"),
        "2.png": ("red", "triangle"),
        "3.png": ("brown", "rectangle"),
        "4.png": ("red", "circle"),
        "5.png": ("yellow", "triangle"),
        "6.png": ("red", "circle"),
        "7.png": ("black", "circle"),
    }
    assert {k: seen[k] for k in expected if k in seen} == {
        k: v for k, v in expected.items() if k in seen
    }
    assert len(set(expected) & set(seen)) >= 6


def test_language_suite(
    shift: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--suite", "language", "--anchor-set", "coco-mini", "--limit", str(LIMIT)]
    argv += ["--shots", "1", "10", "--draws", "2", "--boot", "100"]
    results, _ = _run(argv, tmp_path, capsys)
    rows = results["tables"]["accuracy"]
    cifar = [r for r in rows if r["classes"] == "cifar10"]
    everything = next(r for r in cifar if r["data"] == "all pairs" and r["method"] == "asif (asif)")
    asif_row = next(r for r in shift["results"]["tables"]["accuracy"] if r["method"] == "asif")
    assert everything["cifar10"] == asif_row["cifar10"]  # = asif eval's, by the shift test
    # at most 10 labelled coco-mini images per CIFAR class: 10-shot draws take all of them, so the
    # 10-shot rows are the 'labelled images' rows, whatever the draw
    (labelled,) = [r for r in results["tables"]["labelled"] if r["classes"] == "cifar10"]
    assert max(v for k, v in labelled.items() if k not in ("pair", "classes")) <= 10
    for method in ("asif (asif)", "vision NCM", "vision k-NN"):
        a = next(r for r in cifar if r["data"] == "labelled images" and r["method"] == method)
        b = next(r for r in cifar if r["data"] == "10-shot" and r["method"] == method)
        assert a["cifar10"] == b["cifar10"] and b["cifar10_sd"] == 0.0, method
        one = next(r for r in cifar if r["data"] == "1-shot" and r["method"] == method)
        assert one["n_images"] == sum(
            1 for k, v in labelled.items() if k not in ("pair", "classes") and v > 0
        )


def test_caption_labels_by_hand() -> None:
    from asif.eval.suites.language import CLASS_WORDS, caption_labels

    words = CLASS_WORDS["texture-shape"]
    classes = list(words)
    paths = ["a"] * 3 + ["b"] * 2 + ["c", "d", "e"]
    captions = [
        "A man rides a bike.",  # a: bicycle in 2 of 3 captions
        "a cyclist on a road",
        "a man outside",
        "a dirt bike in the mud",  # b: a dirt bike is no bicycle
        "a man on a dirt bike",
        "a dog and a cat",  # c: two classes, a tie
        "a photo of a tabby cat.",  # d: cat
        "teddy bear on a bed",  # e: not a bear
    ]
    labels = caption_labels(paths, captions, words)
    assert labels == {
        "a": classes.index("bicycle"),
        "b": -1,
        "c": -1,
        "d": classes.index("cat"),
        "e": -1,
    }


def test_vision_baselines_by_hand() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = np.array([0, 1, 1])
    query = np.array([[0.8, 0.6]])
    # class 1 mean: (0.6, 1.8) / |.| ; cos with (0.8, 0.6) = (0.48 + 1.08) / sqrt(0.36 + 3.24)
    ncm = nearest_class_mean_scores(train, labels, 3, query)
    np.testing.assert_allclose(ncm[0, :2], [0.8, 1.56 / np.sqrt(3.6)])
    assert ncm[0, 2] == -np.inf
    # k = 2 nearest: train 2 (cos 0.96), train 0 (cos 0.8)
    np.testing.assert_allclose(knn_scores(train, labels, 2, query, k=2), [[0.8, 0.96]])
    np.testing.assert_allclose(knn_scores(train, labels, 2, query, k=99), [[0.8, 0.96 + 0.6]])


def test_anchor_specs_allocation_and_nested_draws() -> None:
    assert AnchorSpec.parse("a+b@10") == AnchorSpec(("a", "b"), 10)
    assert AnchorSpec.parse("a+b@10").name == "a+b@10" and AnchorSpec.parse("a").source == "a"
    for bad in ("a+a", "@5", "a+", "a@0"):
        with pytest.raises(ValueError):
            AnchorSpec.parse(bad)
    assert allocate(10, [100, 3, 100]) == [4, 3, 3]
    assert allocate(7, [2, 2, 10]) == [2, 2, 3]
    with pytest.raises(ValueError, match="have 5"):
        allocate(6, [2, 3])
    rng = np.random.default_rng(0)
    sources = {
        name: {
            "paths": [f"{name}{i}.jpg" for i in range(n)],
            "captions": [f"{name} {i}" for i in range(n)],
            "images": rng.normal(size=(n, 4)),
            "texts": rng.normal(size=(n, 3)),
        }
        for name, n in (("x", 50), ("y", 20))
    }
    pool = AnchorPool("default", None, None, sources, seed=1)
    small, large = pool.rows(AnchorSpec(("x", "y"), 10)), pool.rows(AnchorSpec(("x", "y"), 40))
    assert [len(small[s]) for s in "xy"] == [5, 5] and [len(large[s]) for s in "xy"] == [20, 20]
    assert all(set(small[s]) <= set(large[s]) for s in "xy")  # nested
    other = pool.rows(AnchorSpec(("x", "y"), 10, draw=1))
    assert any(set(other[s]) != set(small[s]) for s in "xy")  # another draw, other pairs
    anchors = pool.anchors(AnchorSpec(("x", "y"), 10))
    assert len(anchors) == 10 and anchors.captions[:5] == [f"x {i}" for i in small["x"]]


def test_suite_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--suite", "shift", "--sizes", "100"]) == 2
    assert "--sizes does not apply" in capsys.readouterr().err
    assert main(["eval", "--suite", "compositional", "--anchor-set", "coco-mini"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_photos_of_the_16_texture_shape_classes(data_dir: Path) -> None:
    from asif.eval.suites.common import TEXTURE_SHAPE_IMAGENET, photo_test

    photos = photo_test(root=data_dir)
    assert photos.classnames == sorted(TEXTURE_SHAPE_IMAGENET) and len(photos) == 108
    # every other ImageNet class of each category: ceil(n / 2) photos
    counts = np.bincount(photos.labels, minlength=16).tolist()
    assert counts == [-(-len(TEXTURE_SHAPE_IMAGENET[c]) // 2) for c in photos.classnames]
    assert (
        counts[photos.classnames.index("dog")] == 55
        and counts[photos.classnames.index("bird")] == 25
    )
    weights = np.bincount(photos.labels, weights=photos.weights)
    np.testing.assert_allclose(weights, 1 / 16)  # class-balanced
    labels = {
        json.loads(line)["image"].split("/")[-1]: json.loads(line)["label"]
        for line in (data_dir / "imagenet-sample" / "labels.jsonl").read_text().splitlines()
    }
    airplane = [Path(p).name for p, y in zip(photos.paths, photos.labels, strict=True) if y == 0]
    assert [labels[a] for a in airplane] == ["airliner"]
