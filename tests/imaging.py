"""Building test images: sparse raw files written by us, other formats made by qemu-img (the oracle)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


def pattern(n: int, seed: int) -> bytes:
    """n reproducible pseudo-random bytes (incompressible)."""
    return random.Random(seed).randbytes(n)


def text_like(n: int, seed: int) -> bytes:
    """n reproducible compressible bytes."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij \n") for _ in range(rnd.randint(2, 9))) for _ in range(64)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def mbr(seed: int = 0, partitions: Sequence[tuple[int, int, int]] = ((0x83, 2048, 65536),)) -> bytes:
    """A 512-byte MBR: pseudo-random boot code, `partitions` (type, first sector, sectors) and 0x55AA.
    Auto-detection takes a file without an image header as a raw disk only when it has an MBR or GPT."""
    table = b"".join(
        bytes([0, 0, 0, 0, kind, 0, 0, 0]) + start.to_bytes(4, "little") + count.to_bytes(4, "little")
        for kind, start, count in partitions
    )
    return pattern(440, seed) + bytes(6) + table.ljust(64, b"\0") + b"\x55\xaa"


def sparse_raw(path: Path, size: int, writes: Sequence[tuple[int, bytes]]) -> Path:
    """A sparse raw file of `size` bytes with `writes` (offset, data) in it; the rest are holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)
    return path


ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def gpt_tables(
    size: int, parts: Sequence[tuple[str, int, int]], boot_code: bool = False
) -> list[tuple[int, bytes]]:
    """(offset, bytes) writes of a protective MBR and primary + backup GPT for a `size`-byte disk
    with `parts` (type GUID, first LBA, last LBA); `boot_code` fills the MBR's code area as a
    BIOS-bootable disk has. Data belongs between LBA 34 and the last 33 sectors."""
    import struct
    import uuid
    import zlib

    last = size // 512 - 1
    entries = bytearray(128 * 128)
    for i, (kind, first, end) in enumerate(parts):
        unique = uuid.uuid5(uuid.NAMESPACE_OID, f"imgpub-test-{i}")
        struct.pack_into("<16s16sQQQ72s", entries, i * 128, uuid.UUID(kind).bytes_le, unique.bytes_le,
                         first, end, 0, f"part{i}".encode("utf-16-le"))  # fmt: skip
    entries_crc = zlib.crc32(entries)

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields: list[object] = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, 34, last - 33,
                                uuid.uuid5(uuid.NAMESPACE_OID, "imgpub-test").bytes_le, entries_lba, 128, 128,
                                entries_crc]  # fmt: skip
        fields[3] = zlib.crc32(struct.pack("<8sIIIIQQQQ16sQIII", *fields))
        return struct.pack("<8sIIIIQQQQ16sQIII", *fields).ljust(512, b"\0")

    mbr = bytearray(512)
    if boot_code:
        mbr[:440] = bytes([0xEB, 0x63, 0x90]) + bytes(range(1, 256)) + bytes(182)
    struct.pack_into(
        "<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, min(last, 0xFFFFFFFF)
    )
    mbr[510:512] = b"\x55\xaa"
    return [
        (0, bytes(mbr)),
        (512, header(1, last, 2)),
        (1024, bytes(entries)),
        ((last - 32) * 512, bytes(entries)),
        (last * 512, header(last, 1, last - 32)),
    ]


def gpt_raw(
    path: Path, size: int, writes: Sequence[tuple[int, bytes]], *, esp: bool = True, bios_boot: bool = False
) -> Path:
    """A sparse raw GPT disk: an EFI system partition over the first MiB after LBA 2048 (when
    `esp`), a BIOS boot partition (when `bios_boot`), and `writes` (keep them off the first MiB and
    the last 17 KiB, where the tables are)."""
    parts = []
    if esp:
        parts.append((ESP_TYPE, 2048, 4095))
    if bios_boot:
        parts.append((BIOS_BOOT_TYPE, 34, 2047))
    parts.append((LINUX_TYPE, 4096, size // 512 - 34))
    return sparse_raw(path, size, [*gpt_tables(size, parts), *writes])


def mixed_raw(path: Path, size: int = 64 * MiB, seed: int = 1) -> Path:
    """A raw disk with random data, text, an explicit run of zero bytes, and holes, at odd offsets,
    under a GPT (an EFI system partition, MBR boot code) written last: detection takes it as a disk,
    and it suits both boot modes."""
    parts = [(ESP_TYPE, 2048, 4095), (LINUX_TYPE, 4096, size // 512 - 34)]
    return sparse_raw(
        path,
        size,
        [
            (0, pattern(MiB + 4096, seed)),
            (3 * MiB + 512, text_like(2 * MiB, seed + 1)),
            (8 * MiB, bytes(MiB)),  # allocated zeros
            (size // 2 + 12345 * 512, pattern(300 * 1024, seed + 2)),
            (size - 4096, pattern(4096, seed + 3)),
            *gpt_tables(size, parts, boot_code=True),
        ],
    )


def qemu_img(*args: str | os.PathLike[str]) -> str:
    out = subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout


def convert(src: Path, dst: Path, out_fmt: str, *options: str, src_fmt: str | None = None) -> Path:
    """qemu-img convert src -> dst in `out_fmt` with `-o` options (e.g. 'cluster_size=4096')."""
    args: list[str | os.PathLike[str]] = ["convert"]
    if src_fmt:
        args += ["-f", src_fmt]
    args += ["-O", out_fmt]
    settings = [o for o in options if not o.startswith("-")]
    if settings:
        args += ["-o", ",".join(settings)]
    args += [o for o in options if o.startswith("-")]
    args += [src, dst]
    qemu_img(*args)
    return dst


def to_raw(src: Path, dst: Path, src_fmt: str | None = None) -> Path:
    """The guest bytes of `src` as qemu-img sees them."""
    return convert(src, dst, "raw", src_fmt=src_fmt)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()
