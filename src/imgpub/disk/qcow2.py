"""qcow2 v2/v3 images: bulk-parsed L1/L2 tables, positioned reads of host runs, parallel inflate.

Only the active L1 table is read (snapshots are ignored), refcounts are never loaded. Images that
depend on anything outside the file (backing file, external data file, encryption key) are
refused with the `qemu-img convert` command that flattens them.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage
from imgpub.disk.inflate import InflateError, inflate_raw, zstd_decompress
from imgpub.disk.raw import sparse_runs
from imgpub.disk.zeros import is_zero, zeros

MAX_VIRTUAL_SIZE = 64 << 40  # the largest EBS volume; qemu's own limit is far above any real disk
MAX_L1_ENTRIES = 4 << 20  # qemu's QCOW_MAX_L1_SIZE (32 MiB of entries)
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
COMPRESSED = 1 << 62
ZERO_FLAG = 1
SUBCLUSTERS = 32

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

# Segment kinds in the host mapping; holes (zero flag, unallocated) have no segment.
DATA, DEFLATE, ZSTD = 0, 1, 2


def _table(raw: bytes) -> array[int]:
    """A big-endian u64 table as native integers, in one C pass."""
    table = array("Q", raw)
    if sys.byteorder == "little":
        table.byteswap()
    return table


class Qcow2Image(DiskImage):
    format = "qcow2"

    def __init__(self, path: Path, fd: int) -> None:
        super().__init__(path, fd)
        self._parse_header()
        # Host mapping, sorted by guest offset: segment i covers guest [start[i], start[i]+length[i]).
        # DATA: host bytes at host[i]. DEFLATE/ZSTD: one compressed cluster of host[i], csize[i] bytes.
        self._start = array("Q")
        self._length = array("Q")
        self._host = array("Q")
        self._csize = array("Q")
        self._kind = array("B")
        self._local = threading.local()  # per thread: the last inflated cluster, as (host, data)
        self._max_segments = self.file_size // 32 + 1024  # bounds memory by the file's own size
        self._walk_tables()
        self._drop_host_holes()
        self.allocation = AllocationMap.from_runs(
            self.virtual_size, zip(self._start, self._length, strict=True)
        )
        self.compressed_clusters = sum(1 for k in self._kind if k != DATA)

    # -- metadata -------------------------------------------------------------------------------

    def _bad(self, structure: str, offset: int | None, what: str) -> ImageFormatError:
        return ImageFormatError(self.path, "qcow2", structure, offset, what)

    def _refuse(self, feature: str, todo: str = FLATTEN) -> UnsupportedImageError:
        what = f"{feature} is not supported; {todo.format(path=self.path)}"
        return UnsupportedImageError(self.path, "qcow2", "header", None, what)

    def _parse_header(self) -> None:
        head = self.pread(0, _HEADER.size, "header")
        (magic, version, backing_off, _backing_len, cluster_bits, size, crypt, l1_size, l1_off,
         _rt_off, _rt_clusters, nb_snapshots, _snap_off) = _HEADER.unpack(head)  # fmt: skip
        if magic != b"QFI\xfb":
            raise self._bad("header", 0, f"bad magic {magic.hex()}")
        if version not in (2, 3):
            raise self._bad("header", 4, f"version {version} is not 2 or 3")
        if not 9 <= cluster_bits <= 21:
            raise self._bad("header", 20, f"cluster_bits {cluster_bits} is outside 9..21")
        self.version, self.cluster_bits, self.cluster_size = version, cluster_bits, 1 << cluster_bits
        self.nb_snapshots = nb_snapshots
        incompat, header_length, compression_type = 0, 72, 0
        if version == 3:
            incompat, _compat, _autoclear, _order, header_length = _V3.unpack(
                self.pread(72, _V3.size, "header")
            )
            if header_length < 104 or header_length % 8 or header_length > self.cluster_size:
                raise self._bad("header", 100, f"header_length {header_length} is invalid")
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
            raise self._bad("header", 104, f"unknown compression_type {compression_type}")
        if bool(compression_type) != bool(incompat & INCOMPAT_COMPRESSION):
            raise self._bad("header", 72, "compression_type and the compression-type feature bit disagree")
        self.compression = DEFLATE if compression_type == 0 else ZSTD
        self.extended_l2 = bool(incompat & INCOMPAT_EXTL2)
        if self.extended_l2 and cluster_bits < 14:
            raise self._bad("header", 20, "extended L2 entries need clusters of at least 16 KiB")
        self.dirty = bool(incompat & INCOMPAT_DIRTY)
        self._parse_extensions(header_length)
        if size > MAX_VIRTUAL_SIZE:
            raise self._bad("header", 24, f"virtual size {size} is larger than {MAX_VIRTUAL_SIZE} (64 TiB)")
        self.virtual_size = size
        self.l2_entries = self.cluster_size // (16 if self.extended_l2 else 8)
        per_l1 = self.cluster_size * self.l2_entries
        needed = -(-size // per_l1)
        if l1_size > MAX_L1_ENTRIES:
            raise self._bad("header", 36, f"l1_size {l1_size} is larger than qemu's limit {MAX_L1_ENTRIES}")
        if l1_size < needed:
            raise self._bad(
                "header", 36, f"l1_size {l1_size} is too small for the virtual size ({needed} needed)"
            )
        if needed and (l1_off % self.cluster_size or l1_off < self.cluster_size):
            raise self._bad(
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
                raise self._bad(
                    "header extension", pos, f"extension {ext_type:#x} runs past the first cluster"
                )

    def _walk_tables(self) -> None:
        cs = self.cluster_size
        l1_raw = self.pread(self.l1_offset, self.l1_used * 8, "L1 table")
        l1 = _table(l1_raw)
        seen: set[int] = set()
        run: list[int] = [0, 0, 0]  # guest start, length, host start of the DATA run being built
        for i in self._nonzero(l1, l1_raw):
            l2_off = l1[i] & OFFSET_MASK
            at = self.l1_offset + 8 * i
            if not l2_off:
                continue
            if l2_off % cs or l2_off < cs:
                raise self._bad(
                    "L1 entry", at, f"L2 table offset {l2_off:#x} is not cluster aligned past the header"
                )
            if l2_off in seen:
                raise self._bad("L1 entry", at, f"L2 table {l2_off:#x} is referenced twice")
            seen.add(l2_off)
            l2_raw = self.pread(l2_off, cs, "L2 table")
            l2 = _table(l2_raw)
            base = i * self.l2_entries * cs
            if self.extended_l2:
                self._walk_extended(l2, l2_raw, l2_off, base, run)
            else:
                self._walk_standard(l2, l2_raw, l2_off, base, run)
        self._flush(run)

    @staticmethod
    def _nonzero(table: array[int], raw: bytes) -> Iterator[int]:
        """Indexes of non-zero entries, skipping all-zero stretches of 512 entries at memcmp speed."""
        count = len(table)
        for chunk in range(0, count, 512):
            stop = min(chunk + 512, count)
            if is_zero(raw, chunk * 8, stop * 8):
                continue
            for i in range(chunk, stop):
                if table[i]:
                    yield i

    def _check_host(self, host: int, what: str, at: int) -> None:
        if host % self.cluster_size or host < self.cluster_size or host >= self.file_size:
            raise self._bad(
                "L2 entry",
                at,
                f"{what} offset {host:#x} is not a cluster-aligned offset inside the file "
                f"(which ends at byte {self.file_size:#x})",
            )

    def _walk_standard(self, l2: array[int], l2_raw: bytes, l2_off: int, base: int, run: list[int]) -> None:
        cs, vs = self.cluster_size, self.virtual_size
        for j in self._nonzero(l2, l2_raw):
            e = l2[j]
            guest = base + j * cs
            if guest >= vs:
                break
            if e & COMPRESSED:
                self._add_compressed(e, guest, l2_off + 8 * j, run)
            elif e & ZERO_FLAG:
                continue
            elif host := e & OFFSET_MASK:
                if guest == run[0] + run[1] and host == run[2] + run[1] and host < self.file_size:
                    run[1] += cs
                    continue
                self._check_host(host, "data cluster", l2_off + 8 * j)
                self._flush(run)
                run[:] = [guest, cs, host]

    def _walk_extended(self, l2: array[int], l2_raw: bytes, l2_off: int, base: int, run: list[int]) -> None:
        cs, vs = self.cluster_size, self.virtual_size
        sub = cs // SUBCLUSTERS
        for j2 in self._nonzero(l2, l2_raw):
            if j2 % 2:
                if l2[j2 - 1]:
                    continue  # handled with its first half
                j2 -= 1
            j = j2 // 2
            e, bitmap = l2[j2], l2[j2 + 1]
            guest = base + j * cs
            at = l2_off + 16 * j
            if guest >= vs:
                break
            if e & COMPRESSED:
                self._add_compressed(e, guest, at, run)
                continue
            alloc, zero = bitmap & 0xFFFF_FFFF, bitmap >> 32
            if alloc & zero:
                raise self._bad("L2 entry", at, f"subclusters {alloc & zero:#x} are both allocated and zero")
            host = e & OFFSET_MASK
            alloc &= ~zero
            if not host:
                if alloc:
                    raise self._bad("L2 entry", at + 8, "allocated subclusters in an unallocated cluster")
                continue
            self._check_host(host, "data cluster", at)
            for k in range(SUBCLUSTERS) if alloc != 0xFFFF_FFFF else (0,):
                if alloc != 0xFFFF_FFFF and not alloc >> k & 1:
                    continue
                g, h, n = guest + k * sub, host + k * sub, cs if alloc == 0xFFFF_FFFF else sub
                if g == run[0] + run[1] and h == run[2] + run[1]:
                    run[1] += n
                else:
                    self._flush(run)
                    run[:] = [g, n, h]

    def _drop_host_holes(self) -> None:
        """Cut the holes of the host file out of DATA segments (preallocation=metadata leaves
        clusters mapped but never written): they read as zeros, as `qemu-img map` reports."""
        host_runs = sparse_runs(self.fd, self.file_size)
        if host_runs == [(0, self.file_size)] or DATA not in self._kind:
            return
        run_starts = [a for a, _ in host_runs]
        old = list(zip(self._start, self._length, self._kind, self._host, self._csize, strict=True))
        for arr in (self._start, self._length, self._kind, self._host, self._csize):
            del arr[:]
        for start, length, kind, host, csize in old:
            if kind != DATA:
                self._append(start, length, kind, host, csize)
                continue
            k = max(bisect_right(run_starts, host) - 1, 0)
            while k < len(host_runs) and host_runs[k][0] < host + length:
                lo, hi = max(host, host_runs[k][0]), min(host + length, sum(host_runs[k]))
                if lo < hi:
                    self._append(start + lo - host, hi - lo, DATA, lo, 0)
                k += 1

    def _add_compressed(self, e: int, guest: int, at: int, run: list[int]) -> None:
        shift = 62 - (self.cluster_bits - 8)
        coffset = e & ((1 << shift) - 1)
        nsect = ((e >> shift) & ((1 << (self.cluster_bits - 8)) - 1)) + 1
        if coffset < self.cluster_size or coffset >= self.file_size:
            raise self._bad("L2 entry", at, f"compressed cluster offset {coffset:#x} is outside the file")
        csize = min(nsect * 512 - (coffset & 511), self.file_size - coffset)
        self._flush(run)
        run[:] = [0, 0, 0]
        self._append(
            guest, min(self.cluster_size, self.virtual_size - guest), self.compression, coffset, csize
        )

    def _flush(self, run: list[int]) -> None:
        if run[1]:
            self._append(run[0], min(run[1], self.virtual_size - run[0]), DATA, run[2], 0)
            run[:] = [0, 0, 0]

    def _append(self, start: int, length: int, kind: int, host: int, csize: int) -> None:
        if len(self._start) >= self._max_segments:  # only a crafted file maps clusters this densely
            raise self._bad(
                "L2 table", None, f"maps more than {self._max_segments} separate clusters, more than a "
                f"{self.file_size}-byte file can hold",
            )  # fmt: skip
        self._start.append(start)
        self._length.append(length)
        self._kind.append(kind)
        self._host.append(host)
        self._csize.append(csize)

    # -- data -----------------------------------------------------------------------------------

    def _compressed_span(self, first: int, stop: int) -> tuple[int, bytes]:
        """One pread of the compressed bytes of segments first..stop-1 (qemu stores them in order),
        as (host offset, bytes); (0, b"") when they are too scattered for one read."""
        hosts = [(self._host[i], self._csize[i]) for i in range(first, stop) if self._kind[i] != DATA]
        if len(hosts) < 2:
            return 0, b""
        lo = min(h for h, _ in hosts)
        hi = max(h + n for h, n in hosts)
        if hi - lo > 2 * sum(n for _, n in hosts) + self.cluster_size:
            return 0, b""
        return lo, os.pread(self.fd, hi - lo, lo)

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
            raw = os.pread(self.fd, csize, host)
        try:
            if self._kind[i] == DEFLATE:
                data = inflate_raw(raw, self.cluster_size, -12)
            else:
                data = zstd_decompress(raw, self.cluster_size)
        except InflateError as exc:
            raise self._bad("compressed cluster", host, f"{exc} (guest offset {self._start[i]:#x})") from None
        self._local.cluster = (host, data)
        return data

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.virtual_size)
        if end <= offset:
            return b""
        parts: list[bytes | memoryview] = []
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
                parts.append(zeros(seg_start - pos))
                pos = seg_start
            stop = min(seg_end, end)
            if self._kind[i] == DATA:
                parts.append(self._host_bytes(self._host[i] + pos - seg_start, stop - pos))
            else:
                parts.append(memoryview(self._cluster(i, span))[pos - seg_start : stop - seg_start])
            pos = stop
            i += 1
        if pos < end:
            parts.append(zeros(end - pos))
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _host_bytes(self, host: int, length: int) -> bytes:
        data = os.pread(self.fd, length, host)
        if len(data) < length:  # the last cluster may end past EOF; qemu reads that as zeros
            data += bytes(length - len(data))
        return data

    def blocks(self, block_size: int, *, skip_zero: bool = True) -> Iterator[tuple[int, bytes]]:
        """Blocks read (and inflated) by a small thread pool, a bounded number of units ahead."""
        per_unit = max(1, -(-max(self.cluster_size, 2 << 20) // block_size))
        units: list[tuple[int, int]] = []
        for index in self.allocation.blocks(block_size):
            unit = index // per_unit
            if units and units[-1][0] // per_unit == unit and units[-1][0] + units[-1][1] == index:
                units[-1] = (units[-1][0], units[-1][1] + 1)
            else:
                units.append((index, 1))
        workers = min(4, len(os.sched_getaffinity(0)))
        pending: deque[Future[list[tuple[int, bytes]]]] = deque()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qcow2")
        try:
            todo = iter(units)
            for first, n in todo:
                pending.append(pool.submit(self._unit, first, n, block_size, skip_zero))
                if len(pending) >= 2 * workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def _unit(self, first: int, n: int, block_size: int, skip_zero: bool) -> list[tuple[int, bytes]]:
        """Blocks first..first+n-1, each read on its own (no slicing copies); the thread-local
        cluster cache means a compressed cluster spanning several blocks is inflated once."""
        out: list[tuple[int, bytes]] = []
        for index in range(first, first + n):
            data = self.read(index * block_size, block_size)
            if data and not (skip_zero and is_zero(data)):
                out.append((index, data))
        return out

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
