"""asif.build.tar against the standard library's tarfile, on archives tarfile writes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asif.build.tar import TarFormatError, tar_files

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
COMPRESSION = ("", "gz", "bz2", "xz")

_segment = st.text(
    st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=("Cs",)),
    min_size=1,
    max_size=60,
).filter(lambda s: s not in (".", ".."))
_name = st.lists(_segment, min_size=1, max_size=4).map("/".join)
_member = st.tuples(
    st.sampled_from(["file", "file", "file", "dir", "symlink"]),
    _name,
    st.one_of(st.sampled_from([0, 1, 511, 512, 513, 1024]), st.integers(0, 3000)),
)


def _write(path: Path, members: list[tuple[str, str, int]], fmt: str, compression: str) -> None:
    mode = "w" if not compression else f"w:{compression}"
    with tarfile.open(path, mode, format=FORMATS[fmt]) as tar:
        for i, (kind, name, size) in enumerate(members):
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "elsewhere/" + "x" * 120
                tar.addfile(info)
            else:
                info.size = size
                tar.addfile(info, io.BytesIO(bytes((i + j) % 251 for j in range(size))))


def _expected(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    members=st.lists(_member, max_size=12),
    fmt=st.sampled_from(sorted(FORMATS)),
    compression=st.sampled_from(COMPRESSION),
)
def test_same_files_as_tarfile(tmp_path, members, fmt, compression) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"a-{fmt}.tar{'.' + compression if compression else ''}"
    try:
        _write(path, members, fmt, compression)
    except ValueError:  # ustar cannot hold this name: tarfile refuses to write it
        return
    expected = _expected(path)
    assert [(name, read()) for name, read in tar_files(path)] == expected
    # files left unread are skipped over: same names, and a later one reads correctly
    names = [name for name, _ in tar_files(path)]
    assert names == [name for name, _ in expected]
    if expected:
        last = None
        for name, read in tar_files(path):
            last = (name, read() if name == expected[-1][0] else None)
        assert last == expected[-1]


def test_long_and_unicode_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    long = ["b/" * 70 + "c.txt", "d" * 90 + "/" + "e" * 95 + ".jpg", "Ünïcødé/写真 1.jpg"]
    for fmt, names in (
        ("ustar", long),  # the directory part in the prefix field
        ("gnu", [*long, "a" * 99 + ".jpg"]),  # a long-name member before the file
        ("pax", [*long, "a" * 99 + ".jpg"]),  # an extended header before the file
    ):
        path = tmp_path / f"{fmt}.tar"
        _write(path, [("file", n, 10) for n in names], fmt, "")
        assert [n for n, _ in tar_files(path)] == names == [n for n, _ in _expected(path)]


def test_damage_is_an_error_that_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.tar"
    _write(path, [("file", f"{i:03d}.jpg", 700) for i in range(3)], "ustar", "")
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: 512 + 1024 + 512 + 100])  # inside the second member
    with pytest.raises(TarFormatError, match=r"cut\.tar: the archive ends inside a member"):
        list(tar_files(cut))
    with pytest.raises(TarFormatError, match="ends inside a member"):  # also when not read
        [n for n, _ in tar_files(cut)]
    flipped = bytearray(data)
    flipped[512 + 1024 + 3] ^= 0x20  # a letter of the second header's name
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(TarFormatError, match=r"bad\.tar: a header fails its checksum.*byte 1536"):
        list(tar_files(bad))
    for name, content in (("photo.tar", b"\xff\xd8\xff\xe0" + b"JFIF" * 200), ("empty.tar", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(TarFormatError, match=name.replace(".", r"\.")):
            list(tar_files(tmp_path / name))


def test_content_is_read_before_the_next_member(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.tar"
    _write(path, [("file", "a.txt", 5), ("file", "b.txt", 5)], "ustar", "")
    files = tar_files(path)
    _, read_a = next(files)
    next(files)
    with pytest.raises(RuntimeError, match="before the next member"):
        read_a()


def test_a_build_from_a_truncated_shard_stops_before_any_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from asif.build import build_anchor_set, build_folder_of

    good = tmp_path / "00000.tar"
    _write(good, [("file", f"{i:09d}.txt", 20) for i in range(4)], "ustar", "")
    cut = tmp_path / "00001.tar"
    cut.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(TarFormatError, match=r"00001\.tar: the archive ends inside a header"):
        build_anchor_set([str(tmp_path / "{00000..00001}.tar")], tmp_path / "anchors", workers=0)
    assert not (tmp_path / "anchors").exists()
    assert not build_folder_of(tmp_path / "anchors").exists()


@pytest.mark.parametrize(
    "record", [b"0 path=x\n", b"garbage without a length", b"16 size=12x4567\n"]
)
def test_a_malformed_pax_header_is_an_error(tmp_path, record: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "pax.tar"
    _write(path, [("file", "é" * 120 + ".jpg", 10)], "pax", "")  # an extended header first
    data = bytearray(path.read_bytes())
    data[512 : 512 + len(record) + 1] = record + b"\0"  # its records (not checksummed)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(TarFormatError, match=r"bad\.tar: a pax header"):
        list(tar_files(bad))
