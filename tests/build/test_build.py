"""asif build: equal to RelativeSpace.fit, once per image, resumable, never silent about bad samples."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet
from asif.anchors import default_hub_ks
from asif.build import SettingsMismatch, build_anchor_set, build_folder_of, write_webdataset
from asif.build import decode as decode_module
from asif.build import writer as writer_module
from asif.build.local import BadSampleError
from asif.cli import main
from tests.build.conftest import N_IMAGES, assert_same_set


def test_a_build_from_webdataset_shards_equals_fit(
    built: AnchorSet, fitted: AnchorSet, flickr_pairs: list[tuple[str, str]]
) -> None:
    assert len(built) == len(fitted) == len(flickr_pairs) == 5 * N_IMAGES
    assert built.captions == [c for _, c in flickr_pairs]
    np.testing.assert_allclose(built.image_embeddings, fitted.image_embeddings, atol=1e-6)
    np.testing.assert_allclose(built.text_embeddings, fitted.text_embeddings, atol=1e-6)
    assert built.ids.tolist() == list(range(len(built)))
    assert built.keys[7].endswith("00000.tar/000000007")
    assert built.image_paths == [p for p, _ in flickr_pairs]  # the json member's url
    assert [b.shape[0] for b in built.blocks("image")] == [50] * 6
    assert built.image_encoder == fitted.image_encoder and built.text_encoder == fitted.text_encoder
    counts = built.provenance["counts"]
    assert counts["pairs"] == 300 and counts["skipped"] == 0 and counts["images_encoded"] == 60
    assert sorted(built.hub_statistics) == [
        (m, k) for m in ("image", "text") for k in default_hub_ks(len(built))
    ]


def test_each_image_is_decoded_and_encoded_once(
    flickr_jsonl: Path, built: AnchorSet, image_encoder, text_encoder, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    decoded, forwarded = [], []
    original = decode_module.ImagePreprocessor.__call__

    def counting(self, item, name=None):  # type: ignore[no-untyped-def]
        decoded.append(name)
        return original(self, item, name=name)

    monkeypatch.setattr(decode_module.ImagePreprocessor, "__call__", counting)
    hook = image_encoder.model.register_forward_hook(lambda m, i, o: forwarded.append(len(o)))
    try:
        anchors = build_anchor_set(
            [flickr_jsonl],
            tmp_path / "anchors",
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            workers=0,  # decode here, where the counter is
            shard_size=50,
        )
    finally:
        hook.remove()
    assert len(decoded) == len(set(decoded)) == N_IMAGES
    assert sum(forwarded) == N_IMAGES
    assert anchors.provenance["counts"]["images_encoded"] == N_IMAGES
    # a caption file and tars of the same photos: the same rows, bit for bit
    np.testing.assert_array_equal(anchors.image_embeddings, built.image_embeddings)
    np.testing.assert_array_equal(anchors.text_embeddings, built.text_embeddings)
    assert anchors.keys[:2] == ["pairs.jsonl#0", "pairs.jsonl#1"]


def test_a_unit_never_splits_the_captions_of_one_image(flickr_jsonl: Path) -> None:
    from asif.build import open_sources, plan_units

    units, _ = plan_units(open_sources([flickr_jsonl]), 12)  # 12 is not a multiple of 5
    assert [u.size for u in units] == [15] * 20
    assert [u.first_id for u in units[:3]] == [0, 15, 30]


def test_an_interrupted_build_resumes_to_the_same_set_and_refuses_other_settings(
    flickr_tars: str, built: AnchorSet, image_encoder, text_encoder, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "anchors"
    options = {"image_encoder": image_encoder, "text_encoder": text_encoder, "workers": 0}
    written = []
    original = writer_module.write_shard

    def crash_after_two(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(writer_module, "write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_anchor_set([flickr_tars], target, shard_size=50, **options)
    monkeypatch.setattr(writer_module, "write_shard", original)
    assert not target.exists() and build_folder_of(target).is_dir()
    with pytest.raises(SettingsMismatch, match="shard_size"):
        build_anchor_set([flickr_tars], target, shard_size=60, **options)
    encoded = []
    hook = image_encoder.model.register_forward_hook(lambda m, i, o: encoded.append(len(o)))
    try:
        resumed = build_anchor_set([flickr_tars], target, shard_size=50, **options)
    finally:
        hook.remove()
    assert sum(encoded) == N_IMAGES - 2 * 10  # the two units written before are not redone
    assert_same_set(resumed, built)
    assert not build_folder_of(target).exists()
    assert resumed.provenance["counts"] == built.provenance["counts"]


def test_a_finished_build_run_again_loads_no_encoder(
    flickr_tars: str, built: AnchorSet, image_encoder, text_encoder, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "anchors"
    build_anchor_set(
        [flickr_tars],
        target,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        workers=0,
        shard_size=50,
    )
    import asif.encoders

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an encoder was loaded")

    monkeypatch.setattr(asif.encoders, "load_image_encoder", refuse)
    monkeypatch.setattr(asif.encoders, "load_text_encoder", refuse)
    again = build_anchor_set([flickr_tars], target, shard_size=50)  # by name: "default"
    assert_same_set(again, built)


def _bad_data(root: Path, pairs: list[tuple[str, str]]) -> Path:
    """Five good pairs, then a missing file, a corrupt JPEG and an empty caption."""
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    rows = [{"image": p, "caption": c} for p, c in pairs[:5]]
    rows += [
        {"image": str(root / "gone.jpg"), "caption": "a missing photo"},
        {"image": str(corrupt), "caption": "a corrupt photo"},
        {"image": pairs[5][0], "caption": "   "},
    ]
    path = root / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_samples_are_skipped_counted_and_listed(
    flickr_pairs, image_encoder, text_encoder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    jsonl = _bad_data(tmp_path, flickr_pairs)
    tars = write_webdataset(flickr_pairs[:5], tmp_path / "wds", per_tar=10)
    with tarfile.open(tmp_path / "wds" / "00000.tar", "a") as tar:  # a sample with no caption
        info = tarfile.TarInfo("000000099.jpg")
        data = Path(flickr_pairs[0][0]).read_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    anchors = build_anchor_set(
        [jsonl, tars],
        tmp_path / "anchors",
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        workers=1,
    )
    assert len(anchors) == 10
    skipped = anchors.provenance["skipped"]
    assert skipped["count"] == anchors.provenance["counts"]["skipped"] == 4
    assert skipped["by_kind"] == {
        "corrupt image": 1,
        "empty caption": 1,
        "missing file": 1,
        "no caption": 1,
    }
    listed = {(s["key"], s["kind"]) for s in skipped["samples"]}
    assert ("bad.jsonl#5", "missing file") in listed
    assert ("bad.jsonl#6", "corrupt image") in listed
    assert any(key.endswith("00000.tar/000000099") for key, _ in listed)
    corrupt = next(s for s in skipped["samples"] if s["kind"] == "corrupt image")
    assert "corrupt.jpg" in corrupt["reason"] and corrupt["source"] == str(jsonl)
    log = (tmp_path / "anchors" / "skipped.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in log] == skipped["samples"]
    with pytest.raises(BadSampleError, match=r"bad\.jsonl#5"):
        build_anchor_set(
            [jsonl],
            tmp_path / "strict",
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            workers=0,
            strict=True,
        )


def test_the_command_says_what_it_built_and_strict_stops(flickr_pairs, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    jsonl = _bad_data(tmp_path, flickr_pairs)
    out = tmp_path / "anchors"
    assert main(["build", str(jsonl), "-o", str(out), "--workers", "0", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"5 pairs built, 3 skipped (see {out / 'skipped.jsonl'})"
    assert main(["build", str(jsonl), "-o", str(tmp_path / "s"), "--strict", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "bad.jsonl#5" in error and "not found" in error and "--strict" in error
    assert AnchorSet.load(out).keys == [f"bad.jsonl#{i}" for i in range(5)]


def test_a_folder_asif_did_not_write_is_refused_before_any_work(flickr_jsonl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="never replaced"):
        build_anchor_set([flickr_jsonl], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
