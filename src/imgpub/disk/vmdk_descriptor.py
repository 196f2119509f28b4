"""VMDK text descriptors: parsing (keys and extent lines, with their byte offsets) and the refusal
rules shared by every container (a separate text file, or a descriptor embedded in a sparse file)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from imgpub.disk.errors import UnsupportedImageError

SECTOR = 512
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?(?:\s+(\d+))?\s*$')
FLATTEN = (
    "convert it to one self-contained file with "
    "`qemu-img convert -O vmdk -o subformat=streamOptimized SRC.vmdk OUT.vmdk`"
)
SPARSE_TYPES = ("monolithicSparse", "streamOptimized")  # a sparse file that is the whole disk
# createTypes whose extents are files next to the descriptor (VMware Workstation, ESXi, qemu)
EXTENT_TYPES = (
    "monolithicFlat",
    "monolithicSparse",
    "streamOptimized",
    "twoGbMaxExtentFlat",
    "twoGbMaxExtentSparse",
    "vmfs",
    "vmfsSparse",
)
DEVICE_TYPES = (
    "fullDevice",
    "partitionedDevice",
    "vmfsRaw",
    "vmfsRawDeviceMap",
    "vmfsPassthroughRawDeviceMap",
)


@dataclass(frozen=True, slots=True)
class ExtentLine:
    access: str
    sectors: int
    kind: str
    filename: str
    offset: int
    at: int = 0  # byte offset of the line in the descriptor text


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
    at = 0
    for raw in text.splitlines(keepends=True):
        here, at = at, at + len(raw.encode("utf-8", "replace"))
        line = raw.strip().rstrip("\x00")
        if not line or line.startswith("#"):
            continue
        if m := _EXTENT.match(line):
            access, sectors, kind, name, offset = m.groups()
            extents.append(ExtentLine(access, int(sectors), kind.upper(), name or "", int(offset or 0), here))
        elif "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip().strip('"')
    return Descriptor(fields, tuple(extents))


def check_descriptor(
    desc: Descriptor, path: Path, offset: int, allowed: tuple[str, ...] = EXTENT_TYPES
) -> None:
    """Refuse snapshots (delta disks), device mappings and create types imgpub cannot read."""
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
    if ctype in DEVICE_TYPES:
        raise UnsupportedImageError(
            path,
            "vmdk",
            "descriptor",
            offset,
            f"createType {ctype!r} maps a physical device or LUN, not files; copy it into an image "
            f"first: {FLATTEN}",
        )
    if ctype not in allowed:
        raise UnsupportedImageError(
            path,
            "vmdk",
            "descriptor",
            offset,
            f"createType {ctype or '(none)'!r} is not supported (only {', '.join(allowed)}); {FLATTEN}",
        )
