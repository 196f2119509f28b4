"""Format detection by magic bytes (never by file name), and open_image's file errors."""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from imaging import MiB, convert, mbr, pattern, sparse_raw
from imgpub.disk import detect_format, open_image
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.raw import RawImage


def detected(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return detect_format(path, fd)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparse_raw(
        tmp_path_factory.mktemp("detect") / "disk.img", 2 * MiB, [(0, mbr(1)), (4096, pattern(8192, 1))]
    )


@pytest.mark.parametrize(
    ("fmt", "options", "expected"),
    [
        ("qcow2", ["compat=1.1"], "qcow2"),
        ("vmdk", ["subformat=monolithicSparse"], "vmdk"),
        ("vmdk", ["subformat=streamOptimized"], "vmdk"),
        ("vpc", ["subformat=dynamic"], "vhd"),
        ("vpc", ["subformat=fixed", "force_size=on"], "vhd"),
        ("vhdx", ["subformat=dynamic"], "vhdx"),
    ],
)
def test_qemu_made_images(raw: Path, tmp_path: Path, fmt: str, options: list[str], expected: str) -> None:
    # a misleading name on purpose: detection reads the bytes, not the suffix
    out = convert(raw, tmp_path / "image.raw", fmt, *options, src_fmt="raw")
    assert detected(out) == expected


def test_vmdk_descriptor_file(tmp_path: Path) -> None:
    path = tmp_path / "d.vmdk"
    path.write_bytes(b"# Disk DescriptorFile\nversion=1\n")
    assert detected(path) == "vmdk"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (lzma.compress(bytes(512)), "xz"),
        (gzip.compress(bytes(512)), "gzip"),
        (zstandard.ZstdCompressor().compress(bytes(512)), "zstd"),
    ],
)
def test_compressed_magics(tmp_path: Path, payload: bytes, expected: str) -> None:
    path = tmp_path / "disk.qcow2"
    path.write_bytes(payload)
    assert detected(path) == expected


def test_raw_needs_whole_sectors(raw: Path, tmp_path: Path) -> None:
    assert detected(raw) == "raw"
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"hello" + bytes(1000))
    with pytest.raises(ImageFormatError) as info:
        open_image(odd)
    msg = str(info.value)
    assert "68656c6c6f" in msg  # what the file starts with
    assert "size 1005 is not a whole number of 512-byte sectors" in msg
    odd.write_bytes(mbr(2) + bytes(1000))  # a partition table does not make up for a cut sector
    with pytest.raises(ImageFormatError, match="size 1512 is not a whole number of 512-byte sectors"):
        open_image(odd)
    odd.write_bytes(mbr(2) + bytes(1024))
    assert detected(odd) == "raw"
    odd.write_bytes(b"hello" + bytes(1019))  # no partition table: raw only when asked for
    with pytest.raises(ImageFormatError, match=r"not a recognised disk image; .* set format: raw"):
        detected(odd)
    with open_image(odd, "raw") as img:
        assert img.read(0, 5) == b"hello"


def test_empty_file_is_not_a_disk(tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.touch()
    with pytest.raises(ImageFormatError, match="empty"):
        open_image(empty)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="no such file"):
        open_image(tmp_path / "missing.qcow2")
    with pytest.raises(ImageFormatError, match="is a directory"):
        open_image(tmp_path)


def test_forced_format(tmp_path: Path, raw: Path) -> None:
    q = convert(raw, tmp_path / "d.qcow2", "qcow2", "compat=1.1", src_fmt="raw")
    with open_image(q, fmt="raw") as img:
        assert isinstance(img, RawImage)
        assert img.read(0, 4) == b"QFI\xfb"
    with pytest.raises(ImageFormatError, match="format 'floppy' is not supported"):
        open_image(q, fmt="floppy")


def test_descriptor_is_closed_when_opening_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + bytes(508))  # version 0
    before = len(list(Path("/proc/self/fd").iterdir()))
    for _ in range(20):
        with pytest.raises(ImageFormatError, match="version 0"):
            open_image(bad)
    assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_a_file_that_cannot_be_read_is_named() -> None:
    """/proc/self/mem opens but answers EIO: one line naming it, not a bare [Errno 5]."""
    with pytest.raises(ImageFormatError) as err:
        open_image("/proc/self/mem", "raw")
    assert str(err.value) == "/proc/self/mem: image file: cannot read: Input/output error"


def test_a_path_with_a_nul_byte_is_refused() -> None:
    with pytest.raises(ImageFormatError, match="the path holds a NUL byte"):
        open_image("disk\0.raw")
