"""Refusing what is not a disk: a file with no image header is a raw disk only with an MBR or a GPT
(or when format: raw says so); installers, bare filesystems, archives, programs and text are refused
in one line that says what the file looks like and what to do."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from disk.sources import at, ext4, fat_boot_sector, iso9660
from imaging import MiB, gpt_tables, mbr, pattern
from imgpub.disk import detect_format, open_image
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.raw import RawImage
from imgpub.disk.sniff import NOT_A_DISK, is_partitioned, judge


def refusal(tmp_path: Path, data: bytes, name: str = "image.raw") -> ImageFormatError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageFormatError) as err:
        open_image(path)
    text = str(err.value)
    assert text.startswith(f"{path}: image header at byte ") and "\n" not in text
    assert err.value.exit_code == 2
    with open_image(path, "raw") as img:  # format: raw is the way out
        assert isinstance(img, RawImage)
    return err.value


def test_an_iso_installer_is_refused(tmp_path: Path) -> None:
    err = refusal(tmp_path, iso9660())
    assert err.offset == 0x8001
    assert "looks like an ISO 9660 CD/DVD image (an installer?), not a disk image; install it onto" in str(
        err
    )
    # isohybrid puts an MBR in front so the ISO boots from a USB stick: still an installer
    assert "ISO 9660" in str(refusal(tmp_path, iso9660(hybrid=True)))
    udf = at(MiB, (0x8001, b"BEA01"), (0x8801, b"NSR02"))
    assert "UDF DVD image" in str(refusal(tmp_path, udf))


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (ext4(), 1080, "an ext2/3/4 filesystem without a partition table"),
        (at(MiB, (0, b"XFSB")), 0, "an XFS filesystem without a partition table"),
        (at(MiB, (0x10040, b"_BHRfS_M")), 0x10040, "a btrfs filesystem without a partition table"),
        (fat_boot_sector(), 0, "a FAT filesystem without a partition table"),
        (at(MiB, (0, b"\xeb\x52\x90NTFS    "), (510, b"\x55\xaa")), 0, "an NTFS filesystem"),
        (at(MiB, (512, b"LABELONE")), 512, "an LVM physical volume"),
        (at(MiB, (0, b"LUKS\xba\xbe")), 0, "a LUKS-encrypted volume"),
        (at(MiB, (4086, b"SWAPSPACE2")), 4086, "a Linux swap area"),
    ],
)
def test_a_filesystem_without_a_partition_table_is_refused(
    tmp_path: Path, data: bytes, offset: int, words: str
) -> None:
    err = refusal(tmp_path, data)
    assert err.offset == offset and words in str(err)
    if "without a partition table" in words:
        assert "a disk needs a partition table around it" in str(err)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("disk.raw", bytes(4096))
    return buf.getvalue().ljust(MiB, b"\0")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_zip(), "a zip archive, not a disk image; extract the disk image from it"),
        (at(MiB, (0, b"7z\xbc\xaf\x27\x1c")), "a 7-Zip archive"),
        (at(MiB, (0, b"Rar!\x1a\x07\x01\x00")), "a RAR archive"),
        (at(MiB, (0, b"!<arch>\ndebian-binary   ")), "a Debian package"),
        (at(MiB, (0, b"\xed\xab\xee\xdb")), "an RPM package"),
        (at(MiB, (0, b"070701")), "a cpio archive"),
        (at(MiB, (0, b"BZh91AY&SY")), "bzip2-compressed data"),
        (at(MiB, (0, b"\x7fELF\x02\x01\x01")), "an ELF executable or library"),
        (
            at(MiB, (0, b"MZ"), (0x3C, struct.pack("<I", 0x80)), (0x80, b"PE\0\0")),
            "a Windows (PE) executable",
        ),
        (at(MiB, (0, b"\xcf\xfa\xed\xfe")), "a Mach-O executable"),
        (b"QED\x00".ljust(MiB, b"\0"), "a QED image"),
    ],
)
def test_archives_and_programs_are_refused(tmp_path: Path, data: bytes, words: str) -> None:
    assert f"looks like {words}" in str(refusal(tmp_path, data))


def test_a_real_program_is_refused(tmp_path: Path) -> None:
    elf = Path(shutil.which("qemu-img") or "/bin/sh").read_bytes()
    path = tmp_path / "qemu-img"
    path.write_bytes(elf + bytes(-len(elf) % 512))
    with pytest.raises(ImageFormatError, match="looks like an ELF executable or library, not a disk image"):
        open_image(path)


def test_text_is_refused(tmp_path: Path) -> None:
    text = b"# my golden image\nsource: build/disk.qcow2\n" * 200
    err = refusal(tmp_path, text[:8192])
    assert "looks like a text file (it starts '# my golden image'), not a disk image" in str(err)
    html = b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n".ljust(4096, b" ")
    assert "an HTML page (an error page saved by a failed download?)" in str(refusal(tmp_path, html))


def test_nothing_recognised_asks_for_format_raw(tmp_path: Path) -> None:
    err = refusal(tmp_path, pattern(MiB, 1))
    assert str(err).endswith(f"{NOT_A_DISK} (it starts {pattern(8, 1).hex()})")
    assert "an empty disk?" in str(refusal(tmp_path, bytes(MiB)))


@pytest.mark.parametrize(
    "writes",
    [
        [(0, mbr(1))],  # a table with one partition
        [(0, mbr(2, partitions=()))],  # no partition, but boot code (a BIOS boot loader in the MBR)
        gpt_tables(MiB, [("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 34, 2000)]),
        [(4096, b"EFI PART")],  # GPT on 4 KiB sectors
    ],
    ids=["mbr", "boot-code", "gpt", "gpt-4k"],
)
def test_a_partition_table_makes_a_raw_disk(tmp_path: Path, writes: list[tuple[int, bytes]]) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(at(MiB, *writes))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert detect_format(path, fd) == "raw"
    finally:
        os.close(fd)
    assert is_partitioned(path.read_bytes()[:8192])


def test_tables_that_do_not_count(tmp_path: Path) -> None:
    bad_status = bytearray(mbr(1))
    bad_status[446] = 0x33  # a status byte that is neither 0x00 nor 0x80: random bytes, not a table
    assert judge(bytes(bad_status).ljust(MiB, b"\0"), MiB) is not None
    empty = bytes(510) + b"\x55\xaa"  # signature alone, no table and no boot code
    assert judge(empty.ljust(MiB, b"\0"), MiB) is not None
    assert judge(b"", 0) is not None and judge(b"x", 1) is not None  # short files do not crash
