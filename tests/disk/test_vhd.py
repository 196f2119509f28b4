"""VHD reader: fixed and dynamic images made by qemu-img read byte-identical to `qemu-img convert`,
sizes agree with `qemu-img info -f vpc` (creator-app rule), refusals and corruption are clear errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu, qemu_info_size
from imaging import MiB, convert, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.vhd import VhdImage, vhd_checksum

SIZE = 7 * MiB + 5 * 512  # not a whole number of blocks, not a CHS-exact size


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparse_raw(
        tmp_path_factory.mktemp("vhd") / "src.raw",
        SIZE,
        [
            (0, pattern(70_000, 1)),
            (MiB + 512, text_like(400_000, 2)),
            (2 * MiB, bytes(200_000)),
            (4 * MiB + 4096, pattern(5000, 3)),
            (SIZE - 1536, pattern(1536, 5)),
        ],
    )


MATRIX = {
    "fixed": ["subformat=fixed", "force_size=on"],
    "fixed-chs": ["subformat=fixed"],
    "dynamic": ["subformat=dynamic"],
    "dynamic-force": ["subformat=dynamic", "force_size=on"],
}


@pytest.mark.parametrize("name", MATRIX)
def test_qemu_made_images_read_like_qemu(source: Path, tmp_path: Path, name: str) -> None:
    path = convert(source, tmp_path / f"{name}.vhd", "vpc", *MATRIX[name])
    assert_matches_qemu(path, "vpc", tmp_path, VhdImage)
    with open_image(path) as img:
        assert img.info()["subformat"] == name.split("-")[0]


@pytest.mark.parametrize("size", [512 * 1024, 3 * MiB, 33 * MiB + 512])
def test_odd_sizes(tmp_path: Path, size: int) -> None:
    raw = sparse_raw(tmp_path / "odd.raw", size, [(0, pattern(1000, 9)), (size - 512, b"y" * 512)])
    for name in ("fixed", "dynamic", "dynamic-force"):
        path = convert(raw, tmp_path / f"{name}.vhd", "vpc", *MATRIX[name])
        assert_matches_qemu(path, "vpc", tmp_path, VhdImage)


def _patch(path: Path, offset: int, data: bytes) -> Path:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return path


def _refooter(path: Path, where: int, field: int, data: bytes) -> Path:
    """Change a footer field and fix the checksum, as a tool that wrote those values would."""
    buf = bytearray(path.read_bytes()[where : where + 512])
    buf[field : field + len(data)] = data
    struct.pack_into(">I", buf, 64, vhd_checksum(bytes(buf), 64))
    return _patch(path, where, bytes(buf))


def _footers(path: Path) -> list[int]:
    size = path.stat().st_size
    return [0, size - 512] if path.read_bytes()[:8] == b"conectix" else [size - 512]


@pytest.mark.parametrize(
    "creator", [b"vpc ", b"qemu", b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\x00", b"xyz "]
)
@pytest.mark.parametrize("name", ["fixed", "dynamic"])
def test_virtual_size_follows_qemu_creator_rule(
    source: Path, tmp_path: Path, creator: bytes, name: str
) -> None:
    path = convert(source, tmp_path / f"{name}.vhd", "vpc", *MATRIX[name], "force_size=on")
    for where in _footers(path):
        _refooter(path, where, 28, creator)
    with open_image(path) as img:
        assert img.virtual_size == qemu_info_size(path, "vpc")


def test_max_geometry_uses_the_current_size(source: Path, tmp_path: Path) -> None:
    path = convert(source, tmp_path / "d.vhd", "vpc", "subformat=dynamic", "force_size=on")
    for where in _footers(path):
        _refooter(path, where, 28, b"vpc ")
        _refooter(path, where, 56, struct.pack(">HBB", 65535, 16, 255))
    with open_image(path) as img:
        assert img.virtual_size == qemu_info_size(path, "vpc") == SIZE


def test_differencing_disk_is_refused(source: Path, tmp_path: Path) -> None:
    path = convert(source, tmp_path / "d.vhd", "vpc", "subformat=dynamic")
    for where in _footers(path):
        _refooter(path, where, 60, struct.pack(">I", 4))
    with pytest.raises(UnsupportedImageError, match=r"differencing disk.*qemu-img convert"):
        open_image(path)


@pytest.mark.parametrize("name", ["fixed", "dynamic"])
def test_bad_footer_checksum(source: Path, tmp_path: Path, name: str) -> None:
    path = convert(source, tmp_path / f"{name}.vhd", "vpc", *MATRIX[name])
    where = _footers(path)[0]
    _patch(path, where + 48, b"\x01")
    with pytest.raises(ImageFormatError, match=f"vhd footer at byte {where:#x}: checksum"):
        open_image(path, "vhd")


def test_unknown_disk_type(source: Path, tmp_path: Path) -> None:
    path = convert(source, tmp_path / "d.vhd", "vpc", "subformat=dynamic")
    _refooter(path, 0, 60, struct.pack(">I", 9))
    with pytest.raises(ImageFormatError, match="unknown disk type 9"):
        open_image(path)


def test_fixed_size_larger_than_the_data(source: Path, tmp_path: Path) -> None:
    path = convert(source, tmp_path / "f.vhd", "vpc", *MATRIX["fixed"])
    _refooter(path, path.stat().st_size - 512, 48, struct.pack(">Q", 1 << 40))
    with pytest.raises(ImageFormatError, match="exceeds"):
        open_image(path, "vhd")


def _dyn(source: Path, tmp: Path) -> tuple[Path, int, int]:
    """A dynamic VHD, the offset of its dynamic header and of its BAT."""
    path = convert(source, tmp / "d.vhd", "vpc", "subformat=dynamic", "force_size=on")
    buf = path.read_bytes()
    dyn = struct.unpack_from(">Q", buf, 16)[0]
    return path, dyn, struct.unpack_from(">Q", buf, dyn + 16)[0]


def _redyn(path: Path, dyn: int, field: int, data: bytes) -> Path:
    buf = bytearray(path.read_bytes()[dyn : dyn + 1024])
    buf[field : field + len(data)] = data
    struct.pack_into(">I", buf, 36, vhd_checksum(bytes(buf), 36))
    return _patch(path, dyn, bytes(buf))


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (10**8, "runs past the end"),
        (0, "overlaps the image metadata"),  # block on top of the footer copy / dynamic header
        (3, "overlaps the image metadata"),  # block on top of the BAT
        ("dup", "overlaps block"),
    ],
)
def test_bad_bat_entries(source: Path, tmp_path: Path, entry: int | str, match: str) -> None:
    path, _dyn_off, bat = _dyn(source, tmp_path)
    first = struct.unpack_from(">I", path.read_bytes(), bat)[0]
    value = first if entry == "dup" else int(entry)
    _patch(path, bat + 4 * 3, struct.pack(">I", value))
    with pytest.raises(ImageFormatError, match=f"vhd block table entry at byte {bat + 12:#x}: .*{match}"):
        open_image(path)


@pytest.mark.parametrize(
    ("field", "data", "match"),
    [
        (0, b"xxsparse", "bad cookie"),
        (32, struct.pack(">I", 3000), "block size"),
        (28, struct.pack(">I", 1), "cannot describe"),
        (28, struct.pack(">I", 1 << 30), "cannot describe"),
        (16, struct.pack(">Q", 1 << 50), "truncated"),
    ],
)
def test_bad_dynamic_header(source: Path, tmp_path: Path, field: int, data: bytes, match: str) -> None:
    path, dyn, _ = _dyn(source, tmp_path)
    _redyn(path, dyn, field, data)
    with pytest.raises(ImageFormatError, match=match):
        open_image(path)


def test_dynamic_header_checksum(source: Path, tmp_path: Path) -> None:
    path, dyn, _ = _dyn(source, tmp_path)
    _patch(path, dyn + 32, struct.pack(">I", 1 << 20))
    with pytest.raises(ImageFormatError, match=f"dynamic disk header at byte {dyn:#x}: checksum"):
        open_image(path)


@pytest.mark.parametrize("name", ["fixed", "dynamic"])
def test_truncated_files(source: Path, tmp_path: Path, name: str) -> None:
    path = convert(source, tmp_path / f"{name}.vhd", "vpc", *MATRIX[name])
    full = path.read_bytes()
    for cut in (0, 100, 512, 1536, len(full) // 2, len(full) - MiB):
        path.write_bytes(full[:cut])
        with pytest.raises(ImageFormatError), open_image(path, "vhd") as img:
            img.read(0, img.virtual_size)


def test_fixed_vhd_is_detected_by_its_footer(source: Path, tmp_path: Path) -> None:
    path = convert(source, tmp_path / "f.vhd", "vpc", *MATRIX["fixed"])
    with open_image(path) as img:
        assert isinstance(img, VhdImage)
        assert img.virtual_size == SIZE


def test_more_stored_blocks_than_the_file_holds(source: Path, tmp_path: Path) -> None:
    path, dyn, bat = _dyn(source, tmp_path)
    entries = 100  # the BAT sectors hold 128
    _redyn(path, dyn, 28, struct.pack(">I", entries))
    first = struct.unpack_from(">I", path.read_bytes(), bat)[0]
    _patch(path, bat, struct.pack(f">{entries}I", *[first] * entries))
    with pytest.raises(ImageFormatError, match=f"table at byte {bat:#x}: {entries} stored blocks cannot fit"):
        open_image(path)
