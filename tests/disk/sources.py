"""Builders for hypervisor exports and for files that are not disks: VirtualBox-layout VDIs, ESX COWD
extents, VMware- and VirtualBox-style OVF descriptors, OVAs (Python's tarfile or GNU tar, with a
SHA1/SHA256 manifest), and ISO / filesystem / executable samples made of bytes (no root, no mkfs)."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import tarfile
import uuid
from collections.abc import Sequence
from pathlib import Path

SECTOR = 512
MiB = 1 << 20
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

# ---- VDI ------------------------------------------------------------------------------------------


def vdi(
    raw: bytes,
    *,
    block: int = MiB,
    static: bool = False,
    bmap_at: int = MiB,
    version: int = 0x00010001,
    kind: int | None = None,
    parent: bytes = bytes(16),
    discard: Sequence[int] = (),
    reverse: bool = True,
) -> bytes:
    """`raw` (whole sectors) as VirtualBox lays a VDI out: a 0x190-byte header, the block map at 1 MiB,
    data from the next MiB; blocks stored in reverse order (as a guest writing backwards leaves them),
    `discard` blocks marked 0xFFFFFFFE."""
    blocks = -(-len(raw) // block)
    data_at = -(-(bmap_at + 4 * blocks) // MiB) * MiB
    order = range(blocks - 1, -1, -1) if reverse else range(blocks)
    entries = [0xFFFFFFFF] * blocks
    stored = []
    for i in order:
        chunk = raw[i * block : (i + 1) * block]
        if i in discard:
            entries[i] = 0xFFFFFFFE
        elif static or any(chunk):
            entries[i] = len(stored)
            stored.append(chunk.ljust(block, b"\0"))
    head = bytearray(SECTOR)
    head[:0x40] = b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(0x40, b"\0")
    struct.pack_into(
        "<IIIII256sIIIIIIIQIIII16s16s16s16s",
        head,
        0x40,
        0xBEDA107F,
        version,
        0x190,
        kind if kind is not None else (2 if static else 1),
        0,
        b"made by imgpub tests",
        bmap_at,
        data_at,
        0,
        0,
        0,
        SECTOR,
        0,
        len(raw),
        block,
        0,
        blocks,
        len(stored),
        uuid.UUID(int=1).bytes_le,
        uuid.UUID(int=2).bytes_le,
        bytes(16),
        parent,
    )
    out = bytearray(data_at)
    out[:SECTOR] = head
    out[bmap_at : bmap_at + 4 * blocks] = struct.pack(f"<{blocks}I", *entries)
    return bytes(out) + b"".join(stored)


# ---- COWD (ESX sparse extents) ----------------------------------------------------------------------


def cowd(raw: bytes, grain: int = 8) -> bytes:
    """`raw` as an ESX sparse (COWD) extent: a 2048-byte header, the grain directory at sector 4, one
    4096-entry grain table per directory entry that has data, then the grains."""
    sectors = len(raw) // SECTOR
    gbytes = grain * SECTOR
    per_gt = 4096 * gbytes
    n_gd = -(-len(raw) // per_gt)
    gd_sectors = -(-n_gd * 4 // SECTOR)
    used = [t for t in range(n_gd) if any(raw[t * per_gt : (t + 1) * per_gt])]
    gt_at = 4 + gd_sectors
    grains_at = gt_at + 32 * len(used)
    gd = [0] * n_gd
    tables = bytearray()
    grains = bytearray()
    for k, t in enumerate(used):
        gd[t] = gt_at + 32 * k
        entries = [0] * 4096
        for g in range(4096):
            chunk = raw[t * per_gt + g * gbytes : t * per_gt + (g + 1) * gbytes]
            if any(chunk):
                entries[g] = grains_at + len(grains) // SECTOR
                grains += chunk.ljust(gbytes, b"\0")
        tables += struct.pack("<4096I", *entries)
    header = struct.pack(
        "<4sIIIIIII", b"COWD", 1, 3, sectors, grain, 4, n_gd, grains_at + len(grains) // SECTOR
    )
    body = header.ljust(2048, b"\0") + struct.pack(f"<{n_gd}I", *gd).ljust(gd_sectors * SECTOR, b"\0")
    return body + bytes(tables) + bytes(grains)


def vmdk_descriptor(create_type: str, extents: Sequence[str], parent: str = "ffffffff") -> str:
    lines = "\n".join(extents)
    return (
        f'# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID={parent}\ncreateType="{create_type}"\n\n'
        f'# Extent description\n{lines}\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n'
    )


# ---- OVF / OVA ------------------------------------------------------------------------------------

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"'
    ' xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"'
    ' xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vbox="http://www.virtualbox.org/ovf/machine">\n'
)


def ovf(
    disks: Sequence[tuple[str, int, str]],
    *,
    style: str = "vmware",
    firmware: str | None = None,
    disk_format: str = VMDK_STREAM,
) -> bytes:
    """An OVF naming `disks` (href, capacity, capacityAllocationUnits), VMware style (firmware as
    vmw:Config) or VirtualBox style (firmware in vbox:Machine/Hardware/Firmware)."""
    refs = "".join(f'<File ovf:id="file{i}" ovf:href="{h}"/>' for i, (h, _, _) in enumerate(disks))
    section = "".join(
        f'<Disk ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:capacity="{c}" '
        f'ovf:capacityAllocationUnits="{u}" ovf:format="{disk_format}"/>'
        for i, (_, c, u) in enumerate(disks)
    )
    hardware = "<VirtualHardwareSection><Info>hw</Info>"
    hardware += "".join(
        f"<Item><rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource><rasd:ResourceType>17"
        "</rasd:ResourceType></Item>"
        for i in range(len(disks))
    )
    extra = ""
    if style == "vmware" and firmware:
        hardware += f'<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{firmware}"/>'
    elif style == "virtualbox":
        fw = f'<Firmware type="{firmware}"/>' if firmware else ""
        extra = (
            '<vbox:Machine ovf:required="false" version="1.16-linux" name="vm">'
            f"<Hardware>{fw}</Hardware></vbox:Machine>"
        )
    hardware += "</VirtualHardwareSection>"
    text = (
        f"{ENVELOPE}<References>{refs}</References><DiskSection><Info>disks</Info>{section}</DiskSection>"
        f'<VirtualSystem ovf:id="vm"><Info>vm</Info>{hardware}{extra}</VirtualSystem></Envelope>\n'
    )
    return text.encode()


def manifest(files: dict[str, bytes | Path], algorithm: str) -> bytes:
    lines = []
    for name, content in files.items():
        h = hashlib.new(algorithm.lower())
        h.update(content if isinstance(content, bytes) else content.read_bytes())
        lines.append(f"{algorithm}({name})= {h.hexdigest()}\n")
    return "".join(lines).encode()


def ova(
    dst: Path,
    descriptor: bytes,
    disks: dict[str, Path],
    *,
    algorithm: str | None = "SHA256",
    gnu: bool = False,
) -> Path:
    """An OVA: the .ovf first, then the .mf (when `algorithm`), then the disks, written by Python's
    tarfile (ustar) or by GNU tar (`gnu`)."""
    stem = dst.stem
    files: dict[str, bytes | Path] = {f"{stem}.ovf": descriptor, **disks}
    members: list[tuple[str, bytes | Path]] = [(f"{stem}.ovf", descriptor)]
    if algorithm:
        members.append((f"{stem}.mf", manifest(files, algorithm)))
    members += list(disks.items())
    if gnu:
        folder = dst.with_name(dst.name + ".d")
        folder.mkdir()
        for name, content in members:
            target = folder / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.symlink_to(content.resolve())
        names = [name for name, _ in members]
        subprocess.run(["tar", "-chf", str(dst), "-C", str(folder), *names], check=True)
        return dst
    with tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            if isinstance(content, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.add(content, arcname=name)
    return dst


def member_range(path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of a member's data, as Python's tarfile finds it."""
    with tarfile.open(path) as tar:
        m = tar.getmember(name)
        return m.offset_data, m.size


# ---- files that are not disks ---------------------------------------------------------------------


def iso9660(size: int = MiB, *, hybrid: bool = False) -> bytes:
    """A system area, a primary volume descriptor ("CD001" at 0x8001) and the terminator; with
    `hybrid`, an MBR in front as isohybrid writes it."""
    out = bytearray(size)
    out[0x8000:0x8007] = b"\x01CD001\x01"
    out[0x8028:0x8030] = b"INSTALL "
    out[0x8800:0x8807] = b"\xffCD001\x01"
    if hybrid:
        out[0:3] = b"\x33\xed\x90"
        out[446:462] = bytes([0x80, 0, 1, 0, 0x17, 0, 0, 0]) + struct.pack("<II", 0, size // SECTOR)
        out[510:512] = b"\x55\xaa"
    return bytes(out)


def ext4(size: int = 4 * MiB) -> bytes:
    """The superblock fields a filesystem image starts with: counts, 4 KiB blocks, magic 0xEF53."""
    out = bytearray(size)
    struct.pack_into("<II", out, 1024, 256, size // 4096)  # inodes, blocks
    struct.pack_into("<I", out, 1024 + 24, 2)  # log2(block size) - 10
    struct.pack_into("<H", out, 1024 + 56, 0xEF53)
    out[1024 + 120 : 1024 + 124] = b"root"
    return bytes(out)


def fat_boot_sector(size: int = MiB) -> bytes:
    out = bytearray(size)
    out[0:3] = b"\xeb\x3c\x90"
    out[3:11] = b"mkfs.fat"
    struct.pack_into("<HBHBH", out, 11, 512, 4, 4, 2, 512)
    out[54:62] = b"FAT16   "
    out[62:100] = b"\x0e\x1f\xbe\x5b\x7c" + bytes(33)  # the start of the "not bootable" stub
    out[510:512] = b"\x55\xaa"
    return bytes(out)


def at(size: int, *writes: tuple[int, bytes]) -> bytes:
    out = bytearray(size)
    for offset, data in writes:
        out[offset : offset + len(data)] = data
    return bytes(out)
