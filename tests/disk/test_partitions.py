"""Partition tables: GPT and MBR written here byte by byte (and one made by sgdisk, in the corpus),
the boot mode they suggest, and corrupt tables as ImageFormatError with the offset."""

from __future__ import annotations

import struct
import tempfile
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaging import MiB, convert, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.partitions import BIOS_BOOT_GUID, ESP_GUID, inspect_partitions

LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
CORPUS = Path(__file__).parent / "corpus"
SIZE = 16 * MiB


def _entry(kind: str, first: int, last: int, name: str) -> bytes:
    return struct.pack(
        "<16s16sQQQ72s",
        uuid.UUID(kind).bytes_le,
        uuid.uuid4().bytes_le,
        first,
        last,
        0,
        name.encode("utf-16-le"),
    )


def _gpt_header(lba: int, alt: int, sectors: int, entries_lba: int, table: bytes, ss: int) -> bytes:
    fields = [
        b"EFI PART",
        0x10000,
        92,
        0,
        0,
        lba,
        alt,
        34 if ss == 512 else 6,
        sectors - 34 if ss == 512 else sectors - 6,
    ]
    head = struct.pack("<8sIIIIQQQQ", *fields) + uuid.uuid4().bytes_le
    head += struct.pack("<QIII", entries_lba, 128, 128, zlib.crc32(table))
    head = head[:16] + struct.pack("<I", zlib.crc32(head)) + head[20:]
    return head.ljust(ss, b"\x00")


def _mbr(entries: list[tuple[int, int, int, int]], boot_code: bool = False) -> bytes:
    """entries: (flag, type, first lba, sectors)."""
    mbr = bytearray(512)
    if boot_code:
        mbr[0:3] = b"\xeb\x63\x90"
    for k, (flag, kind, lba, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", mbr, 446 + 16 * k, flag, b"\0\0\0", kind, b"\0\0\0", lba, count)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def gpt_disk(
    path: Path, parts: list[tuple[str, int, int, str]], *, ss: int = 512, boot_code: bool = False
) -> Path:
    """A disk with a protective MBR, primary and backup GPT holding `parts` (type, first, last, name)."""
    sectors = SIZE // ss
    table = b"".join(_entry(*p) for p in parts).ljust(128 * 128, b"\x00")
    table_sectors = len(table) // ss
    pmbr = _mbr([(0, 0xEE, 1, min(sectors - 1, 0xFFFFFFFF))], boot_code)
    writes = [
        (0, pmbr),
        (ss, _gpt_header(1, sectors - 1, sectors, 2, table, ss)),
        (2 * ss, table),
        ((sectors - 1 - table_sectors) * ss, table),
        ((sectors - 1) * ss, _gpt_header(sectors - 1, 1, sectors, sectors - 1 - table_sectors, table, ss)),
    ]
    return sparse_raw(path, SIZE, writes)


def _table(path: Path, fmt: str = "auto"):  # type: ignore[no-untyped-def]
    with open_image(path, fmt) as img:
        return inspect_partitions(img)


@pytest.mark.parametrize(
    ("kinds", "boot_code", "suggested"),
    [
        ([ESP_GUID, LINUX], False, "uefi"),
        ([BIOS_BOOT_GUID, LINUX], False, "bios"),
        ([BIOS_BOOT_GUID, ESP_GUID, LINUX], False, "uefi-preferred"),
        ([ESP_GUID, LINUX], True, "uefi-preferred"),
        ([LINUX], True, "bios"),
        ([LINUX], False, None),
    ],
)
def test_gpt_boot_modes(tmp_path: Path, kinds: list[str], boot_code: bool, suggested: str | None) -> None:
    parts = [(k, 2048 + i * 4096, 2048 + i * 4096 + 4095, f"p{i}") for i, k in enumerate(kinds)]
    t = _table(gpt_disk(tmp_path / "d.raw", parts, boot_code=boot_code))
    assert t.scheme == "gpt"
    assert t.suggested_boot == suggested
    assert [p.type for p in t.partitions] == kinds
    assert [p.name for p in t.partitions] == [f"p{i}" for i in range(len(kinds))]
    assert t.partitions[0].start == 2048 * 512 and t.partitions[0].size == 4096 * 512
    assert t.has_esp == (ESP_GUID in kinds)
    assert t.has_bios_boot == (BIOS_BOOT_GUID in kinds)


def test_gpt_made_by_sgdisk_inside_a_vmdk() -> None:
    """sgdisk -n1:2048:+1M -t1:EF02 -n2:0:+2M -t2:EF00 -n3:0:0 -t3:8300 on an 8 MiB disk."""
    t = _table(CORPUS / "vmdk_gpt_sgdisk.vmdk")
    assert t.scheme == "gpt"
    assert t.suggested_boot == "uefi-preferred"
    assert [(p.index, p.start // 512, p.size // 512, p.type, p.name) for p in t.partitions] == [
        (1, 2048, 2048, BIOS_BOOT_GUID, "bios"),
        (2, 4096, 4096, ESP_GUID, "EFI System"),
        (3, 8192, 8159, LINUX, "root"),
    ]


def test_gpt_with_4k_sectors(tmp_path: Path) -> None:
    t = _table(gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 256, 511, "esp")], ss=4096))
    assert (t.scheme, t.sector_size, t.suggested_boot) == ("gpt", 4096, "uefi")
    assert t.partitions[0].start == 256 * 4096


def test_gpt_in_a_converted_image(tmp_path: Path) -> None:
    raw = gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 2048, 4095, "esp")])
    for fmt, opts in (("vpc", ["subformat=dynamic"]), ("vhdx", []), ("vmdk", ["subformat=streamOptimized"])):
        t = _table(convert(raw, tmp_path / f"d.{fmt}", fmt, *opts))
        assert t.suggested_boot == "uefi", fmt


def test_corrupt_primary_gpt_falls_back_to_the_backup(tmp_path: Path) -> None:
    path = gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 2048, 4095, "esp")])
    with open(path, "r+b") as f:
        f.seek(512 + 40)
        f.write(b"\xff")
    assert _table(path).suggested_boot == "uefi"
    with open(path, "r+b") as f:
        f.seek(SIZE - 512 + 40)
        f.write(b"\xff")
    with pytest.raises(ImageFormatError, match=r"GPT header at byte 0x210: header CRC32"):
        _table(path)


def _rewrite_entry(path: Path, index: int, entry: bytes) -> None:
    """Replace a GPT entry in both copies and fix every CRC, as a buggy partitioning tool would."""
    buf = bytearray(path.read_bytes())
    sectors = SIZE // 512
    for header_lba in (1, sectors - 1):
        h = header_lba * 512
        entries_lba = struct.unpack_from("<Q", buf, h + 72)[0]
        e = entries_lba * 512
        buf[e + 128 * index : e + 128 * index + 128] = entry
        struct.pack_into("<I", buf, h + 88, zlib.crc32(buf[e : e + 128 * 128]))
        struct.pack_into("<I", buf, h + 16, 0)
        struct.pack_into("<I", buf, h + 16, zlib.crc32(buf[h : h + 92]))
    path.write_bytes(bytes(buf))


def test_gpt_partition_out_of_bounds(tmp_path: Path) -> None:
    path = gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 2048, 4095, "esp")])
    _rewrite_entry(path, 1, _entry(LINUX, 4096, 10**9, "huge"))
    with pytest.raises(ImageFormatError, match=r"GPT entry at byte 0x480: partition 2 .* out of bounds"):
        _table(path)


def test_gpt_entry_array_crc(tmp_path: Path) -> None:
    path = gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 2048, 4095, "esp")])
    buf = bytearray(path.read_bytes())
    buf[1024 + 200] ^= 1
    buf[SIZE - 33 * 512 + 200] ^= 1
    path.write_bytes(bytes(buf))
    with pytest.raises(ImageFormatError, match=r"GPT entries at byte 0x400: partition entry array CRC32"):
        _table(path)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (80, struct.pack("<I", 1 << 30), "entries of"),
        (84, struct.pack("<I", 7), "entries of"),
        (12, struct.pack("<I", 10), "header size"),
        (48, struct.pack("<Q", 10**12), "do not fit"),
    ],
)
def test_gpt_header_bounds(tmp_path: Path, field: int, value: bytes, match: str) -> None:
    path = gpt_disk(tmp_path / "d.raw", [(ESP_GUID, 2048, 4095, "esp")])
    buf = bytearray(path.read_bytes())
    for h in (512, SIZE - 512):
        buf[h + field : h + field + len(value)] = value
        struct.pack_into("<I", buf, h + 16, 0)
        size = struct.unpack_from("<I", buf, h + 12)[0]
        struct.pack_into("<I", buf, h + 16, zlib.crc32(buf[h : h + min(max(size, 92), 512)]))
    path.write_bytes(bytes(buf))
    with pytest.raises(ImageFormatError, match=match):
        _table(path)


def test_protective_mbr_without_gpt(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "d.raw", SIZE, [(0, _mbr([(0, 0xEE, 1, SIZE // 512 - 1)]))])
    with pytest.raises(ImageFormatError, match="no 'EFI PART' header"):
        _table(path)


@pytest.mark.parametrize(
    ("entries", "boot_code", "suggested", "esp"),
    [
        ([(0, 0xEF, 2048, 4096), (0, 0x83, 6144, 8192)], False, "uefi", True),
        ([(0x80, 0x83, 2048, 8192)], False, "bios", False),
        ([(0, 0x83, 2048, 8192)], True, "bios", False),
        ([(0x80, 0xEF, 2048, 4096), (0, 0x83, 6144, 8192)], True, "uefi-preferred", True),
        ([(0, 0x83, 2048, 8192)], False, None, False),
    ],
)
def test_mbr_boot_modes(
    tmp_path: Path,
    entries: list[tuple[int, int, int, int]],
    boot_code: bool,
    suggested: str | None,
    esp: bool,
) -> None:
    t = _table(sparse_raw(tmp_path / "d.raw", SIZE, [(0, _mbr(entries, boot_code))]))
    assert t.scheme == "mbr"
    assert t.suggested_boot == suggested
    assert t.has_esp == esp
    assert [(p.start // 512, p.size // 512, p.type) for p in t.partitions] == [
        (lba, n, f"{k:#04x}") for _f, k, lba, n in entries
    ]


def test_mbr_logical_partitions(tmp_path: Path) -> None:
    ext = 10_000
    ebr1 = _mbr([(0, 0x83, 63, 1000), (0, 0x05, 2000, 3000)])
    ebr2 = _mbr([(0, 0x82, 63, 500)])
    disk = [
        (0, _mbr([(0x80, 0x83, 2048, 4096), (0, 0x0F, ext, 20_000)])),
        (ext * 512, ebr1),
        ((ext + 2000) * 512, ebr2),
    ]
    t = _table(sparse_raw(tmp_path / "d.raw", SIZE, disk))
    assert [(p.index, p.start // 512, p.type) for p in t.partitions] == [
        (1, 2048, "0x83"),
        (2, ext, "0x0f"),
        (5, ext + 63, "0x83"),
        (6, ext + 2063, "0x82"),
    ]
    looping = _mbr([(0, 0x83, 63, 1000), (0, 0x05, 0, 3000)])  # points back at itself
    disk[1] = (ext * 512, looping)
    with pytest.raises(ImageFormatError, match="the chain of logical partitions loops"):
        _table(sparse_raw(tmp_path / "d.raw", SIZE, disk))
    disk[1] = (ext * 512, ebr1)
    disk[2] = ((ext + 2000) * 512, _mbr([(0, 0x82, 63, 500), (0, 0x05, 0, 10)]))  # 2nd EBR -> 1st
    with pytest.raises(ImageFormatError, match=r"EBR at byte .*: the chain of logical partitions loops"):
        _table(sparse_raw(tmp_path / "d.raw", SIZE, disk))


def test_mbr_partition_past_the_end(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "d.raw", SIZE, [(0, _mbr([(0, 0x83, 2048, 10**6)]))])
    with pytest.raises(ImageFormatError, match=r"MBR entry at byte 0x1be: partition 1 .* outside"):
        _table(path)


def test_no_table(tmp_path: Path) -> None:
    t = _table(sparse_raw(tmp_path / "d.raw", SIZE, [(4096, b"data")]), "raw")
    assert (t.scheme, t.partitions, t.suggested_boot) == ("none", (), None)


@pytest.fixture(scope="module")
def gpt_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("gpt") / "d.raw"
    parts = [
        (BIOS_BOOT_GUID, 2048, 4095, "bios"),
        (ESP_GUID, 4096, 8191, "esp"),
        (LINUX, 8192, 20000, "root"),
    ]
    data = gpt_disk(path, parts, boot_code=True).read_bytes()
    ebr = _mbr([(0, 0x83, 63, 1000), (0, 0x05, 2000, 3000)])
    return data + _mbr([(0x80, 0x83, 2048, 4096), (0, 0x0F, 10_000, 20_000)]) + ebr


@given(
    edits=st.lists(st.tuples(st.integers(0, 34 * 512 + 1023), st.integers(0, 255)), min_size=1, max_size=6),
    fix_crcs=st.booleans(),
    mbr=st.booleans(),
)
@settings(max_examples=200, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_tables_raise_only_image_format_errors(
    gpt_bytes: bytes, edits: list[tuple[int, int]], fix_crcs: bool, mbr: bool
) -> None:
    size = SIZE
    disk = bytearray(gpt_bytes[:size])
    if mbr:  # an MBR disk with an extended partition at sector 10000 and its EBR
        disk[: 34 * 512] = bytes(34 * 512)
        disk[:512] = gpt_bytes[size : size + 512]
        disk[10_000 * 512 : 10_000 * 512 + 512] = gpt_bytes[size + 512 :]
    for off, value in edits:
        where = 10_000 * 512 + off - 512 if mbr and off >= 512 else off
        disk[where] = value
    if fix_crcs and not mbr:
        struct.pack_into("<I", disk, 512 + 88, zlib.crc32(disk[1024 : 1024 + 128 * 128]))
        struct.pack_into("<I", disk, 512 + 16, 0)
        hsize = min(max(struct.unpack_from("<I", disk, 512 + 12)[0], 92), 512)
        struct.pack_into("<I", disk, 512 + 16, zlib.crc32(disk[512 : 512 + hsize]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.raw"
        path.write_bytes(disk)
        try:
            t = _table(path)
        except ImageFormatError:
            return
    assert t.scheme in ("gpt", "mbr", "none")
    assert all(p.start >= 0 and p.start + p.size <= size for p in t.partitions)
