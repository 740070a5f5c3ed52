"""The sources: Parquet, datasets, caption files and WebDataset variants give the same anchors."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from asif import AnchorSet, RelativeSpace
from asif.build import DatasetSource, ParquetSource, WebDatasetSource, build_anchor_set

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _reference(built: AnchorSet) -> dict[str, np.ndarray]:
    return {p: built.image_embeddings[i] for i, p in reversed(list(enumerate(built.image_paths)))}


def _build(sources, tmp_path, image_encoder, text_encoder, **options) -> AnchorSet:  # type: ignore[no-untyped-def]
    return build_anchor_set(
        sources,
        tmp_path / "anchors",
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        workers=0,
        **options,
    )


def test_parquet_with_bytes_structs_or_paths(
    flickr_pairs, built, image_encoder, text_encoder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pairs = flickr_pairs[:20]  # 4 photos
    local = tmp_path / "photos"
    local.mkdir()
    for path, _ in pairs:
        shutil.copy(path, local / Path(path).name)
    data = [Path(p).read_bytes() for p, _ in pairs]
    pq.write_table(
        pa.table(
            {"jpg": data, "caption": [c for _, c in pairs], "key": [f"k{i}" for i in range(20)]}
        ),
        tmp_path / "bytes.parquet",
    )
    structs = [{"bytes": d, "path": Path(p).name} for d, (p, _) in zip(data, pairs, strict=True)]
    pq.write_table(
        pa.table({"image": structs, "text": [c for _, c in pairs]}),
        tmp_path / "structs.parquet",
        row_group_size=7,
    )
    relative = [f"photos/{Path(p).name}" for p, _ in pairs]
    pq.write_table(
        pa.table({"image_path": relative, "caption": [c for _, c in pairs]}),
        tmp_path / "paths.parquet",
    )
    sources = [
        ParquetSource(tmp_path / "bytes.parquet"),
        ParquetSource(tmp_path / "structs.parquet"),
        ParquetSource(tmp_path / "paths.parquet"),
    ]
    assert sources[2].cut_points(0) == [0, 5, 10, 15]  # an image's captions stay together
    anchors = _build(sources, tmp_path, image_encoder, text_encoder, shard_size=6)
    assert len(anchors) == 60 and anchors.captions == [c for _, c in pairs] * 3
    assert anchors.keys[:2] == ["k0", "k1"] and anchors.keys[20] == "structs.parquet#0"
    assert anchors.image_paths[-1] == str(tmp_path / relative[-1])
    reference = _reference(built)
    expected = np.stack([reference[p] for p, _ in pairs] * 3)
    np.testing.assert_allclose(anchors.image_embeddings, expected, atol=1e-6)
    # units of 6 rows: images shared by two units are encoded once per unit (7 + 7), except
    # where the source knows the images' runs (a path column: units end with them, 4)
    assert anchors.provenance["counts"]["images_encoded"] == 7 + 7 + 4


def test_a_datasets_dataset_in_memory(
    flickr_pairs, built, image_encoder, text_encoder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    datasets = pytest.importorskip("datasets")
    pairs = flickr_pairs[:10]
    table = {
        "image": [{"bytes": Path(p).read_bytes(), "path": None} for p, _ in pairs],
        "caption": [c for _, c in pairs],
    }
    by_bytes = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    by_path = datasets.Dataset.from_dict(
        {"img": [p for p, _ in pairs], "text": [c for _, c in pairs]}
    ).cast_column("img", datasets.Image())
    anchors = _build(
        [by_bytes, DatasetSource(by_path, name="flickr")], tmp_path, image_encoder, text_encoder
    )
    assert len(anchors) == 20 and anchors.keys[10] == "flickr#0"
    reference = _reference(built)
    expected = np.stack([reference[p] for p, _ in pairs] * 2)
    np.testing.assert_allclose(anchors.image_embeddings, expected, atol=1e-6)


def test_csv_and_coco_caption_files(
    flickr_pairs, built, image_encoder, text_encoder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pairs = flickr_pairs[:10]
    lines = ["image,caption"] + [f'{p},"{c}"' for p, c in pairs]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    images = sorted({p for p, _ in pairs})
    coco = {
        "images": [{"id": i, "file_name": p} for i, p in enumerate(images)],
        "annotations": [{"image_id": images.index(p), "caption": c} for p, c in pairs],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    anchors = _build(
        [tmp_path / "pairs.csv", tmp_path / "coco.json"], tmp_path, image_encoder, text_encoder
    )
    assert len(anchors) == 20 and anchors.keys[10] == "coco.json#0"
    assert anchors.captions[:10] == [c for _, c in pairs]
    reference = _reference(built)
    expected = np.stack([reference[p] for p, _ in pairs] * 2)
    np.testing.assert_allclose(anchors.image_embeddings, expected, atol=1e-6)


def test_webdataset_members_png_webp_and_json_captions(
    flickr_pairs, image_encoder, text_encoder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    photo = Path(flickr_pairs[0][0])
    members = []
    for ext, caption_member in (("png", "txt"), ("webp", "json"), ("jpg", "json")):
        buffer = io.BytesIO()
        Image.open(photo).save(buffer, format="PNG" if ext == "png" else ext.replace("jpg", "JPEG"))
        (tmp_path / f"photo.{ext}").write_bytes(buffer.getvalue())
        members.append((ext, buffer.getvalue(), caption_member))
    tar_path = tmp_path / "a-0.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i, (ext, data, caption_member) in enumerate(members):
            caption = f"photo number {i}"
            text = (
                caption.encode()
                if caption_member == "txt"
                else json.dumps(
                    {"caption": caption, "url": f"http://example.org/{i}.{ext}"}
                ).encode()
            )
            for name, payload in ((f"dir/s{i}.{ext}", data), (f"dir/s{i}.{caption_member}", text)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    source = WebDatasetSource(str(tmp_path / "a-{0..0}.tar"))
    assert source.count(0) == 3
    anchors = _build([source], tmp_path, image_encoder, text_encoder)
    assert anchors.captions == ["photo number 0", "photo number 1", "photo number 2"]
    assert anchors.keys[0] == f"{tar_path}/dir/s0"
    assert anchors.image_paths == [
        f"{tar_path}/dir/s0.png",
        "http://example.org/1.webp",
        "http://example.org/2.jpg",
    ]
    files = [tmp_path / f"photo.{ext}" for ext, _, _ in members]
    fitted = RelativeSpace(image_encoder=image_encoder, text_encoder=text_encoder).encode_images(
        files
    )
    np.testing.assert_allclose(anchors.image_embeddings, fitted, atol=1e-6)


def test_patterns_expand_and_unknown_sources_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from asif.build import open_sources
    from asif.build.sources import expand_braces

    assert expand_braces("x/{8..10}.tar") == ["x/8.tar", "x/9.tar", "x/10.tar"]
    assert expand_braces("{000009..000011}") == ["000009", "000010", "000011"]
    with pytest.raises(ValueError, match="cannot tell what"):
        open_sources(["photos.zip"])
    with pytest.raises(FileNotFoundError, match="tar shard not found"):
        open_sources([str(tmp_path / "{0..1}.tar")])
