"""write_vhd / vhd_pages / vhd_footer: Azure's fixed VHD, checked against the spec and qemu-img."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from imaging import MiB, convert, mixed_raw, pattern, qemu_img, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.write_vhd import chs_geometry, vhd_disk_size, vhd_footer, vhd_pages, write_vhd

GiB = 1 << 30
FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")


def test_disk_size_rounds_up_to_whole_mib() -> None:
    assert vhd_disk_size(MiB) == MiB
    assert vhd_disk_size(MiB + 512) == 2 * MiB
    assert vhd_disk_size(30 * MiB - 512) == 30 * MiB
    assert vhd_disk_size(0) == 0


@pytest.mark.parametrize(
    ("size", "chs"),
    [(30 * MiB, (903, 4, 17)), (GiB, (2080, 16, 63)), (10 * GiB, (20805, 16, 63)),
     (127 * GiB, (65278, 16, 255)), (128 * GiB, (65535, 16, 255)), (2048 * GiB, (65535, 16, 255))],
)  # fmt: skip
def test_chs_geometry_matches_the_spec_vectors(size: int, chs: tuple[int, int, int]) -> None:
    assert chs_geometry(size) == chs


def test_footer_fields() -> None:
    uid = bytes(range(16))
    footer = vhd_footer(30 * MiB, unique_id=uid, timestamp=946_684_800 + 1000)
    assert len(footer) == 512
    f = FOOTER.unpack(footer)
    assert f[0] == b"conectix"
    assert f[1:4] == (2, 0x00010000, 0xFFFFFFFFFFFFFFFF)
    assert f[4] == 1000
    assert f[5] == b"win " and f[7] == b"Wi2k"
    assert f[8] == f[9] == 30 * MiB
    assert f[10:13] == (903, 4, 17)
    assert f[13] == 2
    assert f[15] == uid and f[16] == 0 and f[17] == bytes(427)
    unsummed = footer[:64] + bytes(4) + footer[68:]
    assert f[14] == ~sum(unsummed) & 0xFFFFFFFF
    assert vhd_footer(30 * MiB)[68:84] != vhd_footer(30 * MiB)[68:84]  # random unique ids


def test_footer_rejects_sizes_azure_rejects() -> None:
    with pytest.raises(ValueError, match="whole number of MiB"):
        vhd_footer(30 * MiB + 512)
    with pytest.raises(ValueError, match="16 bytes"):
        vhd_footer(MiB, unique_id=b"short")


def test_footer_agrees_with_qemu_img_force_size(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "src.raw", 30 * MiB, [(0, b"x")])
    theirs = convert(src, tmp_path / "q.vhd", "vpc", "subformat=fixed", "force_size=on", src_fmt="raw")
    q = FOOTER.unpack(theirs.read_bytes()[-512:])
    ours = FOOTER.unpack(vhd_footer(30 * MiB))
    for i in (0, 1, 2, 3, 7, 8, 9, 13, 16):  # all but time, creator app/version, CHS, checksum, id
        assert ours[i] == q[i], i


@pytest.mark.parametrize("size", [64 * MiB, 64 * MiB + 3 * 512, 40 * MiB + 512 * 1024 + 512])
def test_qemu_img_reads_our_vhd_as_the_source(tmp_path: Path, size: int) -> None:
    src = mixed_raw(tmp_path / "src.raw", size)
    dest = tmp_path / "out.vhd"
    steps: list[int] = []
    with open_image(src) as img:
        write_vhd(img, dest, on_progress=steps.append)
        assert sum(steps) == img.allocation.data_bytes
    rounded = vhd_disk_size(size)
    assert dest.stat().st_size == rounded + 512
    info = json.loads(qemu_img("info", "-f", "vpc", "--output=json", dest))
    assert info["virtual-size"] == rounded
    # qemu-img compare treats the extra tail of the larger image as "must be zero"
    assert "identical" in qemu_img("compare", "-f", "vpc", "-F", "raw", dest, src)
    assert dest.stat().st_blocks * 512 < 8 * MiB  # sparse: holes stay holes


def test_empty_disk(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "empty.raw", 20 * MiB + 512, [])
    dest = tmp_path / "out.vhd"
    with open_image(src, "raw") as img:
        assert list(vhd_pages(img)) == []
        write_vhd(img, dest)
    assert dest.stat().st_size == 21 * MiB + 512
    assert dest.stat().st_blocks * 512 <= 4096
    assert "identical" in qemu_img("compare", "-f", "vpc", "-F", "raw", dest, src)


@pytest.mark.parametrize("max_page", [4 * MiB, 128 * 1024])
def test_pages_are_aligned_bounded_non_zero_and_complete(tmp_path: Path, max_page: int) -> None:
    size = 24 * MiB + 1536
    src = sparse_raw(
        tmp_path / "src.raw",
        size,
        [(0, pattern(9 * MiB + 100, 1)), (10 * MiB, bytes(2 * MiB)), (12 * MiB + 700, b"y" * 3000),
         (13 * MiB, pattern(64 * 1024, 2) + bytes(128 * 1024) + pattern(512, 3)), (size - 3, b"end")],
    )  # fmt: skip
    rebuilt = bytearray(vhd_disk_size(size))
    last_end = -1
    with open_image(src, "raw") as img:
        for off, data in vhd_pages(img, max_page=max_page):
            assert off % 512 == 0 and len(data) % 512 == 0
            assert 0 < len(data) <= max_page
            assert off >= last_end
            last_end = off + len(data)
            for g in range(0, len(data), 64 * 1024):
                assert data[g : g + 64 * 1024].strip(b"\0"), f"zero grain at {off + g}"
            rebuilt[off : off + len(data)] = data
    assert last_end <= vhd_disk_size(size)
    assert bytes(rebuilt[:size]) == src.read_bytes()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("qcow2", ("-c", "compression_type=zlib")), ("vmdk", ("subformat=streamOptimized",))],
)
def test_compressed_sources(tmp_path: Path, fmt: str, options: tuple[str, ...]) -> None:
    src = mixed_raw(tmp_path / "src.raw", 32 * MiB + 512)
    image = convert(src, tmp_path / f"src.{fmt}", fmt, *options, src_fmt="raw")
    dest = tmp_path / "out.vhd"
    steps: list[int] = []
    with open_image(image) as img:
        write_vhd(img, dest, on_progress=steps.append)
        assert sum(steps) == img.allocation.data_bytes
    assert "identical" in qemu_img("compare", "-f", "vpc", "-F", "raw", dest, src)
