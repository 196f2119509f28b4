"""VDI reader: byte-identical to `qemu-img convert -O raw` for static and dynamic images made by
qemu-img and laid out as VirtualBox does; differencing images and damaged headers are clear errors
naming the byte offset; a VDI is never taken for a raw disk."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu
from disk.sources import vdi
from imaging import MiB, convert, mixed_raw, pattern, sparse_raw, text_like
from imgpub.disk import detect_format, open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.vdi import VdiImage

SIZE = 24 * MiB + 3 * 512  # the last block is short


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_raw(tmp_path_factory.mktemp("vdi") / "src.raw", SIZE, seed=3)


@pytest.mark.parametrize("options", [[], ["static=on"]], ids=["dynamic", "static"])
def test_qemu_made_images_read_like_qemu(source: Path, tmp_path: Path, options: list[str]) -> None:
    image = convert(source, tmp_path / "disk.vdi", "vdi", *options, src_fmt="raw")
    assert_matches_qemu(image, "vdi", tmp_path, VdiImage)
    with open_image(image) as img:
        assert img.format == "vdi" and img.firmware is None
        assert img.info()["subformat"] == ("static" if options else "dynamic")
        assert img.allocation.data_bytes < SIZE // 2  # holes stay holes, even in the static image


@pytest.mark.parametrize("size", [512, MiB, 5 * MiB - 512])
def test_odd_sizes(tmp_path: Path, size: int) -> None:
    raw = sparse_raw(tmp_path / "odd.raw", size, [(0, pattern(min(size, 1000), 9)), (size - 512, b"v" * 512)])
    image = convert(raw, tmp_path / "odd.vdi", "vdi", src_fmt="raw")
    assert_matches_qemu(image, "vdi", tmp_path, VdiImage)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_virtualbox_layout_reads_like_qemu(source: Path, tmp_path: Path, static: bool) -> None:
    """Header size 0x190, block map at 1 MiB, blocks stored out of order, a discarded block."""
    path = tmp_path / "vbox.vdi"
    path.write_bytes(vdi(source.read_bytes(), static=static, discard=[5] if not static else []))
    assert_matches_qemu(path, "vdi", tmp_path, VdiImage)
    with open_image(path) as img:
        assert img.info()["creator"] == "Oracle VM VirtualBox Disk Image"


def test_a_vdi_is_not_a_raw_disk(source: Path, tmp_path: Path) -> None:
    """The header is not guest data: before issue 11, a VDI fell through to raw and was published."""
    image = convert(source, tmp_path / "disk.raw", "vdi", src_fmt="raw")  # a misleading name
    fd = os.open(image, os.O_RDONLY)
    try:
        assert detect_format(image, fd) == "vdi"
    finally:
        os.close(fd)
    with open_image(image) as img:
        assert isinstance(img, VdiImage)
        assert img.read(0, 512) == source.read_bytes()[:512]
        assert img.read(0, 64) != image.read_bytes()[:64]


# ---- refusals and damage ---------------------------------------------------------------------------


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    raw = bytearray(4 * MiB)
    raw[0:70_000] = pattern(70_000, 1)
    raw[3 * MiB : 3 * MiB + 5000] = text_like(5000, 2)
    return vdi(bytes(raw))


def _open(tmp: Path, data: bytes) -> None:
    path = tmp / "x.vdi"
    path.write_bytes(data)
    with open_image(path) as img:
        img.read(0, img.virtual_size)


@pytest.mark.parametrize(
    ("offset", "value", "error", "words"),
    [
        (
            0x1B8,
            b"\x01" * 16,
            UnsupportedImageError,
            r"byte 0x1b8: is a differencing image .*VBoxManage clonemedium",
        ),
        (0x4C, struct.pack("<I", 4), UnsupportedImageError, r"byte 0x4c: is a differencing image"),
        (0x1A8, b"\x02" * 16, UnsupportedImageError, r"byte 0x1a8: is a differencing image"),
        (0x4C, struct.pack("<I", 3), UnsupportedImageError, "an undo image"),
        (0x4C, struct.pack("<I", 9), UnsupportedImageError, "unknown type 9"),
        (
            0x44,
            struct.pack("<I", 0x00010000),
            UnsupportedImageError,
            r"byte 0x44: header version 1.0 is not 1.1",
        ),
        (0x48, struct.pack("<I", 0x10), ImageFormatError, r"byte 0x48: header size"),
        (0x168, struct.pack("<I", 4096), UnsupportedImageError, "sector size 4096"),
        (0x178, struct.pack("<I", 3 * MiB), ImageFormatError, r"byte 0x178: block size"),
        (0x17C, struct.pack("<I", 512), UnsupportedImageError, "extra data per block"),
        (0x180, struct.pack("<I", 1 << 30), ImageFormatError, "blocks is absurd"),
        (0x170, struct.pack("<Q", 100 * MiB), ImageFormatError, r"byte 0x170: disk size"),
        (0x170, struct.pack("<Q", 1000), ImageFormatError, "not a whole number of sectors"),
        (0x154, struct.pack("<I", 0x123), ImageFormatError, r"byte 0x154: block map at 0x123"),
        (0x158, struct.pack("<I", MiB), ImageFormatError, "misplaced"),
        (
            MiB + 4 * 3,
            struct.pack("<I", 7),
            ImageFormatError,
            r"block map entry at byte 0x10000c: block 3 is stored at index 7, past 4",
        ),
        (
            MiB + 4 * 3,
            struct.pack("<I", 1),
            ImageFormatError,
            r"block table entry at byte 0x10000c: block 3 .*overlaps block 0",
        ),
    ],
)
def test_bad_headers_and_maps(
    small: bytes, tmp_path: Path, offset: int, value: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        _open(tmp_path, _patch(small, offset, value))


def test_bad_signature_is_named(small: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.vdi"
    path.write_bytes(_patch(small, 0x40, b"\x00\x10\xda\xbe"))
    with pytest.raises(ImageFormatError, match=r"header at byte 0x40: bad signature 0xbeda1000"):
        open_image(path, "vdi")


def test_truncated_file(small: bytes, tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match=r"runs past the end of the data area"):
        _open(tmp_path, small[: len(small) - 4096])
    with pytest.raises(ImageFormatError, match=r"block map at byte 0x100000: needs 16 bytes"):
        _open(tmp_path, small[: MiB + 8])


def test_errors_are_one_line_with_the_path(small: bytes, tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError) as err:
        _open(tmp_path, _patch(small, 0x1B8, b"\x01" * 16))
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'x.vdi'}: vdi header at byte 0x1b8: ") and "\n" not in text
    assert err.value.exit_code == 2
