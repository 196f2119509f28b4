"""VHDX reader: fixed and dynamic images made by qemu-img read byte-identical to `qemu-img convert`;
headers, region tables, metadata and BAT are validated; parents and dirty logs are refused."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu, qemu_info_size
from imaging import GiB, MiB, convert, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.vhdx import FILE_PARAMETERS, LOGICAL_SECTOR_SIZE, VhdxImage, crc32c

SIZE = 9 * MiB + 7 * 512


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparse_raw(
        tmp_path_factory.mktemp("vhdx") / "src.raw",
        SIZE,
        [
            (0, pattern(70_000, 1)),
            (MiB + 512, text_like(400_000, 2)),
            (3 * MiB, bytes(200_000)),
            (5 * MiB + 4096, pattern(5000, 3)),
            (SIZE - 1536, pattern(1536, 5)),
        ],
    )


MATRIX = {
    "fixed": ["subformat=fixed"],
    "dynamic": ["subformat=dynamic"],
    "dynamic-1M": ["subformat=dynamic", "block_size=1M"],
    "dynamic-32M": ["subformat=dynamic", "block_size=32M"],
    "fixed-2M": ["subformat=fixed", "block_size=2M"],
}


@pytest.mark.parametrize("name", MATRIX)
def test_qemu_made_images_read_like_qemu(source: Path, tmp_path: Path, name: str) -> None:
    path = convert(source, tmp_path / f"{name}.vhdx", "vhdx", *MATRIX[name])
    assert_matches_qemu(path, "vhdx", tmp_path, VhdxImage)
    with open_image(path) as img:
        assert img.info()["subformat"] == name.split("-")[0]


def test_odd_size(tmp_path: Path) -> None:
    raw = sparse_raw(tmp_path / "odd.raw", 3 * MiB + 512, [(0, b"a" * 512), (3 * MiB, b"b" * 512)])
    path = convert(raw, tmp_path / "odd.vhdx", "vhdx", "block_size=1M")
    assert_matches_qemu(path, "vhdx", tmp_path, VhdxImage)


def test_sector_bitmap_entries_are_skipped(tmp_path: Path) -> None:
    """256 MiB blocks: chunk ratio 16, so BAT entry 16 is a sector-bitmap entry between payloads."""
    size = 5 * GiB
    offsets = [0, 17 * 256 * MiB + 5, size - 4096]
    raw = sparse_raw(tmp_path / "big.raw", size, [(o, pattern(3000, o)) for o in offsets])
    path = convert(raw, tmp_path / "big.vhdx", "vhdx", "block_size=256M")
    with open_image(path) as img:
        assert isinstance(img, VhdxImage)
        assert img.chunk_ratio == 16
        assert img.virtual_size == qemu_info_size(path, "vhdx") == size
        for o in offsets:
            assert img.read(o, 3000) == pattern(3000, o)
        assert img.read(256 * MiB, 4096) == bytes(4096)
        blocks = [(a // (256 * MiB), -(-(a + n) // (256 * MiB))) for a, n in img.allocation.data_runs]
        assert blocks == [(0, 1), (17, 18), (19, 20)]


# ---- structure editing helpers -----------------------------------------------------------------


def _patch(path: Path, offset: int, data: bytes) -> Path:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return path


def _rechecksum(path: Path, offset: int, size: int, changes: dict[int, bytes]) -> Path:
    buf = bytearray(path.read_bytes()[offset : offset + size])
    for at, data in changes.items():
        buf[at : at + len(data)] = data
    buf[4:8] = bytes(4)
    buf[4:8] = struct.pack("<I", crc32c(bytes(buf)))
    return _patch(path, offset, bytes(buf))


def _regions(path: Path) -> dict[str, tuple[int, int]]:
    buf = path.read_bytes()[192 * 1024 : 256 * 1024]
    count = struct.unpack_from("<I", buf, 8)[0]
    out = {}
    for k in range(count):
        guid, off, length, _ = struct.unpack_from("<16sQII", buf, 16 + 32 * k)
        out[str(uuid.UUID(bytes_le=guid))] = (off, length)
    return out


BAT = "2dc27766-f623-4200-9d64-115e9bfd4a08"
META = "8b7ca206-4790-4b9a-b8fe-575f050f886e"


def _metadata_item(path: Path, item: uuid.UUID) -> int:
    """File offset of a metadata item's value."""
    base = _regions(path)[META][0]
    buf = path.read_bytes()[base : base + 64 * 1024]
    for k in range(struct.unpack_from("<H", buf, 10)[0]):
        guid, off, _length, _flags = struct.unpack_from("<16sIII", buf, 32 + 32 * k)
        if uuid.UUID(bytes_le=guid) == item:
            return base + off
    raise AssertionError(item)


def _dynamic(source: Path, tmp: Path) -> Path:
    return convert(source, tmp / "d.vhdx", "vhdx", "block_size=1M")


# ---- headers -----------------------------------------------------------------------------------


def test_newer_header_wins_and_one_bad_header_is_tolerated(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    buf = path.read_bytes()
    older, newer = sorted(struct.unpack_from("<Q", buf, where + 8)[0] for where in (64 * 1024, 128 * 1024))
    with open_image(path) as img:
        assert isinstance(img, VhdxImage)
        seq = img.sequence
        assert seq == newer
    _rechecksum(path, 128 * 1024, 4096, {8: struct.pack("<Q", seq + 10)})
    _rechecksum(path, 64 * 1024, 4096, {8: struct.pack("<Q", seq + 5)})
    with open_image(path) as img:
        assert isinstance(img, VhdxImage)
        assert img.sequence == seq + 10
    _patch(path, 128 * 1024 + 100, b"garbage")  # the newer header's checksum breaks: the older is used
    with open_image(path) as img:
        assert isinstance(img, VhdxImage)
        assert img.sequence == seq + 5
    assert older < newer
    _patch(path, 64 * 1024 + 100, b"garbage")
    with pytest.raises(ImageFormatError, match="neither header is valid: bad checksum"):
        open_image(path)


def test_dirty_log_is_refused(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    for where in (64 * 1024, 128 * 1024):
        _rechecksum(path, where, 4096, {48: uuid.uuid4().bytes_le})
    with pytest.raises(UnsupportedImageError, match=r"log that must be replayed.*qemu-img"):
        open_image(path)


def test_differencing_disk_is_refused(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    _patch(path, _metadata_item(path, FILE_PARAMETERS) + 4, struct.pack("<I", 2))
    with pytest.raises(UnsupportedImageError, match="differencing disk"):
        open_image(path)


def test_4k_logical_sectors(source: Path, tmp_path: Path) -> None:
    raw = sparse_raw(tmp_path / "r.raw", 4 * MiB, [(0, pattern(10_000, 1)), (3 * MiB, pattern(4096, 2))])
    path = convert(raw, tmp_path / "d.vhdx", "vhdx", "block_size=1M")
    _patch(path, _metadata_item(path, LOGICAL_SECTOR_SIZE), struct.pack("<I", 4096))
    with open_image(path) as img:
        assert isinstance(img, VhdxImage)
        assert img.info()["logical_sector_size"] == 4096
        assert img.read(0, img.virtual_size) == raw.read_bytes()
    _patch(path, _metadata_item(path, LOGICAL_SECTOR_SIZE), struct.pack("<I", 1000))
    with pytest.raises(ImageFormatError, match="not 512 or 4096"):
        open_image(path)


def test_required_unknown_region_is_refused(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    buf = path.read_bytes()[192 * 1024 : 256 * 1024]
    count = struct.unpack_from("<I", buf, 8)[0]
    entry = struct.pack("<16sQII", uuid.uuid4().bytes_le, 1 << 20, 1 << 20, 1)
    _rechecksum(path, 192 * 1024, 64 * 1024, {8: struct.pack("<I", count + 1), 16 + 32 * count: entry})
    with pytest.raises(UnsupportedImageError, match="requires the unknown region"):
        open_image(path)


def test_bad_region_tables(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    _patch(path, 192 * 1024 + 40, b"x")
    with open_image(path) as img:  # the second copy is used
        assert img.read(0, 10) == source.read_bytes()[:10]
    _patch(path, 256 * 1024 + 40, b"x")
    with pytest.raises(ImageFormatError, match="neither region table is valid"):
        open_image(path)


def test_region_outside_the_file(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    for where in (192 * 1024, 256 * 1024):
        _rechecksum(path, where, 64 * 1024, {16 + 16: struct.pack("<Q", 1 << 50)})
    with pytest.raises(ImageFormatError, match="outside the file or misaligned"):
        open_image(path)


# ---- BAT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ((1 << 30) << 20 | 6, "runs past the end"),
        (0 << 20 | 6, "file offset 0"),
        (1 << 20 | 6, "overlaps the image metadata"),  # on top of the header area
        (4, "state 4"),
        (7, "state 7"),
        ("dup", "overlaps block"),
    ],
)
def test_bad_bat_entries(source: Path, tmp_path: Path, entry: int | str, match: str) -> None:
    path = _dynamic(source, tmp_path)
    bat = _regions(path)[BAT][0]
    value = struct.unpack_from("<Q", path.read_bytes(), bat)[0] if entry == "dup" else int(entry)
    _patch(path, bat + 8 * 5, struct.pack("<Q", value))
    with pytest.raises(
        ImageFormatError, match=f"vhdx (BAT|block table) entry at byte {bat + 40:#x}: .*{match}"
    ):
        open_image(path)


def test_zero_states_read_as_zeros(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    bat = _regions(path)[BAT][0]
    for state in (0, 1, 2, 3):
        _patch(path, bat, struct.pack("<Q", state))
        with open_image(path) as img:
            assert img.read(0, MiB) == bytes(MiB)
            assert img.allocation.data_runs[0][0] >= MiB


def test_absurd_virtual_size(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    item = _metadata_item(path, uuid.UUID("2fa54224-cd1b-4876-b211-5dbed83bf4b8"))
    _patch(path, item, struct.pack("<Q", 1 << 62))
    with pytest.raises(ImageFormatError, match="absurd size"):
        open_image(path)
    _patch(path, item, struct.pack("<Q", 60 << 40))  # allowed, but the BAT region is far too small
    with pytest.raises(ImageFormatError, match="the disk needs"):
        open_image(path)


def test_truncated(source: Path, tmp_path: Path) -> None:
    path = _dynamic(source, tmp_path)
    full = path.read_bytes()
    for cut in (0, 8, 70_000, 200_000, MiB + 100, len(full) - MiB):
        path.write_bytes(full[:cut])
        with pytest.raises(ImageFormatError):
            open_image(path, "vhdx")
