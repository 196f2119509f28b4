"""OVF descriptors and OVA manifests: which disks a package holds, their files and capacities, the
firmware its virtual machine boots with, and the digests its .mf lists.

The XML is parsed by expat with every DTD, entity declaration and external entity refused (the
caution of defusedxml, without the dependency): an OVF never needs them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError, human

MAX_OVF = 16 << 20
MAX_MANIFEST = 4 << 20
OVF_NAMESPACES = ("http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2")
VMW = "http://www.vmware.com/schema/ovf"
_UNIT = re.compile(r"^\s*byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+)\s*)?$", re.IGNORECASE)
_LEGACY_UNITS = {"bytes": 0, "kilobytes": 10, "megabytes": 20, "gigabytes": 30, "terabytes": 40}
_MF_LINE = re.compile(r"^\s*(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$")
DIGEST_SIZES = {"SHA1": 40, "SHA256": 64, "SHA512": 128}


@dataclass(frozen=True, slots=True)
class OvfDisk:
    disk_id: str
    href: str  # "" for a disk without a file (an empty disk the hypervisor creates)
    capacity: int | None  # bytes; None when the OVF gives it as a property reference
    format: str
    compression: str = ""
    chunked: bool = False
    parent: str = ""
    file_size: int | None = None  # ovf:size of its file, when given as a number

    @property
    def label(self) -> str:
        return self.href or self.disk_id


@dataclass(frozen=True, slots=True)
class Ovf:
    disks: tuple[OvfDisk, ...]
    firmware: str | None  # "uefi", "bios", or None when the OVF does not say


class _Refused(Exception):
    pass


def parse_xml(data: bytes, path: Path, fmt: str, base: int) -> ET.Element:
    """The document element of `data`; DTDs and entities are refused, errors carry the byte offset."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=" ")

    def name(raw: str) -> str:
        uri, _, local = raw.rpartition(" ")
        return f"{{{uri}}}{local}" if uri else local

    def refuse(*_: object) -> None:
        raise _Refused

    parser.StartElementHandler = lambda tag, attrs: builder.start(
        name(tag), {name(k): v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(name(tag))
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
        return builder.close()
    except _Refused:
        raise ImageFormatError(
            path,
            fmt,
            "descriptor",
            base + parser.CurrentByteIndex,
            "holds a DTD or entity declaration; refused",
        ) from None
    except (
        expat.ExpatError,
        ValueError,
        LookupError,
        RecursionError,
    ) as exc:  # LookupError: an unknown encoding
        at = parser.ErrorByteIndex if isinstance(exc, expat.ExpatError) else parser.CurrentByteIndex
        raise ImageFormatError(
            path, fmt, "descriptor", base + max(at, 0), f"is not valid XML ({exc})"
        ) from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _attr(elem: ET.Element, key: str) -> str | None:
    for ns in OVF_NAMESPACES:
        if (value := elem.get(f"{{{ns}}}{key}")) is not None:
            return value
    return elem.get(key)


def _capacity(value: str | None, units: str | None, where: str, error: ImageFormatError) -> int | None:
    if value is None or value.strip().startswith("${"):
        return None  # a property reference: the disk's own size decides
    if not value.strip().isdigit():
        raise error
    count = int(value)
    unit = (units or "byte").strip()
    if m := _UNIT.match(unit):
        base, power = int(m.group(1) or 2), int(m.group(2) or 0)
        if base not in (2, 10) or power > 60:
            raise error
        return int(count * base**power)
    if unit.lower() in _LEGACY_UNITS:
        return count << _LEGACY_UNITS[unit.lower()]
    raise error


def parse_ovf(data: bytes, path: Path, fmt: str, base: int = 0) -> Ovf:
    """The disks (in DiskSection order) and firmware of an OVF descriptor."""
    root = parse_xml(data, path, fmt, base)
    if _local(root.tag) != "Envelope" or not any(root.tag == f"{{{ns}}}Envelope" for ns in OVF_NAMESPACES):
        raise ImageFormatError(path, fmt, "descriptor", base, f"is not an OVF envelope (root {root.tag!r})")
    files = {}
    for elem in root.iter():
        if _local(elem.tag) == "File" and (fid := _attr(elem, "id")) is not None:
            files[fid] = elem
    disks = []
    for elem in root.iter():
        if _local(elem.tag) != "Disk" or _attr(elem, "diskId") is None:
            continue
        disk_id = _attr(elem, "diskId") or ""
        bad = ImageFormatError(
            path,
            fmt,
            "descriptor",
            base,
            f"disk {disk_id!r} has an unreadable capacity {_attr(elem, 'capacity')!r}",
        )
        capacity = _capacity(_attr(elem, "capacity"), _attr(elem, "capacityAllocationUnits"), disk_id, bad)
        ref = _attr(elem, "fileRef")
        file = files.get(ref) if ref else None
        if ref and file is None:
            raise ImageFormatError(
                path, fmt, "descriptor", base, f"disk {disk_id!r} names a missing file {ref!r}"
            )
        href = (_attr(file, "href") or "") if file is not None else ""
        size = (_attr(file, "size") or "").strip() if file is not None else ""
        disks.append(
            OvfDisk(
                disk_id,
                href,
                capacity,
                _attr(elem, "format") or "",
                (_attr(file, "compression") or "") if file is not None else "",
                file is not None and _attr(file, "chunkSize") is not None,
                _attr(elem, "parentRef") or "",
                int(size) if size.isdigit() and len(size) < 20 else None,
            )
        )
    return Ovf(tuple(disks), _firmware(root))


def _firmware(root: ET.Element) -> str | None:
    """VMware: vmw:firmware="efi", or <vmw:Config vmw:key="firmware" vmw:value="efi"/> (ExtraConfig
    too); VirtualBox: <Firmware type="EFI"/> in its vbox:Machine section. The first one found wins."""
    for elem in root.iter():
        value = elem.get(f"{{{VMW}}}firmware")
        tag = _local(elem.tag)
        if value is None and tag in ("Config", "ExtraConfig") and elem.get(f"{{{VMW}}}key") == "firmware":
            value = elem.get(f"{{{VMW}}}value")
        if value is None and tag == "Firmware":
            value = elem.get("type")
        if value:
            kind = value.strip().lower()
            if kind.startswith("efi") or kind == "uefi":
                return "uefi"
            if kind == "bios":
                return "bios"
    return None


def parse_manifest(data: bytes, path: Path, fmt: str, base: int) -> tuple[dict[str, tuple[str, str]], str]:
    """{file name: (algorithm, lowercase hex digest)} of an OVF .mf manifest, and its algorithms."""
    if len(data) > MAX_MANIFEST:
        raise ImageFormatError(path, fmt, "manifest", base, f"is {len(data)} bytes; absurd for a manifest")
    digests: dict[str, tuple[str, str]] = {}
    at = base
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "replace").strip()
        if line:
            m = _MF_LINE.match(line)
            if not m or len(m.group(3)) != DIGEST_SIZES[m.group(1)]:
                raise ImageFormatError(path, fmt, "manifest", at, f"unreadable line {line[:60]!r}")
            digests[m.group(2).strip()] = (m.group(1), m.group(3).lower())
        at += len(raw) + 1
    return digests, ", ".join(sorted({a for a, _ in digests.values()}))


def choose(disks: tuple[OvfDisk, ...], member: str | int | None, path: Path, fmt: str) -> tuple[int, OvfDisk]:
    """The disk `member` names (its index in OVF order, its file name or its OVF disk id)."""
    listing = ", ".join(f"{i} {d.label} ({human(d.capacity)})" for i, d in enumerate(disks))
    if not disks:
        raise ImageFormatError(path, fmt, "descriptor", None, "lists no disk")
    if member is None:
        if len(disks) == 1:
            return 0, disks[0]
        raise ImageFormatError(
            path,
            fmt,
            "descriptor",
            None,
            f"holds {len(disks)} disks: {listing}; choose one with image.disk in the manifest or --disk",
        )
    if not isinstance(member, int):
        for i, d in enumerate(disks):
            if member in (d.href, d.disk_id) or (d.href and member == Path(d.href).name):
                return i, d
        if member.strip().isdigit():
            member = int(member)
    if isinstance(member, int) and 0 <= member < len(disks):
        return member, disks[member]
    raise ImageFormatError(path, fmt, "descriptor", None, f"has no disk {member!r}; it holds {listing}")


def check_size(disk: OvfDisk, actual: int, path: Path, fmt: str) -> None:
    """The disk's file must be as long as the OVF says (a cut download or copy is caught at open)."""
    if disk.file_size is not None and disk.file_size != actual:
        raise ImageFormatError(
            path,
            fmt,
            "descriptor",
            None,
            f"{disk.href} is {actual} bytes, but the OVF says {disk.file_size} (truncated or damaged?)",
        )


def check_disk(disk: OvfDisk, path: Path, fmt: str) -> None:
    """Refuse the disks an OVF can describe but imgpub cannot read where they lie."""
    what = None
    if disk.parent:
        what = f"is a differencing disk of {disk.parent!r}; export the VM with its disks consolidated"
    elif not disk.href:
        what = "has no file: it is an empty disk the hypervisor would create; choose another disk"
    elif disk.compression and disk.compression.lower() != "identity":
        what = f"is stored {disk.compression}-compressed; export it again without compression"
    elif disk.chunked:
        what = "is stored in chunks (ovf:chunkSize); export it again without chunking"
    elif "://" in disk.href:
        what = f"lives at {disk.href}, outside the package; download it next to the descriptor"
    if what:
        raise UnsupportedImageError(path, fmt, "descriptor", None, f"disk {disk.label!r} {what}")
