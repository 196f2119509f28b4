"""VHD (Virtual PC / Hyper-V gen 1): fixed and dynamic disks. Differencing disks are refused."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage, Window
from imgpub.disk.zeros import zeros

SECTOR = 512
UNALLOCATED = 0xFFFFFFFF
VHD_MAX_SECTORS = 0xFF000000  # qemu: 2040 GiB
VHD_MAX_GEOMETRY = 65535 * 16 * 255
MAX_BAT_ENTRIES = 1 << 22  # 16 MiB of BAT
FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4
SIZE_FROM_FOOTER = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\x00")  # qemu's list; others use CHS
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBI")
_DYN = struct.Struct(">8sQQIIII")


def vhd_checksum(buf: bytes, at: int) -> int:
    """One's complement of the byte sum, with the 4-byte checksum field at `at` counted as zero."""
    return ~(sum(buf) - sum(buf[at : at + 4])) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Footer:
    data_offset: int
    creator_app: bytes
    current_size: int
    cylinders: int
    heads: int
    sectors: int
    disk_type: int

    @property
    def virtual_size(self) -> int:
        """The size as qemu computes it, so that imgpub and `qemu-img info -f vpc` agree."""
        chs = self.cylinders * self.heads * self.sectors
        if self.creator_app in SIZE_FROM_FOOTER or chs == VHD_MAX_GEOMETRY:
            return self.current_size // SECTOR * SECTOR
        return chs * SECTOR


class BlockMappedImage(DiskImage):
    """A disk cut in equal blocks, each either absent (zeros) or stored at a host offset."""

    block_size: int = 0
    hosts: array[int]  # host byte offset of each block's data, 0 if absent
    prefix: int = 0  # per-block metadata stored just before the data (the VHD sector bitmap)

    def _error(self, structure: str, offset: int | None, what: str) -> ImageFormatError:
        return ImageFormatError(self.path, self.format, structure, offset, what)

    def _map_blocks(
        self, entry_at: Callable[[int], int], forbidden: Iterable[tuple[int, int]], end_of_data: int
    ) -> None:
        """Check every stored block against the file and the metadata, then build the allocation map."""
        bs = self.block_size
        stored = len(self.hosts) - self.hosts.count(0)
        if (stored - 1) * (bs + self.prefix) > end_of_data:  # bounds memory before sorting
            raise self._error("block table", entry_at(0), f"{stored} stored blocks cannot fit in the file")
        used = sorted((h, i) for i, h in enumerate(self.hosts) if h)
        limits = sorted(forbidden)
        prev_end, prev_i = 0, -1
        k = 0
        for host, i in used:
            length = min(bs, self.virtual_size - i * bs)
            where = entry_at(i)
            if i * bs >= self.virtual_size:
                raise self._error("block table entry", where, f"block {i} lies beyond the virtual size")
            if host + length > end_of_data:
                raise self._error(
                    "block table entry",
                    where,
                    f"block {i} at byte {host:#x} runs past the end of the data area ({end_of_data:#x})",
                )
            if host - self.prefix < prev_end:
                raise self._error(
                    "block table entry", where, f"block {i} at byte {host:#x} overlaps block {prev_i}"
                )
            while k < len(limits) and limits[k][1] <= host - self.prefix:
                k += 1
            if k < len(limits) and limits[k][0] < host + length:
                raise self._error(
                    "block table entry", where, f"block {i} at byte {host:#x} overlaps the image metadata"
                )
            prev_end, prev_i = host + length, i
        self.allocation = AllocationMap.from_runs(self.virtual_size, self._data_runs(used))

    def _data_runs(self, used: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        """Guest ranges of stored blocks whose host bytes are not holes of the image file (qemu leaves
        holes in fixed VHDX payload and in partly written blocks): those read as zeros anyway."""
        host_runs = self.host_runs()
        j = 0
        for host, i in used:
            end = host + min(self.block_size, self.virtual_size - i * self.block_size)
            while j < len(host_runs) and sum(host_runs[j]) <= host:
                j += 1
            k = j
            while k < len(host_runs) and host_runs[k][0] < end:
                a, b = max(host, host_runs[k][0]), min(end, sum(host_runs[k]))
                yield i * self.block_size + a - host, b - a
                k += 1

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Stored blocks are read straight into `buf` (one preadv each), absent ones zero-filled: the
        copy workers of write_raw and write_vhd read every block format this way."""
        end = min(offset + len(buf), self.virtual_size)
        bs = self.block_size
        pos = offset
        while pos < end:
            block, within = divmod(pos, bs)
            n = min(bs - within, end - pos)
            view = buf[pos - offset : pos - offset + n]
            host = self.hosts[block]
            if not host:
                view[:] = zeros(n)
            elif self.host_readinto(view, host + within) != n:
                raise self._error("block", host + within, "short read (truncated?)")
            pos += n
        return max(end - offset, 0)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(max(0, min(length, self.virtual_size - offset)))
        self.readinto(offset, memoryview(out))
        return bytes(out)


def read_be_u32(data: bytes) -> array[int]:
    table = array("I")
    table.frombytes(data)
    if sys.byteorder == "little":
        table.byteswap()
    return table


class VhdImage(BlockMappedImage):
    format = "vhd"

    def __init__(self, path: Path, fd: int, *, window: Window | None = None) -> None:
        super().__init__(path, fd, window=window)
        if self.file_size < SECTOR:
            raise self._error("footer", 0, f"the file is only {self.file_size} bytes, too short for a VHD")
        where = (
            0
            if self.file_size >= 3 * SECTOR and self.host_read(0, 8) == b"conectix"
            else self.file_size - SECTOR
        )
        self.footer = self._footer(where)
        self.virtual_size = self.footer.virtual_size
        kind = self.footer.disk_type
        if kind == DIFFERENCING:
            raise UnsupportedImageError(
                path,
                "vhd",
                "footer",
                where + 60,
                "is a differencing disk (it needs its parent); merge it first, e.g. "
                "`qemu-img convert -O vpc -o subformat=fixed,force_size=on CHILD.vhd FLAT.vhd`",
            )
        if kind == FIXED:
            self._open_fixed()
        elif kind == DYNAMIC:
            self._open_dynamic()
        else:
            raise self._error("footer", where + 60, f"unknown disk type {kind}")

    def _footer(self, where: int) -> Footer:
        buf = self.pread(where, SECTOR, "footer")
        cookie, _feat, _ver, data_off, _ts, app, _cver, _os, _orig, cur, cyl, heads, spt, kind = (
            _FOOTER.unpack_from(buf)
        )
        if cookie != b"conectix":
            raise self._error("footer", where, f"bad cookie {cookie!r} (expected 'conectix')")
        stored = struct.unpack_from(">I", buf, 64)[0]
        if vhd_checksum(buf, 64) != stored:
            raise self._error(
                "footer",
                where,
                f"checksum {stored:#010x} does not match the content",
            )
        return Footer(data_off, app, cur, cyl, heads, spt, kind)

    def _open_fixed(self) -> None:
        data_end = self.file_size - SECTOR
        if self.virtual_size > data_end:
            raise self._error(
                "footer",
                data_end + 48,
                f"the disk size {self.virtual_size} exceeds the {data_end} bytes of data before the footer",
            )
        self.block_size = 0
        self.allocation = AllocationMap.from_runs(self.virtual_size, self.host_runs(data_end))

    def _open_dynamic(self) -> None:
        f = self.footer
        if self.virtual_size > VHD_MAX_SECTORS * SECTOR:
            raise self._error("footer", 48, f"disk size {self.virtual_size} is over the 2040 GiB VHD limit")
        where = f.data_offset
        buf = self.pread(where, 1024, "dynamic disk header")
        cookie, _data, table, _ver, entries, bs, stored = _DYN.unpack_from(buf)
        if cookie != b"cxsparse":
            raise self._error("dynamic disk header", where, f"bad cookie {cookie!r} (expected 'cxsparse')")
        if vhd_checksum(buf, 36) != stored:
            raise self._error("dynamic disk header", where, "checksum does not match the content")
        if bs < SECTOR or bs & (bs - 1) or bs > 1 << 30:
            raise self._error("dynamic disk header", where + 32, f"block size {bs} is not a power of two")
        if entries > MAX_BAT_ENTRIES or entries * bs < self.virtual_size:
            raise self._error(
                "dynamic disk header",
                where + 28,
                f"{entries} BAT entries of {bs} bytes cannot describe a {self.virtual_size}-byte disk",
            )
        self.block_size = bs
        bat = read_be_u32(self.pread(table, entries * 4, "block allocation table"))
        bitmap = -(-(-(-bs // SECTOR) // 8) // SECTOR) * SECTOR  # one bit per sector, whole sectors
        self.prefix = bitmap
        self.hosts = array("Q", (0 if e == UNALLOCATED else e * SECTOR + bitmap for e in bat))
        bat_end = table + -(-entries * 4 // SECTOR) * SECTOR
        meta = [(0, SECTOR), (where, where + 1024), (table, bat_end)]
        self._map_blocks(lambda i: table + 4 * i, meta, self.file_size - SECTOR)

    def read(self, offset: int, length: int) -> bytes:
        if self.block_size:
            return super().read(offset, length)
        length = max(0, min(length, self.virtual_size - offset))
        return self.pread(offset, length, "data")

    def readinto(self, offset: int, buf: memoryview) -> int:
        if self.block_size:
            return super().readinto(offset, buf)
        n = max(0, min(len(buf), self.virtual_size - offset))
        if n and self.host_readinto(buf[:n], offset) != n:
            raise self._error("data", offset, "short read (truncated?)")
        return n

    def info(self) -> dict[str, Any]:
        kind = {FIXED: "fixed", DYNAMIC: "dynamic"}[self.footer.disk_type]
        facts: dict[str, Any] = {"subformat": kind, "creator": self.footer.creator_app.decode("latin-1")}
        if self.block_size:
            facts["block_size"] = self.block_size
        return facts
