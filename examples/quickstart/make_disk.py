"""Build examples/quickstart/disk.qcow2: a 64 MiB GPT disk with a FAT16 EFI System Partition and a
Linux data partition. Python writes the raw disk; qemu-img turns it into qcow2 (a few hundred KB).

    python examples/quickstart/make_disk.py        # needs qemu-img; the result is committed

Deterministic: the same bytes every run (fixed GUIDs, no timestamps).
"""

from __future__ import annotations

import random
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

MiB = 1 << 20
SECTOR = 512
DISK = 64 * MiB
ESP_TYPE = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
LINUX_TYPE = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
NS = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
PARTS = [  # (type, name, first LBA, last LBA inclusive)
    (ESP_TYPE, "EFI System", 1 * MiB // SECTOR, 33 * MiB // SECTOR - 1),
    (LINUX_TYPE, "root", 33 * MiB // SECTOR, 63 * MiB // SECTOR - 1),
]
README = b"imgpub quickstart disk: a GPT disk with an EFI System Partition.\r\n"


def gpt(disk: bytearray) -> None:
    last = DISK // SECTOR - 1
    entries = bytearray(128 * 128)
    for i, (ptype, name, first, end) in enumerate(PARTS):
        unique = uuid.uuid5(NS, f"imgpub-quickstart-{i}")
        struct.pack_into(
            "<16s16sQQQ72s",
            entries,
            i * 128,
            ptype.bytes_le,
            unique.bytes_le,
            first,
            end,
            0,
            name.encode("utf-16-le"),
        )
    entries_crc = zlib.crc32(entries)

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = [
            b"EFI PART",
            0x00010000,
            92,
            0,
            0,
            current,
            backup,
            34,
            last - 33,
            uuid.uuid5(NS, "imgpub-quickstart-disk").bytes_le,
            entries_lba,
            128,
            128,
            entries_crc,
        ]
        raw = struct.pack("<8sIIIIQQQQ16sQIII", *fields)
        fields[3] = zlib.crc32(raw)
        return struct.pack("<8sIIIIQQQQ16sQIII", *fields)

    mbr = bytearray(SECTOR)
    struct.pack_into(
        "<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, min(last, 0xFFFFFFFF)
    )
    mbr[510:512] = b"\x55\xaa"
    disk[0:SECTOR] = mbr
    disk[SECTOR : 2 * SECTOR] = header(1, last, 2).ljust(SECTOR, b"\0")
    disk[2 * SECTOR : 34 * SECTOR] = entries
    disk[(last - 32) * SECTOR : last * SECTOR] = entries
    disk[last * SECTOR :] = header(last, 1, last - 32).ljust(SECTOR, b"\0")


def fat16(disk: bytearray, first_lba: int, sectors: int) -> None:
    """An empty-but-valid FAT16 volume labelled EFI with one README.TXT in the root directory."""
    reserved, fats, root_entries, per_cluster, fat_sectors = 4, 2, 512, 4, 64
    boot = bytearray(SECTOR)
    struct.pack_into(
        "<3s8sHBHBHHBHHHII",
        boot,
        0,
        b"\xeb\x3c\x90",
        b"IMGPUB  ",
        SECTOR,
        per_cluster,
        reserved,
        fats,
        root_entries,
        0,
        0xF8,
        fat_sectors,
        32,
        64,
        first_lba,
        sectors,
    )
    struct.pack_into("<BBBI11s8s", boot, 36, 0x80, 0, 0x29, 0x1D6E5B07, b"EFI        ", b"FAT16   ")
    boot[510:512] = b"\x55\xaa"
    base = first_lba * SECTOR
    disk[base : base + SECTOR] = boot
    fat = struct.pack("<HHH", 0xFFF8, 0xFFFF, 0xFFFF)  # media, reserved, README.TXT's one cluster
    for k in range(fats):
        at = base + (reserved + k * fat_sectors) * SECTOR
        disk[at : at + len(fat)] = fat
    root = base + (reserved + fats * fat_sectors) * SECTOR
    disk[root : root + 32] = struct.pack("<11sB20x", b"EFI        ", 0x08)
    disk[root + 32 : root + 64] = struct.pack("<11sB14xHI", b"README  TXT", 0x20, 2, len(README))
    data = root + root_entries * 32
    disk[data : data + len(README)] = README


def payload(disk: bytearray, first_lba: int) -> None:
    """Some text and some incompressible blocks in the Linux partition, with gaps between them."""
    rnd = random.Random(42)
    base = first_lba * SECTOR
    text = b"".join(b"line %05d of the quickstart root partition\n" % i for i in range(4000))
    disk[base : base + len(text)] = text
    for k in range(8):
        at = base + 4 * MiB + k * 3 * MiB
        disk[at : at + 16384] = rnd.randbytes(16384)


def main() -> None:
    here = Path(__file__).resolve().parent
    disk = bytearray(DISK)
    gpt(disk)
    fat16(disk, PARTS[0][2], PARTS[0][3] - PARTS[0][2] + 1)
    payload(disk, PARTS[1][2])
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "disk.raw"
        raw.write_bytes(disk)
        out = here / "disk.qcow2"
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(out)], check=True
        )
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
