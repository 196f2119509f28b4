"""The GCE image tarball: `disk.raw` as a GNU oldgnu sparse member, gzip'd on every core.

GCE wants a gzip'd tar whose only member is `disk.raw`, a whole number of GiB, in GNU's "oldgnu"
format (PAX sparse is refused as INVALID_IMAGE_TAR). An oldgnu sparse member starts with its full
sparse map (4 entries in the header, 21 in each extension block), so the map is computed first.

The map is the allocation map, widened to 512-byte sectors. A first pass that zero-checks the
data at 64 KiB, so that allocated zeros become holes, was measured (isal level 1, 2 cores):

* 8 GiB sparse raw, 1 GiB data (SEEK_DATA map): with the pass 2.5 CPU-s, without 2.2; same
  output (758.7 / 758.8 MiB). The SEEK_DATA map is already tight: the pass is pure cost.
* 1 GiB raw written in full, 128 MiB data + 896 MiB zeros: 0.27 CPU-s either way, same output
  (isal deflates zeros at ~4.5 GiB/s to ~1 KiB per MiB), but the member stores 128 MiB instead of
  1 GiB, so GCE unpacks holes instead of zeros.
* A compressed source (qcow2 -c, VMDK streamOptimized, xz/zstd) would decode twice: +1-1.5 s/GiB.

So the pass runs only for sources that are cheap to read (the file holds at least 90% of the
allocated bytes) and mostly allocated (at least half the virtual size), where it is free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from imgpub.disk.deflate import gzip_chunks
from imgpub.disk.image import DiskImage
from imgpub.disk.write_raw import BLOCK, DataMeter, ProgressFn, data_ranges, replace_atomically
from imgpub.disk.zeros import zeros

__all__ = [
    "MEMBER_NAME",
    "gce_disk_size",
    "gce_tar_stream",
    "sparse_map",
    "tar_header",
    "tar_stream",
    "write_gce_tar",
]

GiB = 1 << 30
SECTOR = 512
RECORD = 10240
"""GNU tar's default record (20 blocks): the archive is padded to a multiple of it."""
MEMBER_NAME = "disk.raw"
IN_HEADER = 4
PER_EXTENSION = 21
CHEAP_READ = 0.9
"""A source whose file holds at least this share of its allocated bytes is not compressed."""
DENSE = 0.5
"""A source allocated over at least this share of its virtual size gets the zero-check pass."""


def gce_disk_size(virtual_size: int) -> int:
    """Size of `disk.raw`: the virtual size rounded up to a whole GiB (GCE's rule)."""
    return -(-virtual_size // GiB) * GiB


def _number(value: int, width: int) -> bytes:
    """A tar numeric field: octal digits + NUL, or GNU base-256 (0x80, big-endian) when too big."""
    if value < 0:
        raise ValueError(f"negative tar field value {value}")
    if value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    if value >= 256 ** (width - 1):
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return b"\x80" + value.to_bytes(width - 1, "big")


def _entries(entries: list[tuple[int, int]], slots: int) -> bytes:
    out = b"".join(_number(off, 12) + _number(n, 12) for off, n in entries)
    return out + bytes(24 * (slots - len(entries)))


def tar_header(realsize: int, regions: list[tuple[int, int]], *, mtime: int = 0) -> bytes:
    """The oldgnu sparse header of `disk.raw` plus its extension blocks (a multiple of 512 bytes).

    `regions` are the (offset, length) data regions, ascending, 512-aligned. The map always ends
    with a {realsize, 0} entry, as GNU tar 1.34 writes it (even when the file ends in data), so
    that extraction restores the full size.
    """
    entries = [*regions, (realsize, 0)]
    stored = sum(n for _, n in regions)
    head = bytearray(512)
    head[0:100] = MEMBER_NAME.encode().ljust(100, b"\0")
    head[100:108] = b"0000644\0"
    head[108:116] = b"0000000\0"
    head[116:124] = b"0000000\0"
    head[124:136] = _number(stored, 12)
    head[136:148] = _number(mtime, 12)
    head[156:157] = b"S"
    head[257:265] = b"ustar  \0"
    head[265:297] = b"root".ljust(32, b"\0")
    head[297:329] = b"root".ljust(32, b"\0")
    head[386:482] = _entries(entries[:IN_HEADER], IN_HEADER)
    rest = entries[IN_HEADER:]
    head[482] = 1 if rest else 0
    head[483:495] = _number(realsize, 12)
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    blocks = [bytes(head)]
    for i in range(0, len(rest), PER_EXTENSION):
        chunk = rest[i : i + PER_EXTENSION]
        more = i + PER_EXTENSION < len(rest)
        blocks.append(_entries(chunk, PER_EXTENSION) + (b"\1" if more else b"\0") + bytes(7))
    return b"".join(blocks)


def _align(runs: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Runs widened to 512-byte boundaries (within `limit`) and merged where they then touch."""
    out: list[list[int]] = []
    for off, n in runs:
        a = off - off % SECTOR
        b = min(-(-(off + n) // SECTOR) * SECTOR, limit)
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        elif b > a:
            out.append([a, b])
    return [(a, b - a) for a, b in out]


def _worth_refining(img: DiskImage) -> bool:
    data = img.allocation.data_bytes
    return img.file_size >= CHEAP_READ * data and data >= DENSE * img.virtual_size


def sparse_map(img: DiskImage, *, refine: bool | None = None) -> list[tuple[int, int]]:
    """The data regions stored in the tar: 512-aligned (offset, length), ascending.

    `refine` zero-checks the data first (a read pass); None decides as the module docstring says.
    """
    if refine is None:
        refine = _worth_refining(img)
    limit = gce_disk_size(img.virtual_size)
    if not refine:
        return _align(list(img.allocation.data_runs), limit)
    nonzero = [(off, sum(p.nbytes for p in pieces)) for off, pieces in data_ranges(img)]
    return _align(_intersect(nonzero, img.allocation.data_runs), limit)  # merges touching ranges


def _intersect(
    left: list[tuple[int, int]], right: tuple[tuple[int, int], ...] | list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Ranges in both sorted, non-overlapping (offset, length) lists."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(left) and j < len(right):
        a = max(left[i][0], right[j][0])
        b = min(left[i][0] + left[i][1], right[j][0] + right[j][1])
        if b > a:
            out.append((a, b - a))
        if left[i][0] + left[i][1] < right[j][0] + right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _region_pieces(
    img: DiskImage, regions: list[tuple[int, int]], meter: DataMeter, skip_zero: bool
) -> Iterator[bytes | memoryview]:
    """The guest bytes of `regions` in order, as views of the blocks the reader yields."""
    blocks = img.blocks(BLOCK, skip_zero=skip_zero)
    head = next(blocks, None)
    for off, length in regions:
        pos, end = off, off + length
        while pos < end:
            index = pos // BLOCK
            while head is not None and head[0] < index:
                head = next(blocks, None)
            data = head[1] if head is not None and head[0] == index else b""
            base = index * BLOCK
            stop = min(end, base + BLOCK)
            a, b = pos - base, stop - base
            have = min(b, len(data)) - a
            if have > 0:
                yield memoryview(data)[a : a + have]
            if have < b - a:  # a block the reader skipped as zero, or past the virtual size
                yield zeros(b - a - max(have, 0))
            meter.upto(stop)
            pos = stop
    meter.finish()


def tar_stream(
    img: DiskImage,
    *,
    regions: list[tuple[int, int]] | None = None,
    on_progress: ProgressFn | None = None,
    mtime: int = 0,
) -> Iterator[bytes | memoryview]:
    """The uncompressed oldgnu tar holding `disk.raw`, as pieces (views stay valid until used)."""
    refine = regions is None and _worth_refining(img)
    if regions is None:
        regions = sparse_map(img, refine=refine)
    realsize = gce_disk_size(img.virtual_size)
    header = tar_header(realsize, regions, mtime=mtime)
    yield header
    yield from _region_pieces(img, regions, DataMeter(img.allocation, on_progress), skip_zero=refine)
    size = len(header) + sum(n for _, n in regions) + 2 * SECTOR
    yield bytes(2 * SECTOR + (-size) % RECORD)


def gce_tar_stream(
    img: DiskImage, *, level: int = 1, threads: int | None = None, on_progress: ProgressFn | None = None
) -> Iterator[bytes]:
    """The gzip'd oldgnu sparse tar of `disk.raw` (padded to a whole GiB), as compressed chunks.

    One gzip member, compressed by `threads` workers (default: every core) at `level` (1 is
    isal's fastest useful level: ~3% larger than gzip -6). Memory stays a few MiB per thread.
    """
    yield from gzip_chunks(
        # mtime from the source file, not the clock: the same input gives the same bytes, which a
        # resumed upload relies on when it regenerates the stream and skips what the cloud holds.
        tar_stream(img, on_progress=on_progress, mtime=int(os.fstat(img.fd).st_mtime)),
        level=level,
        threads=threads,
    )


def write_gce_tar(
    img: DiskImage,
    dest: Path,
    *,
    level: int = 1,
    threads: int | None = None,
    on_progress: ProgressFn | None = None,
) -> None:
    """Write the GCE tarball of `img` to `dest` (temp file + rename)."""
    with replace_atomically(dest) as fd:
        for chunk in gce_tar_stream(img, level=level, threads=threads, on_progress=on_progress):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fchmod(fd, 0o644)
