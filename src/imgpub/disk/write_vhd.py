"""Fixed VHD for Azure: the raw disk rounded up to a whole MiB, then a 512-byte footer.

Azure takes only fixed VHDs whose size is a whole number of MiB; the page blob holds the data area
followed by the footer, and only non-zero 512-aligned pages need uploading (`vhd_pages`).
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from imgpub.disk.image import DiskImage
from imgpub.disk.write_raw import ProgressFn, data_ranges, replace_atomically, write_sparse

__all__ = ["FOOTER_SIZE", "chs_geometry", "vhd_disk_size", "vhd_footer", "vhd_pages", "write_vhd"]

MiB = 1 << 20
SECTOR = 512
FOOTER_SIZE = 512
VHD_EPOCH = 946_684_800
"""2000-01-01T00:00:00Z in Unix seconds: VHD time stamps count from there."""
CREATOR_APP = b"win "
"""Hyper-V's tag: readers (qemu included) then take the size from `current_size`, not from CHS."""
CREATOR_VERSION = 0x000A0000
CREATOR_HOST_OS = b"Wi2k"
"""FreeBSD's mkimg found that Azure checks this field."""
DISK_TYPE_FIXED = 2
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")


def vhd_disk_size(virtual_size: int) -> int:
    """Size of the VHD data area: `virtual_size` rounded up to a whole MiB (Azure's rule)."""
    return -(-virtual_size // MiB) * MiB


def chs_geometry(disk_size: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) by the algorithm of the VHD specification's appendix."""
    total = min(disk_size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cyl_heads = total // sectors
    else:
        sectors = 17
        cyl_heads = total // sectors
        heads = max(4, (cyl_heads + 1023) // 1024)
        if cyl_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cyl_heads = total // sectors
        if cyl_heads >= heads * 1024:
            sectors, heads = 63, 16
            cyl_heads = total // sectors
    return cyl_heads // heads, heads, sectors


def vhd_footer(disk_size: int, *, unique_id: bytes | None = None, timestamp: int | None = None) -> bytes:
    """The 512-byte footer of a fixed VHD whose data area is `disk_size` bytes (a MiB multiple).

    `timestamp` is in Unix seconds (now by default); `unique_id` is 16 bytes (random by default).
    """
    if disk_size % MiB:
        raise ValueError(f"fixed VHD size {disk_size} is not a whole number of MiB (Azure rejects it)")
    if unique_id is None:
        unique_id = uuid.uuid4().bytes
    if len(unique_id) != 16:
        raise ValueError(f"unique_id must be 16 bytes, not {len(unique_id)}")
    unix = int(time.time()) if timestamp is None else timestamp
    stamp = max(0, unix - VHD_EPOCH) & 0xFFFFFFFF
    cylinders, heads, sectors = chs_geometry(disk_size)
    fields = [
        b"conectix", 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, stamp, CREATOR_APP, CREATOR_VERSION,
        CREATOR_HOST_OS, disk_size, disk_size, cylinders, heads, sectors, DISK_TYPE_FIXED,
        0, unique_id, 0, bytes(427),
    ]  # fmt: skip
    checksum = ~sum(_FOOTER.pack(*fields)) & 0xFFFFFFFF
    fields[14] = checksum
    return _FOOTER.pack(*fields)


def vhd_pages(img: DiskImage, *, max_page: int = 4 * MiB) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of the non-zero ranges of the VHD data area, ascending.

    Each range is 512-aligned in offset and length and at most `max_page` bytes (a multiple of
    64 KiB). Zero runs of 64 KiB or more are skipped. The footer is not included: it goes at
    offset `vhd_disk_size(img.virtual_size)`.
    """
    for offset, pieces in data_ranges(img, max_len=max_page):
        data = pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)
        if len(data) % SECTOR:  # only the last range of a disk whose size is not sector-aligned
            data += bytes(SECTOR - len(data) % SECTOR)
        yield offset, data


def write_vhd(img: DiskImage, dest: Path, on_progress: ProgressFn | None = None) -> None:
    """Write `img` as a sparse fixed VHD at `dest` (data area, then footer; temp file + rename)."""
    disk_size = vhd_disk_size(img.virtual_size)
    with replace_atomically(dest) as fd:
        os.ftruncate(fd, disk_size + FOOTER_SIZE)
        write_sparse(fd, img, on_progress)
        os.pwrite(fd, vhd_footer(disk_size), disk_size)
        os.fchmod(fd, 0o644)
