"""The qcow2 host mapping: L1/L2 tables parsed in bulk into sorted guest segments.

Each segment is a DATA run (guest bytes stored contiguously on the host) or one compressed
cluster; zero-flag and unallocated clusters are holes and get no segment.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

from imgpub.disk.zeros import is_zero

if TYPE_CHECKING:
    from imgpub.disk.qcow2 import Qcow2Image

OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
COMPRESSED = 1 << 62
ZERO_FLAG = 1
SUBCLUSTERS = 32
DATA, DEFLATE, ZSTD = 0, 1, 2  # segment kinds


def _table(raw: bytes) -> array[int]:
    """A big-endian u64 table as native integers, in one C pass."""
    table = array("Q", raw)
    if sys.byteorder == "little":
        table.byteswap()
    return table


class HostMap:
    """Segment i covers guest [start[i], start[i] + length[i]); DATA reads host[i]..., compressed
    segments inflate csize[i] bytes at host[i]. Memory is bounded by the file's own size."""

    def __init__(self, image: Qcow2Image) -> None:
        self.img = image
        self.cluster_size, self.virtual_size, self.file_size = (
            image.cluster_size,
            image.virtual_size,
            image.file_size,
        )
        self.start = array("Q")
        self.length = array("Q")
        self.host = array("Q")
        self.csize = array("Q")
        self.kind = array("B")
        self._max_segments = self.file_size // 32 + 1024
        self._walk_tables()
        self._drop_host_holes()
        del self.img  # no reference cycle with the image

    def _walk_tables(self) -> None:
        cs = self.cluster_size
        l1_raw = self.img.pread(self.img.l1_offset, self.img.l1_used * 8, "L1 table")
        l1 = _table(l1_raw)
        seen: set[int] = set()
        run: list[int] = [0, 0, 0]  # guest start, length, host start of the DATA run being built
        for i in self._nonzero(l1, l1_raw):
            l2_off = l1[i] & OFFSET_MASK
            at = self.img.l1_offset + 8 * i
            if not l2_off:
                continue
            if l2_off % cs or l2_off < cs:
                raise self.img.bad(
                    "L1 entry", at, f"L2 table offset {l2_off:#x} is not cluster aligned past the header"
                )
            if l2_off in seen:
                raise self.img.bad("L1 entry", at, f"L2 table {l2_off:#x} is referenced twice")
            seen.add(l2_off)
            l2_raw = self.img.pread(l2_off, cs, "L2 table")
            l2 = _table(l2_raw)
            base = i * self.img.l2_entries * cs
            if self.img.extended_l2:
                self._walk_extended(l2, l2_raw, l2_off, base, run)
            else:
                self._walk_standard(l2, l2_raw, l2_off, base, run)
        self._flush(run)

    @staticmethod
    def _chunks(raw: bytes, count: int) -> Iterator[tuple[int, int]]:
        """(first, stop) of each stretch of 512 entries that is not all zero (memcmp speed)."""
        for chunk in range(0, count, 512):
            stop = min(chunk + 512, count)
            if not is_zero(raw, chunk * 8, stop * 8):
                yield chunk, stop

    def _nonzero(self, table: array[int], raw: bytes) -> Iterator[int]:
        """Indexes of the non-zero entries of a table."""
        for chunk, stop in self._chunks(raw, len(table)):
            for i in range(chunk, stop):
                if table[i]:
                    yield i

    def _check_host(self, host: int, what: str, at: int) -> None:
        if host % self.cluster_size or host < self.cluster_size or host >= self.file_size:
            raise self.img.bad(
                "L2 entry",
                at,
                f"{what} offset {host:#x} is not a cluster-aligned offset inside the file "
                f"(which ends at byte {self.file_size:#x})",
            )

    def _walk_standard(self, l2: array[int], l2_raw: bytes, l2_off: int, base: int, run: list[int]) -> None:
        cs, vs, file_size = self.cluster_size, self.virtual_size, self.file_size
        for chunk, stop in self._chunks(l2_raw, len(l2)):
            if base + (stop - 1) * cs < vs and self._contiguous(l2, chunk, stop):
                guest, host, n = base + chunk * cs, l2[chunk] & OFFSET_MASK, (stop - chunk) * cs
                if not (guest == run[0] + run[1] and host == run[2] + run[1]):
                    self._check_host(host, "data cluster", l2_off + 8 * chunk)
                    self._flush(run)
                    run[:] = [guest, 0, host]
                self._check_host(host + n - cs, "data cluster", l2_off + 8 * (stop - 1))
                run[1] += n
                continue
            for j in range(chunk, stop):
                e = l2[j]
                if not e:
                    continue
                guest = base + j * cs
                if guest >= vs:
                    return
                if e & COMPRESSED:
                    self._add_compressed(e, guest, l2_off + 8 * j, run)
                elif e & ZERO_FLAG:
                    continue
                elif host := e & OFFSET_MASK:
                    if guest == run[0] + run[1] and host == run[2] + run[1] and host < file_size:
                        run[1] += cs
                        continue
                    self._check_host(host, "data cluster", l2_off + 8 * j)
                    self._flush(run)
                    run[:] = [guest, cs, host]

    def _contiguous(self, table: array[int], chunk: int, stop: int) -> bool:
        """True if entries chunk..stop-1 map consecutive host clusters (what `qemu-img convert`
        writes): checked by one C-level comparison instead of a Python step per entry."""
        e0, cs = table[chunk], self.cluster_size
        end = e0 + (stop - chunk) * cs
        return (
            stop - chunk > 2
            and bool(e0 & OFFSET_MASK)
            and not e0 & (COMPRESSED | ZERO_FLAG)
            and end < 1 << 64
            and table[chunk:stop] == array("Q", range(e0, end, cs))
        )

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
                raise self.img.bad(
                    "L2 entry", at, f"subclusters {alloc & zero:#x} are both allocated and zero"
                )
            host = e & OFFSET_MASK
            alloc &= ~zero
            if not host:
                if alloc:
                    raise self.img.bad("L2 entry", at + 8, "allocated subclusters in an unallocated cluster")
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
        host_runs = self.img.host_runs()
        if host_runs == [(0, self.file_size)] or DATA not in self.kind:
            return
        run_starts = [a for a, _ in host_runs]
        old = list(zip(self.start, self.length, self.kind, self.host, self.csize, strict=True))
        for arr in (self.start, self.length, self.kind, self.host, self.csize):
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
        shift = 62 - (self.img.cluster_bits - 8)
        coffset = e & ((1 << shift) - 1)
        nsect = ((e >> shift) & ((1 << (self.img.cluster_bits - 8)) - 1)) + 1
        if coffset < self.cluster_size or coffset >= self.file_size:
            raise self.img.bad("L2 entry", at, f"compressed cluster offset {coffset:#x} is outside the file")
        csize = min(nsect * 512 - (coffset & 511), self.file_size - coffset)
        self._flush(run)
        run[:] = [0, 0, 0]
        self._append(
            guest, min(self.cluster_size, self.virtual_size - guest), self.img.compression, coffset, csize
        )

    def _flush(self, run: list[int]) -> None:
        if run[1]:
            self._append(run[0], min(run[1], self.virtual_size - run[0]), DATA, run[2], 0)
            run[:] = [0, 0, 0]

    def _append(self, start: int, length: int, kind: int, host: int, csize: int) -> None:
        if len(self.start) >= self._max_segments:  # only a crafted file maps clusters this densely
            raise self.img.bad(
                "L2 table", None, f"maps more than {self._max_segments} separate clusters, more than a "
                f"{self.file_size}-byte file can hold",
            )  # fmt: skip
        self.start.append(start)
        self.length.append(length)
        self.kind.append(kind)
        self.host.append(host)
        self.csize.append(csize)
