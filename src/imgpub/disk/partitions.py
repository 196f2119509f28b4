"""Partition tables (MBR, GPT) of a guest disk, and the boot mode they suggest."""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from imgpub.disk.errors import ImageFormatError
from imgpub.disk.image import DiskImage

ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_GUID = "21686148-6449-6E6F-744E-656564454649"
MBR_ESP, MBR_PROTECTIVE = 0xEF, 0xEE
MBR_EXTENDED = (0x05, 0x0F, 0x85)
MAX_LOGICAL = 128
MAX_GPT_ENTRIES_BYTES = 1 << 20
_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")
_MBR_ENTRY = struct.Struct("<B3sB3sII")


@dataclass(frozen=True, slots=True)
class Partition:
    index: int  # 1-based, as Linux numbers them (logical MBR partitions from 5)
    start: int  # bytes
    size: int  # bytes
    type: str  # GPT type GUID (upper case) or MBR type code as "0x83"
    name: str = ""
    bootable: bool = False  # MBR active flag


@dataclass(frozen=True, slots=True)
class PartitionTable:
    scheme: str  # "gpt", "mbr" or "none"
    sector_size: int
    partitions: tuple[Partition, ...]
    has_esp: bool
    has_bios_boot: bool
    mbr_bootable: bool  # an active partition or boot code in the MBR
    suggested_boot: str | None  # "uefi", "bios", "uefi-preferred" (both work) or None (no hint)


Parts = tuple[Partition, ...]


def _table(
    scheme: str, ss: int, parts: tuple[Partition, ...], esp: bool, bios: bool, mbr: bool
) -> PartitionTable:
    hint = None
    if esp:
        hint = "uefi-preferred" if bios or mbr else "uefi"
    elif bios or mbr:
        hint = "bios"
    return PartitionTable(scheme, ss, parts, esp, bios, mbr, hint)


def _error(img: DiskImage, structure: str, offset: int, what: str) -> ImageFormatError:
    return ImageFormatError(img.path, "partition table", structure, offset, what)


def inspect_partitions(img: DiskImage) -> PartitionTable:
    """The partition table of the guest disk; corrupt tables raise ImageFormatError with the offset."""
    mbr = img.read(0, 512)
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return _table("none", 512, (), False, False, False)
    boot_code = any(mbr[:440])
    entries = [_MBR_ENTRY.unpack_from(mbr, 446 + 16 * k) for k in range(4)]
    if any(e[2] == MBR_PROTECTIVE for e in entries):
        for sector_size in (512, 4096):
            if img.read(sector_size, 8) == b"EFI PART":
                parts = _gpt(img, sector_size)
                esp = any(p.type == ESP_GUID for p in parts)
                bios = any(p.type == BIOS_BOOT_GUID for p in parts)
                return _table("gpt", sector_size, parts, esp, bios, boot_code)
        raise _error(img, "GPT header", 512, "protective MBR but no 'EFI PART' header at LBA 1")
    parts = _mbr(img, entries)
    esp = any(p.type == f"{MBR_ESP:#04x}" for p in parts)
    return _table("mbr", 512, parts, esp, False, boot_code or any(p.bootable for p in parts))


def _mbr(img: DiskImage, entries: list[tuple[int, bytes, int, bytes, int, int]]) -> tuple[Partition, ...]:
    sectors = img.virtual_size // 512
    parts: list[Partition] = []
    for k, (flag, _chs, kind, _chs2, lba, count) in enumerate(entries):
        where = 446 + 16 * k
        if kind == 0:
            continue
        if flag not in (0, 0x80):
            raise _error(img, "MBR entry", where, f"partition {k + 1} has an invalid boot flag {flag:#04x}")
        if count == 0 or lba == 0 or lba + count > sectors:
            raise _error(
                img,
                "MBR entry",
                where,
                f"partition {k + 1} (sectors {lba}+{count}) lies outside the {sectors}-sector disk",
            )
        parts.append(Partition(k + 1, lba * 512, count * 512, f"{kind:#04x}", bootable=flag == 0x80))
        if kind in MBR_EXTENDED:
            parts.extend(_logical(img, lba, count))
    return tuple(parts)


def _logical(img: DiskImage, ext_lba: int, ext_count: int) -> list[Partition]:
    """Follow the chain of extended boot records; loops and escapes are corruption."""
    parts: list[Partition] = []
    seen: set[int] = set()
    ebr = ext_lba
    while ebr:
        where = ebr * 512
        if ebr in seen or len(seen) >= MAX_LOGICAL:
            raise _error(img, "EBR", where, "the chain of logical partitions loops or is absurdly long")
        seen.add(ebr)
        buf = img.read(where, 512)
        if buf[510:512] != b"\x55\xaa":
            raise _error(img, "EBR", where, "missing 55AA signature")
        _f, _c, kind, _c2, rel, count = _MBR_ENTRY.unpack_from(buf, 446)
        _f, _c, nkind, _c2, nrel, _n = _MBR_ENTRY.unpack_from(buf, 462)
        if kind:
            start = ebr + rel
            if count == 0 or rel == 0 or start + count > ext_lba + ext_count:
                raise _error(img, "EBR", where + 446, f"logical partition {start}+{count} is outside")
            parts.append(Partition(5 + len(parts), start * 512, count * 512, f"{kind:#04x}"))
        ebr = ext_lba + nrel if nkind else 0
        if ebr and not ext_lba <= ebr < ext_lba + ext_count:
            raise _error(img, "EBR", where + 462, f"next EBR at sector {ebr} leaves the extended partition")
    return parts


def _gpt(img: DiskImage, ss: int) -> tuple[Partition, ...]:
    try:
        return _gpt_at(img, ss, 1)
    except ImageFormatError as primary:
        last = img.virtual_size // ss - 1
        try:
            return _gpt_at(img, ss, last)
        except ImageFormatError:
            raise primary from None


def _gpt_at(img: DiskImage, ss: int, lba: int) -> tuple[Partition, ...]:
    where = lba * ss
    buf = img.read(where, ss)
    if len(buf) < _GPT_HEADER.size:
        raise _error(img, "GPT header", where, "beyond the end of the disk")
    sig, _rev, hsize, crc, _r, my_lba, _alt, first, last, _disk, elba, count, esize, ecrc = (
        _GPT_HEADER.unpack_from(buf)
    )
    if sig != b"EFI PART":
        raise _error(img, "GPT header", where, "missing 'EFI PART' signature")
    if not 92 <= hsize <= ss:
        raise _error(img, "GPT header", where + 12, f"header size {hsize} is invalid")
    if zlib.crc32(buf[:16] + bytes(4) + buf[20:hsize]) != crc:
        raise _error(img, "GPT header", where + 16, "header CRC32 does not match")
    sectors = img.virtual_size // ss
    if my_lba != lba or not first <= last + 1 or last >= sectors:
        raise _error(img, "GPT header", where + 24, f"LBAs {my_lba}/{first}..{last} do not fit the disk")
    table = count * esize
    if (
        esize < 128
        or esize % 8
        or table > MAX_GPT_ENTRIES_BYTES
        or elba == 0
        or (elba * ss + table) > img.virtual_size
    ):
        raise _error(
            img, "GPT header", where + 72, f"{count} entries of {esize} bytes at LBA {elba} are invalid"
        )
    raw = img.read(elba * ss, table)
    if zlib.crc32(raw) != ecrc:
        raise _error(img, "GPT entries", elba * ss, "partition entry array CRC32 does not match")
    parts: list[Partition] = []
    for k in range(count):
        kind, _uniq, start, end, _attrs, name = _GPT_ENTRY.unpack_from(raw, k * esize)
        if kind == bytes(16):
            continue
        if not first <= start <= end <= last:
            raise _error(
                img,
                "GPT entry",
                elba * ss + k * esize,
                f"partition {k + 1} (LBA {start}..{end}) is out of bounds",
            )
        label = name.decode("utf-16-le", "replace").split("\x00", 1)[0]
        guid = str(uuid.UUID(bytes_le=kind)).upper()
        parts.append(Partition(k + 1, start * ss, (end - start + 1) * ss, guid, label))
    return tuple(parts)
