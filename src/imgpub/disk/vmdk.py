"""VMDK sparse extents: hosted sparse (magic KDMV: monolithicSparse, streamOptimized, the extents of
twoGbMaxExtentSparse) and ESX sparse (magic COWD: the extents of vmfsSparse).

A sparse file that is a whole disk reads on its own; text descriptors and descriptors naming several
extents go to vmdk_extents. Snapshots (delta disks) are refused with advice.
"""

from __future__ import annotations

import os
import struct
import threading
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage
from imgpub.disk.image import Window as HostWindow
from imgpub.disk.inflate import InflateError, inflate_zlib
from imgpub.disk.vmdk_descriptor import FLATTEN, SPARSE_TYPES, Descriptor, check_descriptor, parse_descriptor
from imgpub.disk.vmdk_header import (
    GD_AT_END,
    MAX_DESCRIPTOR,
    SECTOR,
    SparseHeader,
    embedded_descriptor,
    parse_cowd,
    parse_header,
)
from imgpub.disk.zeros import is_zero

MAX_CAPACITY = 64 << 40  # bytes; far beyond any hosted VMDK (2 TiB)
MAX_GRAIN = 16 << 20
MAX_GD_ENTRIES = 1 << 22  # 16 MiB of grain directory
GT_CACHE = 4096  # grain tables kept in memory (8 MiB at 512 entries each)
FLAG_NL_TEST = 0x1
MARKER_FOOTER, MARKER_EOS = 3, 0
_MARKER = struct.Struct("<QII")
_GRAIN_MARKER = struct.Struct("<QI")
Window = tuple[int, memoryview]  # host offset, host bytes from there


class VmdkSparseImage(DiskImage):
    """One sparse extent: grain directory -> grain tables -> grains (compressed in streams).

    `extent` opens one extent of a multi-extent disk: its descriptor (if any) is not checked, as
    the disk's descriptor rules. COWD (ESX) extents are read only that way."""

    format = "vmdk"

    def __init__(
        self, path: Path, fd: int, *, window: HostWindow | None = None, extent: bool = False
    ) -> None:
        super().__init__(path, fd, window=window)
        head = self.pread(0, SECTOR, "sparse header")
        self.cowd = head.startswith(b"COWD")
        self.footer = False
        gd_entries = None
        if self.cowd:
            hdr, gd_entries = parse_cowd(head)
        else:
            hdr = parse_header(head, path, 0)
            self.footer = hdr.gd_offset == GD_AT_END
            if self.footer:
                hdr = self._footer()
        self._validate(hdr)
        self.header = hdr
        self.descriptor = self._descriptor(hdr, extent)
        self.compressed = hdr.compress == 1
        self.markers = bool(hdr.flags & 0x20000)
        self.virtual_size = hdr.capacity * SECTOR
        self.grain_bytes = hdr.grain_sectors * SECTOR
        self._gtes = hdr.gtes_per_gt
        n_gd = -(-hdr.capacity // (hdr.grain_sectors * hdr.gtes_per_gt))
        if n_gd > MAX_GD_ENTRIES:
            raise ImageFormatError(
                path, "vmdk", "sparse header", 12, f"absurd capacity {hdr.capacity} sectors"
            )
        if gd_entries is not None:  # qemu reads the entries the COWD header declares; the rest are holes
            n_gd = min(n_gd, gd_entries)
        self._gd = self._u32_table(hdr.gd_offset * SECTOR, n_gd, "grain directory")
        self._gt_cache: OrderedDict[int, array[int]] = OrderedDict()
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._min_sector = hdr.overhead if hdr.overhead > 0 else 1
        self._limit = self.grain_bytes + (self.grain_bytes >> 3) + 1024  # largest plausible compressed grain
        self.allocation = self._build_map()

    def _error(self, structure: str, offset: int, what: str) -> ImageFormatError:
        return ImageFormatError(self.path, "vmdk", structure, offset, what)

    def _footer(self) -> SparseHeader:
        """VMware streams: the real header is the footer at EOF-1024, between a footer and an EOS marker."""
        end = self.file_size
        if end < 4 * SECTOR:
            raise self._error("footer", end, "gdOffset is GD_AT_END but the file has no footer")
        _, size, kind = _MARKER.unpack_from(self.pread(end - 3 * SECTOR, SECTOR, "footer marker"))
        _, esize, ekind = _MARKER.unpack_from(self.pread(end - SECTOR, SECTOR, "end-of-stream marker"))
        if size != 0 or kind != MARKER_FOOTER or esize != 0 or ekind != MARKER_EOS:
            raise self._error(
                "footer",
                end - 3 * SECTOR,
                "gdOffset is GD_AT_END but there is no footer marker + footer + end-of-stream marker at the "
                "end of the file (truncated stream?)",
            )
        hdr = parse_header(self.pread(end - 2 * SECTOR, SECTOR, "footer"), self.path, end - 2 * SECTOR)
        if hdr.gd_offset == GD_AT_END:
            raise self._error("footer", end - 2 * SECTOR, "footer has no gdOffset either")
        return hdr

    def _validate(self, h: SparseHeader) -> None:
        def bad(off: int, what: str, cls: type[ImageFormatError] = ImageFormatError) -> ImageFormatError:
            return cls(self.path, "vmdk", "sparse header", off, what)

        if h.version not in (1, 2, 3) or (self.cowd and h.version != 1):
            raise bad(4, f"unknown version {h.version}", UnsupportedImageError)
        if h.flags & FLAG_NL_TEST and h.nl_check != b"\n \r\n":
            raise bad(
                73, "line-ending check bytes are damaged: the file was copied in text mode (FTP ASCII?)"
            )
        if h.compress not in (0, 1):
            raise bad(
                77,
                f"unknown compression algorithm {h.compress}; convert it with "
                "`qemu-img convert -O vmdk -o subformat=streamOptimized`",
                UnsupportedImageError,
            )
        g = h.grain_sectors
        if g < 1 or g & (g - 1) or g * SECTOR > MAX_GRAIN:
            raise bad(20, f"grain size {g} sectors is not a power of two up to {MAX_GRAIN >> 20} MiB")
        if not 1 <= h.gtes_per_gt <= 8192:
            raise bad(44, f"numGTEsPerGT {h.gtes_per_gt} is out of range")
        if h.capacity * SECTOR > MAX_CAPACITY:
            raise bad(12, f"absurd capacity {h.capacity} sectors")
        if h.gd_offset == 0 or h.gd_offset * SECTOR >= self.file_size:
            raise bad(56, f"grain directory sector {h.gd_offset} is outside the file")

    def _descriptor(self, h: SparseHeader, extent: bool) -> Descriptor:
        if self.cowd:
            desc = Descriptor({}, ())
            start = 0
        else:
            desc, start = embedded_descriptor(self.path, self.fd, h, self.base, self.file_size)
        if extent:
            return desc
        if not desc.create_type and not desc.extents:
            raise UnsupportedImageError(
                self.path,
                "vmdk",
                "sparse header",
                28,
                "has no descriptor: it is one extent of a multi-file VMDK; " + FLATTEN,
            )
        check_descriptor(desc, self.path, start, SPARSE_TYPES)
        if len(desc.extents) > 1:
            raise UnsupportedImageError(
                self.path, "vmdk", "descriptor", start, f"names {len(desc.extents)} extents; {FLATTEN}"
            )
        return desc

    def _u32_table(self, offset: int, count: int, structure: str) -> array[int]:
        table = array("I")
        table.frombytes(self.pread(offset, count * 4, structure))
        if table.itemsize != 4:  # pragma: no cover - every supported platform has a 4-byte unsigned int
            raise RuntimeError("array('I') is not 32-bit here")
        if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian host
            table.byteswap()
        return table

    def _gt(self, index: int) -> array[int]:
        with self._lock:
            gt = self._gt_cache.get(index)
            if gt is not None:
                self._gt_cache.move_to_end(index)
                return gt
        gt = self._u32_table(self._gd[index] * SECTOR, self._gtes, "grain table")
        with self._lock:
            self._gt_cache[index] = gt
            if len(self._gt_cache) > GT_CACHE:
                self._gt_cache.popitem(last=False)
        return gt

    def _build_map(self) -> AllocationMap:
        gd_start = self.header.gd_offset * SECTOR
        gd_end = gd_start + len(self._gd) * 4
        gt_bytes = self._gtes * 4
        seen: set[int] = set()
        runs: list[list[int]] = []
        span = self._gtes * self.grain_bytes
        for i, sector in enumerate(self._gd):
            if sector == 0:
                continue
            where = gd_start + 4 * i
            start = sector * SECTOR
            if start < SECTOR or start in seen or (start < gd_end and start + gt_bytes > gd_start):
                raise self._error(
                    "grain directory entry",
                    where,
                    f"grain table sector {sector} overlaps the header, the directory or another table",
                )
            seen.add(start)
            gt = self._gt(i)
            allocated = [e for e in gt if e > 1] if 0 in gt or 1 in gt else gt
            if not allocated:
                continue
            self._check_grains(min(allocated), max(allocated), gt, start)
            base = i * span
            if allocated is gt:
                offs: Any = (base,)
                length = span
            else:
                offs = (base + j * self.grain_bytes for j, e in enumerate(gt) if e > 1)
                length = self.grain_bytes
            for off in offs:
                if runs and runs[-1][1] == off:
                    runs[-1][1] = off + length
                else:
                    runs.append([off, off + length])
        return AllocationMap.from_runs(self.virtual_size, ((a, b - a) for a, b in runs))

    def _check_grains(self, lo: int, hi: int, gt: array[int], gt_start: int) -> None:
        need = 12 if self.markers else 1 if self.compressed else min(self.grain_bytes, self.virtual_size)
        if lo >= self._min_sector and hi * SECTOR + need <= self.file_size:
            return
        bad = lo if lo < self._min_sector else hi
        j = gt.index(bad)
        raise self._error(
            "grain table entry",
            gt_start + 4 * j,
            f"grain sector {bad} is outside the grain area of the file "
            f"(sectors {self._min_sector}..{self.file_size // SECTOR})",
        )

    def _grain_sector(self, grain: int) -> int:
        i = grain // self._gtes
        if i >= len(self._gd) or self._gd[i] == 0:
            return 0
        return self._gt(i)[grain % self._gtes]

    def _grain_len(self, grain: int) -> int:
        return min(self.grain_bytes, self.virtual_size - grain * self.grain_bytes)

    def _window(self, plan: list[tuple[int, int]]) -> Window | None:
        """Host bytes of a run of compressed grains stored in ascending order, read with one preadv
        into a buffer the thread reuses (fresh memory costs page faults)."""
        if len(plan) < 2 or any(b[1] <= a[1] for a, b in pairwise(plan)):
            return None
        first, last = plan[0][1] * SECTOR, plan[-1][1] * SECTOR
        if last - first > len(plan) * self._limit:
            return None
        size = max(0, min(last - first + 12 + self._limit, self.file_size - first))
        buf: bytearray | None = getattr(self._tls, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._tls.buf = bytearray(size)
        view = memoryview(buf)[:size]
        return first, view[: self.host_readinto(view, first)]

    def _inflate_grain(self, grain: int, sector: int, window: Window | None = None) -> bytes:
        want = self._grain_len(grain)
        off = sector * SECTOR
        limit = self._limit
        n = max(0, min(limit + (12 if self.markers else 0), self.file_size - off))
        if window and window[0] <= off and off + n <= window[0] + len(window[1]):
            buf = window[1][off - window[0] : off - window[0] + n]
        else:
            buf = memoryview(self.host_read(off, n))
        data = buf
        if self.markers:
            if len(buf) < 12:
                raise self._error("grain marker", off, "truncated grain marker")
            lba, size = _GRAIN_MARKER.unpack_from(buf)
            if lba != grain * self.header.grain_sectors or not 0 < size <= limit:
                raise self._error(
                    "grain marker",
                    off,
                    f"marker says lba {lba} size {size}, expected lba {grain * self.header.grain_sectors} "
                    f"and a size up to {limit}",
                )
            if 12 + size > len(buf):
                raise self._error("grain", off, f"{size}-byte grain runs past the end of the file")
            data = buf[12 : 12 + size]
        try:
            return inflate_zlib(data, want)
        except InflateError as exc:
            raise self._error("grain", off, str(exc)) from None

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.virtual_size - offset))
        out = bytearray(length)
        self._fill(out, offset, self._plan(offset, length))
        return bytes(out)

    def _plan(self, offset: int, length: int) -> list[tuple[int, int]]:
        """(grain, sector) for every allocated grain overlapping [offset, offset+length)."""
        if length <= 0:
            return []
        first, last = offset // self.grain_bytes, (offset + length - 1) // self.grain_bytes
        plan = [(g, self._grain_sector(g)) for g in range(first, last + 1)]
        return [(g, s) for g, s in plan if s > 1]

    def _fill(self, out: bytearray, offset: int, plan: list[tuple[int, int]]) -> None:
        gb = self.grain_bytes
        view = memoryview(out)
        end = offset + len(out)
        window = self._window(plan) if self.compressed else None
        k = 0
        while k < len(plan):
            grain, sector = plan[k]
            lo = max(offset, grain * gb)
            if self.compressed:
                data = self._inflate_grain(grain, sector, window)
                hi = min(end, grain * gb + len(data))
                view[lo - offset : hi - offset] = data[lo - grain * gb : hi - grain * gb]
                k += 1
                continue
            n = 1  # coalesce grains that are contiguous in the file into one preadv
            while k + n < len(plan) and plan[k + n] == (grain + n, sector + n * self.header.grain_sectors):
                n += 1
            hi = min(end, (grain + n) * gb)
            host = sector * SECTOR + lo - grain * gb
            got = self.host_readinto(view[lo - offset : hi - offset], host)
            if got != hi - lo:
                raise self._error("grain", host, "grain runs past the end of the file")
            k += n

    def blocks(self, block_size: int, *, skip_zero: bool = True) -> Iterator[tuple[int, bytes]]:
        """Compressed grains inflate on a small thread pool, a bounded number of groups ahead."""
        if not self.compressed:
            yield from super().blocks(block_size, skip_zero=skip_zero)
            return
        per = max(1, self.grain_bytes // block_size) if self.grain_bytes % block_size == 0 else 1
        workers = min(2, os.cpu_count() or 1)
        pending: deque[Future[list[tuple[int, bytes]]]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="vmdk-inflate") as pool:
            try:
                for group in _groups(self.allocation.blocks(block_size), per):
                    start = group[0] * block_size
                    stop = min((group[-1] + 1) * block_size, self.virtual_size)
                    plan = self._plan(start, stop - start)
                    pending.append(pool.submit(self._decode, group, block_size, start, stop, plan, skip_zero))
                    if len(pending) >= 4 * workers:
                        yield from pending.popleft().result()
                while pending:
                    yield from pending.popleft().result()
            finally:
                for fut in pending:
                    fut.cancel()

    def _decode(
        self, group: list[int], bs: int, start: int, stop: int, plan: list[tuple[int, int]], skip_zero: bool
    ) -> list[tuple[int, bytes]]:
        gb = self.grain_bytes
        whole = start % gb == 0 and len(plan) == -(-(stop - start) // gb) and plan[0][0] * gb == start
        if len(group) == 1 and whole and all(g == plan[0][0] + k for k, (g, _) in enumerate(plan)):
            window = self._window(plan)  # the block is whole grains, all stored: join them, one copy
            data = b"".join([self._inflate_grain(g, sector, window) for g, sector in plan])
            return [] if skip_zero and is_zero(data) else [(group[0], data)]
        buf = bytearray(stop - start)
        self._fill(buf, start, plan)
        out = []
        for index in group:
            a = index * bs - start
            b = min(a + bs, len(buf))
            if not (skip_zero and is_zero(buf, a, b)):
                out.append((index, bytes(buf[a:b])))
        return out

    def info(self) -> dict[str, Any]:
        kind = "vmfsSparse extent" if self.cowd else self.descriptor.create_type
        return {
            "subformat": kind,
            "version": self.header.version,
            "grain_size": self.grain_bytes,
            "compressed": self.compressed,
            "footer": self.footer,
        }


def _groups(indexes: Iterator[int], per: int) -> Iterator[list[int]]:
    """Consecutive block indexes grouped by the grain (chunk of `per` blocks) they fall in."""
    group: list[int] = []
    for i in indexes:
        if group and i // per != group[0] // per:
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def open_vmdk(path: Path, fd: int) -> DiskImage:
    """A VMDK by its first bytes: a sparse file that is a whole disk, or a descriptor (a text file,
    or one embedded in a sparse file) naming the extents the disk is made of."""
    from imgpub.disk.vmdk_extents import VmdkExtentsImage

    head = os.pread(fd, SECTOR, 0)
    if head.startswith(b"KDMV") and len(head) == SECTOR:
        hdr = parse_header(head, path, 0)
        desc, where = embedded_descriptor(path, fd, hdr)
        # qemu's rule: a header of capacity 0 only carries a descriptor; several extents need one too
        if desc.extents and (hdr.capacity == 0 or len(desc.extents) > 1):
            check_descriptor(desc, path, where)
            return VmdkExtentsImage(path, fd, desc, where)
        return VmdkSparseImage(path, fd)
    if head.startswith(b"COWD"):
        raise UnsupportedImageError(
            path,
            "vmdk",
            "header",
            0,
            "is an ESX sparse (COWD) extent without its descriptor: open the descriptor .vmdk next to it",
        )
    size = os.fstat(fd).st_size
    if size > MAX_DESCRIPTOR:
        raise ImageFormatError(
            path, "vmdk", "descriptor", 0, f"neither a sparse extent nor a text descriptor ({size} bytes)"
        )
    raw = os.pread(fd, size, 0)
    if b"\x00" in raw.rstrip(b"\x00") or b"createType" not in raw:
        raise ImageFormatError(path, "vmdk", "descriptor", 0, "not a VMDK text descriptor (no createType)")
    desc = parse_descriptor(raw.decode("utf-8", "replace"))
    check_descriptor(desc, path, 0)
    return VmdkExtentsImage(path, fd, desc, 0)
