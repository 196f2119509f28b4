"""qcow2 v2/v3 images: bulk-parsed L1/L2 tables, positioned reads of host runs, parallel inflate.

Only the active L1 table is read (snapshots are ignored), refcounts are never loaded. Images that
depend on anything outside the file (backing file, external data file, encryption key) are
refused with the `qemu-img convert` command that flattens them.
"""

from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage, Window
from imgpub.disk.inflate import InflateError, inflate_raw, zstd_decompress
from imgpub.disk.qcow2_map import DATA, DEFLATE, ZSTD, HostMap
from imgpub.disk.zeros import is_zero, zeros

MAX_VIRTUAL_SIZE = 64 << 40  # the largest EBS volume; qemu's own limit is far above any real disk
MAX_L1_ENTRIES = 4 << 20  # qemu's QCOW_MAX_L1_SIZE (32 MiB of entries)

INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE = 1, 2, 4
INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = 8, 16
KNOWN_INCOMPAT = 0x1F
EXT_FDE, EXT_DATA_FILE = 0x0537BE77, 0x44415441

REPAIR = (
    "repair it with `qemu-img check -r all {path}` or "
    + "convert it with `qemu-img convert -O qcow2 {path} fixed.qcow2`"
)
DECRYPT = (
    "decrypt it with `qemu-img convert --object secret,id=sec0,file=KEYFILE --image-opts "
    "driver=qcow2,file.filename={path},encrypt.key-secret=sec0 -O qcow2 plain.qcow2`"
)
FLATTEN = "flatten it with `qemu-img convert -O qcow2 {path} flat.qcow2` and publish flat.qcow2"

_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # v2 fields, 72 bytes
_V3 = struct.Struct(">QQQII")  # incompatible, compatible, autoclear, refcount_order, header_length


class Qcow2Image(DiskImage):
    format = "qcow2"

    def __init__(self, path: Path, fd: int, *, window: Window | None = None) -> None:
        super().__init__(path, fd, window=window)
        self._parse_header()
        self._local = threading.local()  # per thread: the last inflated cluster, as (host, data)
        m = self._map = HostMap(self)
        self._start, self._length, self._kind, self._host, self._csize = (
            m.start,
            m.length,
            m.kind,
            m.host,
            m.csize,
        )
        self.allocation = AllocationMap.from_runs(self.virtual_size, zip(m.start, m.length, strict=True))
        self.compressed_clusters = sum(1 for k in m.kind if k != DATA)

    # -- metadata -------------------------------------------------------------------------------

    def bad(self, structure: str, offset: int | None, what: str) -> ImageFormatError:
        return ImageFormatError(self.path, "qcow2", structure, offset, what)

    def _refuse(self, feature: str, todo: str = FLATTEN) -> UnsupportedImageError:
        what = f"{feature} is not supported; {todo.format(path=self.path)}"
        return UnsupportedImageError(self.path, "qcow2", "header", None, what)

    def _parse_header(self) -> None:
        head = self.pread(0, _HEADER.size, "header")
        (magic, version, backing_off, _backing_len, cluster_bits, size, crypt, l1_size, l1_off,
         _rt_off, _rt_clusters, nb_snapshots, _snap_off) = _HEADER.unpack(head)  # fmt: skip
        if magic != b"QFI\xfb":
            raise self.bad("header", 0, f"bad magic {magic.hex()}")
        if version not in (2, 3):
            raise self.bad("header", 4, f"version {version} is not 2 or 3")
        if not 9 <= cluster_bits <= 21:
            raise self.bad("header", 20, f"cluster_bits {cluster_bits} is outside 9..21")
        self.version, self.cluster_bits, self.cluster_size = version, cluster_bits, 1 << cluster_bits
        self.nb_snapshots = nb_snapshots
        incompat, header_length, compression_type = 0, 72, 0
        if version == 3:
            incompat, _compat, _autoclear, _order, header_length = _V3.unpack(
                self.pread(72, _V3.size, "header")
            )
            if header_length < 104 or header_length % 8 or header_length > self.cluster_size:
                raise self.bad("header", 100, f"header_length {header_length} is invalid")
            if header_length > 104:
                compression_type = self.pread(104, 1, "header")[0]
        if crypt:
            raise self._refuse(f"encryption (crypt_method {crypt})", DECRYPT)
        if backing_off:
            raise self._refuse("a backing file")
        if incompat & INCOMPAT_CORRUPT:
            raise self._refuse("an image marked corrupt", REPAIR)
        if incompat & INCOMPAT_DATA_FILE:
            raise self._refuse("an external data file")
        if incompat & ~KNOWN_INCOMPAT:
            raise self._refuse(f"unknown incompatible feature bits {incompat & ~KNOWN_INCOMPAT:#x}")
        if compression_type not in (0, 1):
            raise self.bad("header", 104, f"unknown compression_type {compression_type}")
        if bool(compression_type) != bool(incompat & INCOMPAT_COMPRESSION):
            raise self.bad("header", 72, "compression_type and the compression-type feature bit disagree")
        self.compression = DEFLATE if compression_type == 0 else ZSTD
        self.extended_l2 = bool(incompat & INCOMPAT_EXTL2)
        if self.extended_l2 and cluster_bits < 14:
            raise self.bad("header", 20, "extended L2 entries need clusters of at least 16 KiB")
        self.dirty = bool(incompat & INCOMPAT_DIRTY)
        self._parse_extensions(header_length)
        if size > MAX_VIRTUAL_SIZE:
            raise self.bad("header", 24, f"virtual size {size} is larger than {MAX_VIRTUAL_SIZE} (64 TiB)")
        self.virtual_size = size
        self.l2_entries = self.cluster_size // (16 if self.extended_l2 else 8)
        per_l1 = self.cluster_size * self.l2_entries
        needed = -(-size // per_l1)
        if l1_size > MAX_L1_ENTRIES:
            raise self.bad("header", 36, f"l1_size {l1_size} is larger than qemu's limit {MAX_L1_ENTRIES}")
        if l1_size < needed:
            raise self.bad(
                "header", 36, f"l1_size {l1_size} is too small for the virtual size ({needed} needed)"
            )
        if needed and (l1_off % self.cluster_size or l1_off < self.cluster_size):
            raise self.bad(
                "header", 40, f"L1 table offset {l1_off:#x} is not a cluster-aligned offset past the header"
            )
        self.l1_offset, self.l1_used = l1_off, needed

    def _parse_extensions(self, pos: int) -> None:
        end = min(self.cluster_size, self.file_size)
        while pos + 8 <= end:
            ext_type, ext_len = struct.unpack(">II", self.pread(pos, 8, "header extension"))
            if ext_type == 0:
                return
            if ext_type == EXT_FDE:
                raise self._refuse("encryption (full-disk-encryption header)", DECRYPT)
            if ext_type == EXT_DATA_FILE:
                raise self._refuse("an external data file")
            pos += 8 + (ext_len + 7) // 8 * 8
            if pos > end:
                raise self.bad(
                    "header extension", pos, f"extension {ext_type:#x} runs past the first cluster"
                )

    # -- data -----------------------------------------------------------------------------------

    def _compressed_span(self, first: int, stop: int) -> tuple[int, bytes]:
        """One pread of the compressed bytes of segments first..stop-1 (qemu stores them in order),
        as (host offset, bytes); (0, b"") when they are too scattered for one read."""
        hosts = [(self._host[i], self._csize[i]) for i in range(first, stop) if self._kind[i] != DATA]
        if len(hosts) < 2:
            return 0, b""
        lo = min(h for h, _ in hosts)
        hi = max(h + n for h, n in hosts)
        if hi - lo > min(2 * sum(n for _, n in hosts) + self.cluster_size, 16 << 20):
            return 0, b""
        return lo, self.host_read(lo, hi - lo)

    def _cluster(self, i: int, span: tuple[int, bytes]) -> bytes:
        """The inflated guest bytes of compressed segment i (the last one read is cached)."""
        host = self._host[i]
        cached: tuple[int, bytes] | None = getattr(self._local, "cluster", None)
        if cached is not None and cached[0] == host:
            return cached[1]
        base, buf = span
        csize = self._csize[i]
        if base <= host and host + csize <= base + len(buf):
            raw: bytes | memoryview = memoryview(buf)[host - base : host - base + csize]
        else:
            raw = self.host_read(host, csize)
        try:
            if self._kind[i] == DEFLATE:
                data = inflate_raw(raw, self.cluster_size, -12)
            else:
                data = zstd_decompress(raw, self.cluster_size)
        except InflateError as exc:
            raise self.bad("compressed cluster", host, f"{exc} (guest offset {self._start[i]:#x})") from None
        self._local.cluster = (host, data)
        return data

    def read(self, offset: int, length: int) -> bytes:
        return _joined(self._parts(offset, length))

    def _walk(self, offset: int, end: int) -> Iterator[tuple[int, int, int, tuple[int, bytes]]]:
        """(pos, stop, i, span) for the segments over guest [offset, end), in order: i is the
        segment of [pos, stop), or -1 for a hole; span is the compressed bytes read in one go."""
        if end <= offset:
            return
        pos = offset
        i = max(bisect_right(self._start, offset) - 1, 0)
        count = len(self._start)
        span = (
            self._compressed_span(i, bisect_left(self._start, end, lo=i))
            if self.compressed_clusters
            else (0, b"")
        )
        while pos < end and i < count:
            seg_start = self._start[i]
            if seg_start >= end:
                break
            seg_end = seg_start + self._length[i]
            if seg_end <= pos:
                i += 1
                continue
            if seg_start > pos:
                yield pos, seg_start, -1, span
                pos = seg_start
            stop = min(seg_end, end)
            yield pos, stop, i, span
            pos = stop
            i += 1
        if pos < end:
            yield pos, end, -1, span

    def _parts(self, offset: int, length: int) -> list[bytes | memoryview]:
        """The pieces of read(offset, length): host bytes, zeros and slices of inflated clusters."""
        parts: list[bytes | memoryview] = []
        for pos, stop, i, span in self._walk(offset, min(offset + length, self.virtual_size)):
            if i < 0:
                parts.append(zeros(stop - pos))
            elif self._kind[i] == DATA:
                parts.append(self._host_bytes(self._host[i] + pos - self._start[i], stop - pos))
            else:
                seg_start = self._start[i]
                parts.append(memoryview(self._cluster(i, span))[pos - seg_start : stop - seg_start])
        return parts

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Host runs are read straight into `buf` (one preadv each), inflated clusters copied."""
        end = min(offset + len(buf), self.virtual_size)
        for pos, stop, i, span in self._walk(offset, end):
            a, b = pos - offset, stop - offset
            if i < 0:
                buf[a:b] = zeros(b - a)
            elif self._kind[i] == DATA:
                got = self.host_readinto(buf[a:b], self._host[i] + pos - self._start[i])
                if got < b - a:  # the last cluster may end past EOF; qemu reads that as zeros
                    buf[a + got : b] = zeros(b - a - got)
            else:
                seg_start = self._start[i]
                buf[a:b] = memoryview(self._cluster(i, span))[pos - seg_start : stop - seg_start]
        return max(end - offset, 0)

    def _host_bytes(self, host: int, length: int) -> bytes:
        data = self.host_read(host, length)
        if len(data) < length:  # the last cluster may end past EOF; qemu reads that as zeros
            data += bytes(length - len(data))
        return data

    def blocks(self, block_size: int, *, skip_zero: bool = True) -> Iterator[tuple[int, bytes]]:
        """Compressed clusters are inflated by a small thread pool, a bounded number of units ahead.

        Without compressed clusters, plain preads in the caller's thread are faster: blocks
        allocated in worker threads come from glibc per-thread arenas, which give their pages back
        to the kernel and fault them in again (measured: 3x the system time)."""
        if not self.compressed_clusters:
            yield from super().blocks(block_size, skip_zero=skip_zero)
            return
        per_unit = max(1, -(-max(self.cluster_size, 2 << 20) // block_size))
        units: list[tuple[int, int]] = []
        for index in self.allocation.blocks(block_size):
            unit = index // per_unit
            if units and units[-1][0] // per_unit == unit and units[-1][0] + units[-1][1] == index:
                units[-1] = (units[-1][0], units[-1][1] + 1)
            else:
                units.append((index, 1))
        workers = min(4, len(os.sched_getaffinity(0)))
        pending: deque[Future[list[tuple[int, list[bytes | memoryview]]]]] = deque()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qcow2")
        try:
            for first, n in units:
                pending.append(pool.submit(self._unit, first, n, block_size))
                while len(pending) >= 2 * workers or (pending and first == units[-1][0]):
                    for index, parts in pending.popleft().result():
                        data = _joined(parts)  # in this thread: its arena reuses the memory
                        if data and not (skip_zero and is_zero(data)):
                            yield index, data
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def _unit(self, first: int, n: int, block_size: int) -> list[tuple[int, list[bytes | memoryview]]]:
        """The pieces of blocks first..first+n-1; the thread-local cluster cache means a compressed
        cluster spanning several blocks is inflated once."""
        return [(index, self._parts(index * block_size, block_size)) for index in range(first, first + n)]

    def info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cluster_size": self.cluster_size,
            "compression": "deflate" if self.compression == DEFLATE else "zstd",
            "compressed_clusters": self.compressed_clusters,
            "extended_l2": self.extended_l2,
            "snapshots": self.nb_snapshots,
            "dirty": self.dirty,
        }


def _joined(parts: list[bytes | memoryview]) -> bytes:
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(parts)
