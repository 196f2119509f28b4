"""VMDKs made of extents named by a descriptor: twoGbMaxExtentSparse and twoGbMaxExtentFlat (VMware
Workstation's split disks), monolithicFlat, ESXi's vmfs (flat) and vmfsSparse (COWD extents), and
monolithicSparse or streamOptimized descriptors that name several sparse extents.

Each extent is opened next to the descriptor (never outside its folder) by its own reader: sparse
extents by VmdkSparseImage, flat ones as a window of their file, ZERO extents read as zeros. The disk
is the extents one after the other.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage
from imgpub.disk.raw import RawImage
from imgpub.disk.siblings import open_sibling
from imgpub.disk.vmdk_descriptor import FLATTEN, Descriptor, ExtentLine
from imgpub.disk.zeros import zeros

SECTOR = 512
MAX_EXTENTS = 4096  # 8 TiB in 2 GiB pieces
MAX_SIZE = 64 << 40
FLAT_KINDS = ("FLAT", "VMFS")
SPARSE_KINDS = ("SPARSE", "VMFSSPARSE")
DEVICE_KINDS = ("VMFSRDM", "VMFSRAW")


@dataclass(frozen=True, slots=True)
class Part:
    start: int  # guest byte offset
    length: int
    image: DiskImage | None  # None: a ZERO extent


class VmdkExtentsImage(DiskImage):
    """A disk whose descriptor (at byte `where` of `fd`) names its extents."""

    format = "vmdk"

    def __init__(self, path: Path, fd: int, desc: Descriptor, where: int) -> None:
        super().__init__(path, fd)
        self.descriptor, self.where = desc, where
        self.parts: list[Part] = []
        if not desc.extents:
            raise self._error(where, "names no extent")
        if len(desc.extents) > MAX_EXTENTS:
            raise self._error(where, f"names {len(desc.extents)} extents, more than {MAX_EXTENTS}")
        pos = 0
        try:
            for ext in desc.extents:
                length = ext.sectors * SECTOR
                if length == 0 or pos + length > MAX_SIZE:
                    raise self._error(where + ext.at, f"extent of {ext.sectors} sectors")
                self.parts.append(Part(pos, length, self._open_extent(ext, length)))
                pos += length
        except BaseException:
            self._close_parts()
            raise
        self.virtual_size = pos
        self.files = tuple(dict.fromkeys((path, *(f for p in self.parts if p.image for f in p.image.files))))
        self._starts = [p.start for p in self.parts]
        self.allocation = AllocationMap.from_runs(
            pos, ((p.start + o, n) for p in self.parts if p.image for o, n in p.image.allocation.data_runs)
        )

    def _error(self, offset: int, what: str) -> ImageFormatError:
        return ImageFormatError(self.path, "vmdk", "descriptor", offset, what)

    def _open_extent(self, ext: ExtentLine, length: int) -> DiskImage | None:
        at = self.where + ext.at
        if ext.access == "NOACCESS":
            raise UnsupportedImageError(
                self.path, "vmdk", "descriptor", at, f"extent {ext.filename!r} is NOACCESS; {FLATTEN}"
            )
        if ext.kind == "ZERO":
            return None
        if ext.kind in DEVICE_KINDS or ext.kind not in FLAT_KINDS + SPARSE_KINDS:
            what = "maps a device" if ext.kind in DEVICE_KINDS else "is not supported"
            raise UnsupportedImageError(
                self.path, "vmdk", "descriptor", at, f"extent type {ext.kind} {what}; {FLATTEN}"
            )
        path, fd = open_sibling(self.path, ext.filename, "vmdk", at, "extent")
        try:
            return self._extent_image(ext, length, path, fd, at)
        except BaseException:
            os.close(fd)
            raise

    def _extent_image(self, ext: ExtentLine, length: int, path: Path, fd: int, at: int) -> DiskImage:
        if ext.kind in FLAT_KINDS:
            base, size = ext.offset * SECTOR, os.fstat(fd).st_size
            if base + length > size:
                raise ImageFormatError(
                    self.path,
                    "vmdk",
                    "flat extent",
                    at,
                    f"{ext.filename} is {size} bytes, the descriptor needs {base + length}",
                )
            return RawImage(path, fd, window=(base, length))
        from imgpub.disk.vmdk import VmdkSparseImage

        head = os.pread(fd, 4, 0)
        if head not in (b"KDMV", b"COWD"):
            raise self._error(at, f"extent {ext.filename!r} is not a sparse extent (starts {head.hex()})")
        image = VmdkSparseImage(path, fd, extent=True)
        if image.virtual_size != length:  # the caller closes fd
            raise self._error(
                at,
                f"extent {ext.filename!r} holds {image.virtual_size // SECTOR} sectors, "
                f"the descriptor says {ext.sectors}",
            )
        return image

    def readinto(self, offset: int, buf: memoryview) -> int:
        end = min(offset + len(buf), self.virtual_size)
        k = max(bisect_right(self._starts, offset) - 1, 0)
        pos = offset
        while pos < end:
            part = self.parts[k]
            stop = min(end, part.start + part.length)
            view = buf[pos - offset : stop - offset]
            got = part.image.readinto(pos - part.start, view) if part.image is not None else 0
            if got < len(view):
                view[got:] = zeros(len(view) - got)
            pos, k = stop, k + 1
        return max(end - offset, 0)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(max(0, min(length, self.virtual_size - offset)))
        self.readinto(offset, memoryview(out))
        return bytes(out)

    def _close_parts(self) -> None:
        for part in self.parts:
            if part.image is not None:
                part.image.close()

    def close(self) -> None:
        self._close_parts()
        super().close()

    def info(self) -> dict[str, Any]:
        return {
            "subformat": self.descriptor.create_type,
            "extents": [
                f"{e.kind} {e.filename or '-'} ({e.sectors} sectors)" for e in self.descriptor.extents
            ],
        }
