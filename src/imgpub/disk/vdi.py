"""VDI (VirtualBox): static and dynamic images, header version 1.1 as VirtualBox and qemu-img write it.

A 512-byte header (a text banner, then little-endian fields from 0x40), a block map of u32 entries
(block index in the data area, or 0xFFFFFFFF / 0xFFFFFFFE for a block that reads as zeros) and the
data area. Differencing images (a parent UUID) need their parent and are refused with the command
that merges them.
"""

from __future__ import annotations

import struct
import sys
import uuid
from array import array
from pathlib import Path
from typing import Any

from imgpub.disk.errors import UnsupportedImageError
from imgpub.disk.image import Window
from imgpub.disk.vhd import BlockMappedImage

SECTOR = 512
SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x00010001
DYNAMIC, STATIC, UNDO, DIFFERENCING = 1, 2, 3, 4
UNALLOCATED, DISCARDED = 0xFFFFFFFF, 0xFFFFFFFE
HEADER_SIZE_QEMU = 0x180  # qemu writes 0x180, VirtualBox 0x190 (with the LCHS geometry)
MAX_BLOCKS = 1 << 22  # 16 MiB of block map: 4 TiB in 1 MiB blocks (VirtualBox's limit is 2 TiB)
MAX_BLOCK_SIZE = 256 << 20
_FIELDS = struct.Struct("<IIIII256sIIIIIIIQIIII16s16s16s16s")  # from byte 0x40
MERGE = (
    "merge it with its parents first: `VBoxManage clonemedium disk {path} flat.vdi` (VirtualBox "
    "follows the chain), then publish flat.vdi"
)
REWRITE = (
    "rewrite it with `VBoxManage clonemedium disk {path} new.vdi` or `qemu-img convert -O vdi {path} new.vdi`"
)


class VdiImage(BlockMappedImage):
    format = "vdi"

    def __init__(self, path: Path, fd: int, *, window: Window | None = None) -> None:
        super().__init__(path, fd, window=window)
        head = self.pread(0, SECTOR, "header")
        (sig, version, header_size, kind, _flags, _comment, bmap, data, _cyl, _heads, _spt, sector_size, _,
         disk_size, bs, extra, blocks, _allocated, image_id, _snap, link, parent) = _FIELDS.unpack_from(
            head, 0x40)  # fmt: skip
        if sig != SIGNATURE:
            raise self._error("header", 0x40, f"bad signature {sig:#010x} (expected {SIGNATURE:#010x})")
        if version != VERSION_1_1:
            raise self._unsupported(
                0x44, f"header version {version >> 16}.{version & 0xFFFF} is not 1.1; {REWRITE}"
            )
        if kind == DIFFERENCING or any(parent) or any(link):
            where = 0x4C if kind == DIFFERENCING else 0x1B8 if any(parent) else 0x1A8
            raise self._unsupported(where, f"is a differencing image (it needs its parent); {MERGE}")
        if kind not in (DYNAMIC, STATIC):
            what = "an undo image" if kind == UNDO else f"of unknown type {kind}"
            raise self._unsupported(0x4C, f"is {what}; {REWRITE}")
        if sector_size != SECTOR:
            raise self._unsupported(0x168, f"sector size {sector_size} is not 512; {REWRITE}")
        if bs < SECTOR or bs & (bs - 1) or bs > MAX_BLOCK_SIZE:
            raise self._error("header", 0x178, f"block size {bs} is not a power of two up to 256 MiB")
        if extra:
            raise self._unsupported(0x17C, f"{extra} bytes of extra data per block; {REWRITE}")
        if blocks > MAX_BLOCKS:
            raise self._error("header", 0x180, f"{blocks} blocks is absurd (more than {MAX_BLOCKS})")
        if disk_size == 0 or disk_size % SECTOR or disk_size > blocks * bs:
            raise self._error(
                "header",
                0x170,
                f"disk size {disk_size} is not a whole number of sectors within {blocks} blocks of "
                f"{bs} bytes",
            )
        bmap_end = bmap + 4 * blocks
        if bmap % SECTOR or data % SECTOR or bmap < SECTOR or data < bmap_end:
            raise self._error(
                "header",
                0x154,
                f"block map at {bmap:#x} ({blocks} entries) and data at {data:#x} are misplaced",
            )
        if not HEADER_SIZE_QEMU <= header_size <= bmap - 0x48:
            raise self._error(
                "header", 0x48, f"header size {header_size:#x} does not fit before the block map"
            )
        self.virtual_size, self.block_size, self.kind = disk_size, bs, kind
        self.image_id = uuid.UUID(bytes_le=image_id)
        self.banner = head[:0x40].split(b"\n", 1)[0].decode("latin-1").strip("<> \x00")
        self.hosts = self._hosts(bmap, blocks, data)
        self._map_blocks(lambda i: bmap + 4 * i, [(0, SECTOR), (bmap, bmap_end)], self.file_size)

    def _unsupported(self, offset: int, what: str) -> UnsupportedImageError:
        return UnsupportedImageError(self.path, "vdi", "header", offset, what.format(path=self.path))

    def _hosts(self, bmap: int, blocks: int, data: int) -> array[int]:
        entries = array("I")
        entries.frombytes(self.pread(bmap, 4 * blocks, "block map"))
        if sys.byteorder == "big":  # pragma: no cover
            entries.byteswap()
        hosts = array("Q", bytes(8 * blocks))
        bs = self.block_size
        for i, entry in enumerate(entries):
            if entry in (UNALLOCATED, DISCARDED):
                continue
            if entry >= blocks:
                raise self._error(
                    "block map entry", bmap + 4 * i, f"block {i} is stored at index {entry}, past {blocks}"
                )
            hosts[i] = data + entry * bs
        return hosts

    def info(self) -> dict[str, Any]:
        return {
            "subformat": "static" if self.kind == STATIC else "dynamic",
            "block_size": self.block_size,
            "creator": self.banner,
            "uuid": str(self.image_id),
        }
