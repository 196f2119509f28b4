"""VMDK sparse extent headers: hosted sparse (KDMV), ESX sparse (COWD), and the embedded descriptor."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from imgpub.disk.errors import ImageFormatError
from imgpub.disk.vmdk_descriptor import Descriptor, parse_descriptor

SECTOR = 512
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAX_DESCRIPTOR = 1 << 20
_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")
_COWD = struct.Struct("<4sIIIIII")  # magic, version, flags, sectors, grain, GD sector, GD entries
COWD_GTES = 4096  # ESX sparse grain tables always hold 4096 entries
COWD_HEADER_SECTORS = 4  # the 2048-byte COWDisk_Header


@dataclass(frozen=True, slots=True)
class SparseHeader:
    version: int
    flags: int
    capacity: int
    grain_sectors: int
    desc_offset: int
    desc_size: int
    gtes_per_gt: int
    gd_offset: int
    overhead: int
    nl_check: bytes
    compress: int


def parse_header(buf: bytes, path: Path, where: int) -> SparseHeader:
    magic, ver, flags, cap, grain, doff, dsize, gtes, _rgd, gd, over, _unclean, nl, comp = (
        _HEADER.unpack_from(buf)
    )
    if magic != b"KDMV":
        raise ImageFormatError(path, "vmdk", "sparse header", where, f"bad magic {magic!r}")
    return SparseHeader(ver, flags, cap, grain, doff, dsize, gtes, gd, over, nl, comp)


def parse_cowd(buf: bytes) -> tuple[SparseHeader, int]:
    """An ESX COWD header as a hosted sparse header (4096-entry tables, no compression), and the
    number of grain directory entries it declares."""
    _magic, ver, _flags, sectors, grain, gd, gd_entries = _COWD.unpack_from(buf)
    return SparseHeader(ver, 0, sectors, grain, 0, 0, COWD_GTES, gd, COWD_HEADER_SECTORS, b"", 0), gd_entries


def embedded_descriptor(
    path: Path, fd: int, hdr: SparseHeader, base: int = 0, file_size: int | None = None
) -> tuple[Descriptor, int]:
    """The descriptor a hosted sparse file carries (empty if none), and its byte offset."""
    size = hdr.desc_size * SECTOR
    if size > MAX_DESCRIPTOR:
        raise ImageFormatError(path, "vmdk", "sparse header", 36, f"absurd descriptor size {size}")
    if not hdr.desc_offset:
        return Descriptor({}, ()), 0
    start = hdr.desc_offset * SECTOR
    end = os.fstat(fd).st_size - base if file_size is None else file_size
    if start + size > end:
        raise ImageFormatError(path, "vmdk", "descriptor", start, "runs past the end of the file")
    text = os.pread(fd, size, base + start)
    return parse_descriptor(text.split(b"\x00", 1)[0].decode("utf-8", "replace")), start
