"""VMDK text descriptors: parsing, the refusal rules, and monolithicFlat (descriptor + one raw extent)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage
from imgpub.disk.raw import sparse_runs

SECTOR = 512
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?(?:\s+(\d+))?\s*$')
FLATTEN = (
    "convert it to one self-contained file with "
    "`qemu-img convert -O vmdk -o subformat=streamOptimized SRC.vmdk OUT.vmdk`"
)


@dataclass(frozen=True, slots=True)
class ExtentLine:
    access: str
    sectors: int
    kind: str
    filename: str
    offset: int


@dataclass(frozen=True, slots=True)
class Descriptor:
    fields: dict[str, str]
    extents: tuple[ExtentLine, ...]

    @property
    def create_type(self) -> str:
        return self.fields.get("createtype", "")


def parse_descriptor(text: str) -> Descriptor:
    """Keys (lower-cased, quotes stripped) and extent lines of a VMDK text descriptor."""
    fields: dict[str, str] = {}
    extents: list[ExtentLine] = []
    for raw in text.splitlines():
        line = raw.strip().rstrip("\x00")
        if not line or line.startswith("#"):
            continue
        if m := _EXTENT.match(line):
            access, sectors, kind, name, offset = m.groups()
            extents.append(ExtentLine(access, int(sectors), kind.upper(), name or "", int(offset or 0)))
        elif "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip().strip('"')
    return Descriptor(fields, tuple(extents))


def check_descriptor(desc: Descriptor, path: Path, offset: int, allowed: tuple[str, ...]) -> None:
    """Refuse snapshots, split and multi-extent disks, whatever the container."""
    parent = desc.fields.get("parentcid", "ffffffff").lower()
    if parent != "ffffffff" or "parentfilenamehint" in desc.fields:
        raise UnsupportedImageError(
            path,
            "vmdk",
            "descriptor",
            offset,
            f"is a delta disk of a snapshot chain (parentCID={parent}); merge the snapshot chain "
            f"first: {FLATTEN}",
        )
    ctype = desc.create_type
    if ctype not in allowed:
        raise UnsupportedImageError(
            path,
            "vmdk",
            "descriptor",
            offset,
            f"createType {ctype or '(none)'!r} is not supported (only {', '.join(allowed)}); {FLATTEN}",
        )
    if len(desc.extents) != 1:
        raise UnsupportedImageError(
            path,
            "vmdk",
            "descriptor",
            offset,
            f"has {len(desc.extents)} extents; only single-extent disks are supported; {FLATTEN}",
        )


class VmdkFlatImage(DiskImage):
    """monolithicFlat: a text descriptor naming one raw extent file in the same folder."""

    format = "vmdk"

    def __init__(self, path: Path, fd: int, desc: Descriptor) -> None:
        super().__init__(path, fd)
        self.descriptor = desc
        ext = desc.extents[0]
        if ext.kind != "FLAT":
            raise UnsupportedImageError(
                path, "vmdk", "descriptor", 0, f"extent type {ext.kind} is not FLAT; {FLATTEN}"
            )
        self.extent_path = _extent_path(path, ext.filename)
        try:
            self.flat_fd = os.open(self.extent_path, os.O_RDONLY)
        except OSError as exc:
            raise ImageFormatError(
                path, "vmdk", "descriptor", 0, f"cannot open extent {ext.filename!r}: {exc.strerror}"
            ) from None
        self.base = ext.offset * SECTOR
        self.virtual_size = ext.sectors * SECTOR
        flat_size = os.fstat(self.flat_fd).st_size
        if self.base + self.virtual_size > flat_size:
            os.close(self.flat_fd)
            raise ImageFormatError(
                path,
                "vmdk",
                "flat extent",
                flat_size,
                f"{ext.filename} is {flat_size} bytes, the descriptor needs {self.base + self.virtual_size}",
            )
        runs = sparse_runs(self.flat_fd, flat_size)
        self.allocation = AllocationMap.from_runs(self.virtual_size, ((o - self.base, n) for o, n in runs))

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.virtual_size - offset))
        data = os.pread(self.flat_fd, length, self.base + offset)
        return data + bytes(length - len(data)) if len(data) < length else data

    def close(self) -> None:
        if self.flat_fd >= 0:
            os.close(self.flat_fd)
            self.flat_fd = -1
        super().close()

    def info(self) -> dict[str, Any]:
        return {"subformat": "monolithicFlat", "extent": str(self.extent_path)}


def _extent_path(descriptor: Path, name: str) -> Path:
    """The extent file next to the descriptor; absolute paths and escapes from its folder are refused."""
    folder = descriptor.parent.resolve()
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise ImageFormatError(
            descriptor,
            "vmdk",
            "descriptor",
            0,
            f"extent path {name!r} must be a plain file name next to the descriptor",
        )
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder):
        raise ImageFormatError(
            descriptor, "vmdk", "descriptor", 0, f"extent path {name!r} leaves the folder {folder}"
        )
    return target
