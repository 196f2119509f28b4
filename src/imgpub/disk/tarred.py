"""Raw disks shipped in a tar, as distributions publish them for GCE (`disk.raw` in a .tar, .tar.gz,
.tar.zst or .tar.xz; sparse members included): the disk is read where its data lies in the archive.

A tar must hold exactly one file, the disk; anything else is refused with the list of what is inside.
Compressed tars reach here through compressed.py, which decompresses them into a sparse temp file.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, human
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage, Window
from imgpub.disk.sniff import HEAD, judge
from imgpub.disk.tar import Member, read_members
from imgpub.disk.zeros import zeros

SECTOR = 512
SHOWN = 8  # members listed in a refusal
DISK_NAME = "disk.raw"  # GCE's name for the disk in the tar: raw by contract, partition table or not


class TarDiskImage(DiskImage):
    """The data of one tar member as a raw disk: its regions (one for a plain member, several for a
    sparse one) map guest ranges to archive ranges; the rest reads as zeros."""

    format = "tar"

    def __init__(self, path: Path, fd: int, member: Member, *, window: Window | None = None) -> None:
        super().__init__(path, fd, window=window)
        self.member = member
        self.virtual_size = member.size
        self._guest = [g for g, _, _ in member.regions]
        self.allocation = AllocationMap.from_runs(member.size, self._data_runs())

    def _data_runs(self) -> list[tuple[int, int]]:
        """Each region, less the holes of the archive file (a decompressed tar keeps its zeros as holes)."""
        host = self.host_runs()
        if host == [(0, self.file_size)]:
            return [(g, n) for g, n, _ in self.member.regions]
        starts = [a for a, _ in host]
        out = []
        for guest, length, at in self.member.regions:
            k = max(bisect_right(starts, at) - 1, 0)
            while k < len(host) and host[k][0] < at + length:
                lo, hi = max(at, host[k][0]), min(at + length, sum(host[k]))
                if lo < hi:
                    out.append((guest + lo - at, hi - lo))
                k += 1
        return out

    def readinto(self, offset: int, buf: memoryview) -> int:
        end = min(offset + len(buf), self.virtual_size)
        regions = self.member.regions
        k = max(bisect_right(self._guest, offset) - 1, 0)
        pos = offset
        while pos < end:
            if k < len(regions) and regions[k][0] + regions[k][1] <= pos:
                k += 1
                continue
            if k >= len(regions) or regions[k][0] > pos:  # a hole up to the next region
                stop = min(end, regions[k][0]) if k < len(regions) else end
                buf[pos - offset : stop - offset] = zeros(stop - pos)
            else:
                guest, length, at = regions[k]
                stop = min(end, guest + length)
                view = buf[pos - offset : stop - offset]
                got = self.host_readinto(view, at + pos - guest)
                if got != len(view):
                    raise ImageFormatError(
                        self.path, self.format, "member data", at, "short read (truncated?)"
                    )
            pos = stop
        return max(end - offset, 0)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(max(0, min(length, self.virtual_size - offset)))
        self.readinto(offset, memoryview(out))
        return bytes(out)

    def info(self) -> dict[str, Any]:
        return {"member": self.member.name, "sparse_member": self.member.sparse}


def listing(members: list[Member]) -> str:
    def one(m: Member) -> str:
        if m.kind == "file":
            return f"{m.name} ({human(m.size)})"
        return f"{m.name} -> {m.target} ({m.kind})" if m.target else f"{m.name} ({m.kind})"

    shown = ", ".join(one(m) for m in members[:SHOWN])
    return shown + (f" and {len(members) - SHOWN} more" if len(members) > SHOWN else "")


def head_of(image: DiskImage) -> bytes:
    return image.read(0, min(HEAD, image.virtual_size))


def open_tar(path: Path, fd: int, *, forced: bool = False) -> DiskImage:
    """The single disk in the tar open as `fd`. Any other layout is refused with its contents.

    `forced` (format: raw or tar given) accepts a member without a partition table."""
    members = read_members(path, lambda o, n: os.pread(fd, n, o), os.fstat(fd).st_size)
    entries = [m for m in members if m.kind != "dir"]
    files = [m for m in entries if m.kind == "file"]
    if len(files) != 1 or len(entries) != 1:
        what = f"holds {len(entries)} entries" if entries else "holds no file"
        raise ImageFormatError(
            path,
            "tar",
            "archive",
            None,
            f"{what}{': ' + listing(entries) if entries else ''}; a tarred disk holds exactly one file, "
            f"{DISK_NAME} (extract the disk image you mean and publish that file)",
        )
    member = files[0]
    image = TarDiskImage(path, fd, member)
    try:
        _check_content(image, member, forced)
    except BaseException:
        image.fd = -1  # the caller closes fd
        raise
    return image


def _check_content(image: TarDiskImage, member: Member, forced: bool) -> None:
    if member.size % SECTOR:
        raise ImageFormatError(
            image.path,
            "tar",
            "member",
            member.header,
            f"{member.name} is {member.size} bytes, not a whole number of 512-byte sectors: not a raw disk",
        )
    from imgpub.disk.detect import container_format

    head = head_of(image)
    inner = container_format(head)
    if inner is not None:
        raise ImageFormatError(
            image.path,
            "tar",
            "member",
            member.header,
            f"{member.name} is a {inner} image, not a raw disk; extract it (tar -xf) and publish that file",
        )
    verdict = judge(head, member.size)
    if verdict is None or forced:
        return
    offset, what = verdict
    if Path(member.name).name == DISK_NAME and offset == 0 and "not a recognised disk image" in what:
        return  # GCE's layout says raw: a disk without a partition table is allowed
    raise ImageFormatError(image.path, "tar", "member", member.header, f"{member.name}: {what}")
