"""What a file without a disk-image header is: a raw disk (it carries an MBR or a GPT), or something
that must never be published as one (an installer ISO, a bare filesystem, an archive, a program, a
text file), named with what to do instead.

`judge(head, size)` looks at the first HEAD bytes only.
"""

from __future__ import annotations

import struct

HEAD = 0x11000  # enough for the btrfs superblock magic at 0x10040
SECTOR = 512
NOT_A_DISK = "not a recognised disk image; if this is a raw disk without a partition table, set format: raw"
INSTALL = "install it onto a VM's disk (virt-install, Packer...) and publish that disk"
PARTITION = (
    "a disk needs a partition table around it: build the image as a partitioned disk (e.g. "
    "virt-make-fs --partition, or a VM's disk); set format: raw only if this really is what the VM must see"
)
EXTRACT = "extract the disk image from it and publish that file"
OTHER = "publish the virtual machine's disk image instead"

# (offset, magic, what the file looks like, what to do)
SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"PK\x03\x04", "a zip archive", EXTRACT),
    (0, b"PK\x05\x06", "an empty zip archive", EXTRACT),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", EXTRACT),
    (0, b"Rar!\x1a\x07", "a RAR archive", EXTRACT),
    (0, b"!<arch>\ndebian-binary", "a Debian package", OTHER),
    (0, b"!<arch>\n", "an ar archive", EXTRACT),
    (0, b"\xed\xab\xee\xdb", "an RPM package", OTHER),
    (0, b"070701", "a cpio archive", EXTRACT),
    (0, b"070702", "a cpio archive", EXTRACT),
    (0, b"070707", "a cpio archive", EXTRACT),
    (
        4,
        b"1AY&SY",
        "bzip2-compressed data",
        "decompress it (bunzip2), or recompress it with xz, zstd or gzip",
    ),
    (
        0,
        b"\x04\x22\x4d\x18",
        "lz4-compressed data",
        "decompress it (unlz4), or recompress it with xz, zstd or gzip",
    ),
    (0, b"LZIP", "lzip-compressed data", "decompress it (lzip -d), or recompress it with xz, zstd or gzip"),
    (
        0,
        b"\x1f\x9d",
        "compress(1) data",
        "decompress it (uncompress), or recompress it with xz, zstd or gzip",
    ),
    (0, b"\x7fELF", "an ELF executable or library", OTHER),
    (0, b"\xfe\xed\xfa\xce", "a Mach-O executable", OTHER),
    (0, b"\xfe\xed\xfa\xcf", "a Mach-O executable", OTHER),
    (0, b"\xce\xfa\xed\xfe", "a Mach-O executable", OTHER),
    (0, b"\xcf\xfa\xed\xfe", "a Mach-O executable", OTHER),
    (
        0,
        b"\xca\xfe\xba\xbe",
        "a Mach-O universal binary or a Java class",
        OTHER,
    ),
    (0, b"QED\x00", "a QED image", "convert it with `qemu-img convert -O qcow2 SRC OUT.qcow2`"),
    (
        0,
        b"WithoutFreeSpace",
        "a Parallels image",
        "convert it with `qemu-img convert -O qcow2 SRC OUT.qcow2`",
    ),
    (
        0,
        b"WithouFreSpacExt",
        "a Parallels image",
        "convert it with `qemu-img convert -O qcow2 SRC OUT.qcow2`",
    ),
    (0, b"LUKS\xba\xbe", "a LUKS-encrypted volume without a partition table", PARTITION),
    (0, b"XFSB", "an XFS filesystem without a partition table", PARTITION),
    (0, b"hsqs", "a squashfs filesystem", "it is a filesystem image, not a disk; " + INSTALL),
    (512, b"LABELONE", "an LVM physical volume without a partition table", PARTITION),
    (1024, b"\x10\x20\xf5\xf2", "an F2FS filesystem without a partition table", PARTITION),
    (4086, b"SWAPSPACE2", "a Linux swap area", OTHER),
    (0x10040, b"_BHRfS_M", "a btrfs filesystem without a partition table", PARTITION),
)


def _at(head: bytes, offset: int, magic: bytes) -> bool:
    return head[offset : offset + len(magic)] == magic


def _iso(head: bytes) -> tuple[int, str] | None:
    for offset in (0x8001, 0x8801, 0x9001):
        if _at(head, offset, b"CD001"):
            return offset, f"looks like an ISO 9660 CD/DVD image (an installer?), not a disk image; {INSTALL}"
        if head[offset : offset + 5] in (b"BEA01", b"NSR02", b"NSR03"):
            return offset, f"looks like a UDF DVD image (an installer?), not a disk image; {INSTALL}"
    return None


def mbr_partitions(head: bytes) -> list[tuple[int, int, int]] | None:
    """(type, first sector, sectors) of the used entries of a valid MBR table, None if invalid."""
    if len(head) < SECTOR or head[510:512] != b"\x55\xaa":
        return None
    used = []
    for i in range(4):
        entry = head[446 + 16 * i : 462 + 16 * i]
        status, kind = entry[0], entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if status not in (0, 0x80):
            return None
        if kind:
            if start == 0 or count == 0:
                return None
            used.append((kind, start, count))
    return used


def _boot_sector_filesystem(head: bytes) -> str | None:
    """The filesystem whose boot sector (not an MBR) sector 0 is."""
    head = head.ljust(SECTOR, b"\0")
    if _at(head, 3, b"NTFS    "):
        return "an NTFS filesystem"
    if _at(head, 3, b"EXFAT   "):
        return "an exFAT filesystem"
    bps, spc, reserved, fats = struct.unpack_from("<HBHB", head, 11)
    fat_label = _at(head, 54, b"FAT") or _at(head, 82, b"FAT32")
    jump = head[0] in (0xEB, 0xE9)
    if jump and bps in (512, 1024, 2048, 4096) and spc and not spc & (spc - 1):
        return "a FAT filesystem" if (reserved >= 1 and fats in (1, 2)) or fat_label else None
    return None


def is_partitioned(head: bytes) -> bool:
    """A GPT header, or an MBR with a valid table or boot code (and not a filesystem's boot sector)."""
    if _at(head, 512, b"EFI PART") or _at(head, 4096, b"EFI PART"):
        return True
    table = mbr_partitions(head)
    if table is None:
        return False
    if table:
        return True
    return any(head[:440]) and _boot_sector_filesystem(head) is None


def _text(head: bytes) -> str | None:
    sample = head[:4096]
    if not sample or b"\x00" in sample:
        return None
    printable = sum(1 for b in sample if 32 <= b < 127 or b in b"\t\n\r\f" or b >= 0x80)
    if printable < 0.95 * len(sample):
        return None
    start = sample.lstrip(b"\xef\xbb\xbf \t\r\n")
    lower = start[:200].lower()
    if lower.startswith((b"<!doctype html", b"<html")) or b"<html" in lower:
        return "an HTML page (an error page saved by a failed download?), not a disk image"
    first = start.split(b"\n", 1)[0][:40].decode("utf-8", "replace").rstrip()
    return f"a text file (it starts {first!r}), not a disk image"


def _special(head: bytes) -> tuple[int, str, str] | None:
    """Signatures too short to trust alone, checked with the fields around them."""
    if _at(head, 1080, b"\x53\xef"):  # ext2/3/4: sane inode and block counts, block size <= 64 KiB
        inodes, blocks = struct.unpack_from("<II", head, 1024)
        (log_block,) = struct.unpack_from("<I", head, 1048)
        if inodes and blocks and log_block <= 6:
            return 1080, "an ext2/3/4 filesystem without a partition table", PARTITION
    if _at(head, 0, b"MZ") and len(head) >= 0x40:
        (pe,) = struct.unpack_from("<I", head, 0x3C)
        if _at(head, pe, b"PE\x00\x00"):
            return 0, "a Windows (PE) executable", OTHER
    return None


def judge(head: bytes, size: int) -> tuple[int, str] | None:
    """None when `head` (the first HEAD bytes of a `size`-byte file) starts a raw disk; otherwise the
    byte offset of what gave the file away and a one-line refusal saying what to do."""
    sample, head = head, head.ljust(HEAD, b"\0")  # structures are read from the zero-padded copy
    if found := _iso(head):
        return found
    if _at(head, 512, b"EFI PART") or _at(head, 4096, b"EFI PART") or mbr_partitions(head):
        return None if size % SECTOR == 0 else (0, _odd(sample, size))
    if fs := _boot_sector_filesystem(head):
        return 0, f"looks like {fs} without a partition table; {PARTITION}"
    if is_partitioned(head):
        return None if size % SECTOR == 0 else (0, _odd(sample, size))
    found_at = next(((o, w, t) for o, m, w, t in SIGNATURES if _at(head, o, m)), None) or _special(head)
    if found_at:
        offset, what, todo = found_at
        return offset, f"looks like {what}, not a disk image; {todo}"
    if text := _text(sample):
        return 0, f"looks like {text}"
    if size % SECTOR:
        return 0, _odd(sample, size)
    if not any(sample):
        return 0, f"{NOT_A_DISK} (its first {len(sample) // 1024} KiB are zeros: an empty disk?)"
    return 0, f"{NOT_A_DISK} (it starts {sample[:8].hex()})"


def _odd(head: bytes, size: int) -> str:
    return (
        f"no known magic (starts {head[:8].hex()}) and the size {size} is not a whole number of "
        "512-byte sectors, so it is not a raw disk either"
    )
