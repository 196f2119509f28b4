"""A tiny VMware-style streamOptimized writer (qemu never writes this layout): header with
gdOffset = GD_AT_END, grains as lba/size markers + zlib streams, GT and GD behind metadata markers,
then footer marker, footer (the real header) and end-of-stream marker."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SECTOR = 512
GD_AT_END = 0xFFFFFFFFFFFFFFFF
HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")


def _pad(buf: bytes) -> bytes:
    return buf + bytes(-len(buf) % SECTOR)


def _marker(val: int, kind: int) -> bytes:
    return struct.pack("<QII", val, 0, kind) + bytes(SECTOR - 16)


def header(capacity: int, gd: int, *, grain: int = 128, flags: int = 0x30001, compress: int = 1) -> bytes:
    fields = (b"KDMV", 3, flags, capacity, grain, 1, 2, 512, 0, gd, 128, 0, b"\n \r\n", compress)
    return _pad(HEADER.pack(*fields))


def descriptor(capacity: int, create_type: str = "streamOptimized", parent: str = "ffffffff") -> bytes:
    text = (
        f'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID={parent}\ncreateType="{create_type}"\n'
        f'\n# Extent description\nRW {capacity} SPARSE "disk.vmdk"\n\nddb.adapterType = "lsilogic"\n'
    )
    return text.encode().ljust(2 * SECTOR, b"\x00")


def write_vmware_stream(dst: Path, raw: bytes, *, grain: int = 128, zero_grains: bool = True) -> Path:
    """`raw` (a multiple of 512 bytes) as a VMware streamOptimized VMDK; all-zero grains that are
    not the first become zeroed-grain entries (GTE 1) when `zero_grains`."""
    capacity = len(raw) // SECTOR
    gbytes = grain * SECTOR
    ngrains = -(-len(raw) // gbytes)
    flags = 0x30001 | (0x4 if zero_grains else 0)
    out = bytearray(header(capacity, GD_AT_END, grain=grain, flags=flags) + descriptor(capacity))
    out += bytes(128 * SECTOR - len(out))
    gtes = [0] * (-(-ngrains // 512) * 512)
    for g in range(ngrains):
        data = raw[g * gbytes : (g + 1) * gbytes]
        if not any(data):
            if zero_grains and g % 3 == 1:
                gtes[g] = 1
            continue
        gtes[g] = len(out) // SECTOR
        comp = zlib.compress(data, 6)
        out += _pad(struct.pack("<QI", g * grain, len(comp)) + comp)
    gd = []
    for t in range(len(gtes) // 512):
        table = gtes[t * 512 : (t + 1) * 512]
        if not any(table):
            gd.append(0)
            continue
        out += _marker(4, 1)
        gd.append(len(out) // SECTOR)
        out += struct.pack("<512I", *table)
    out += _marker(-(-len(gd) * 4 // SECTOR), 2)
    gd_sector = len(out) // SECTOR
    out += _pad(struct.pack(f"<{len(gd)}I", *gd))
    out += _marker(1, 3) + header(capacity, gd_sector, grain=grain, flags=flags) + _marker(0, 0)
    dst.write_bytes(out)
    return dst
