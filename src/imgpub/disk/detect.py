"""Open an image by its structure (never by its file name).

Compression (xz, gzip, zstd) and tar are wrappers: they are always unwrapped, and `fmt` names what
is inside. A file with no image header is a raw disk only when it carries an MBR or a GPT (or when
`fmt` says raw); everything else is refused, saying what the file looks like (sniff.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from imgpub.disk.compressed import MAGICS
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.image import DiskImage
from imgpub.disk.sniff import HEAD, judge
from imgpub.disk.tar import is_tar_header, read_members

FORMATS = ("raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "ova", "ovf", "tar")
COMPRESSIONS = ("xz", "gzip", "zstd")
PACKAGES = ("ova", "ovf")  # formats that hold several disks: `member` chooses one
VDI_SIGNATURE = b"\x7f\x10\xda\xbe"
OVF_MARKS = (b"dmtf.org/ovf/envelope/1", b"dmtf.org/ovf/envelope/2")

Member = str | int | None


def container_format(head: bytes) -> str | None:
    """The image or compression format whose header `head` (a file's first bytes) starts with."""
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith((b"KDMV", b"COWD", b"# Disk DescriptorFile")):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix"):
        return "vhd"
    if head[0x40:0x44] == VDI_SIGNATURE:
        return "vdi"
    return next((name for magic, name in MAGICS.items() if head.startswith(magic)), None)


def _is_ovf(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return start == b"<" and any(mark in head for mark in OVF_MARKS)


def detect_format(path: Path, fd: int) -> str:
    """Name of the format of the open file `fd`: one of FORMATS or COMPRESSIONS. A tar holding an
    .ovf is "ova"; a file that is not a disk image raises ImageFormatError saying what it is."""
    size = os.fstat(fd).st_size
    if size == 0:
        raise ImageFormatError(path, "image", "file", None, "the file is empty")
    head = os.pread(fd, HEAD, 0)
    if name := container_format(head):
        return name
    if size >= 512 and os.pread(fd, 8, size - 512) == b"conectix":
        return "vhd"  # fixed VHD: footer only at the end
    if is_tar_header(head[:512]):
        members = read_members(path, lambda o, n: os.pread(fd, n, o), size)
        ovf = any(m.kind == "file" and m.name.lower().endswith(".ovf") for m in members)
        return "ova" if ovf else "tar"
    if _is_ovf(head):
        return "ovf"
    verdict = judge(head, size)
    if verdict is not None:
        offset, what = verdict
        raise ImageFormatError(path, "image", "header", offset, what)
    return "raw"


Opener = Callable[[Path, int], DiskImage]


def _opener(name: str) -> Opener | None:
    """The reader class (or factory) for a format that holds one disk, imported on first use."""
    if name == "raw":
        from imgpub.disk.raw import RawImage

        return RawImage
    if name == "qcow2":
        from imgpub.disk.qcow2 import Qcow2Image

        return Qcow2Image
    if name == "vmdk":
        from imgpub.disk.vmdk import open_vmdk

        return open_vmdk
    if name == "vhd":
        from imgpub.disk.vhd import VhdImage

        return VhdImage
    if name == "vhdx":
        from imgpub.disk.vhdx import VhdxImage

        return VhdxImage
    if name == "vdi":
        from imgpub.disk.vdi import VdiImage

        return VdiImage
    return None


def _open_content(path: Path, fd: int, fmt: str, member: Member, *, unpacked: bool = False) -> DiskImage:
    """Open `fd` (the file, or what its compression held) as `fmt` ('auto': by its structure)."""
    if fmt in ("auto", "raw", "tar") and is_tar_header(os.pread(fd, 512, 0)):
        name = detect_format(path, fd) if fmt == "auto" else "tar"  # a tar is unwrapped even if raw is forced
    else:
        name = detect_format(path, fd) if fmt in ("auto", *COMPRESSIONS) else fmt
    if unpacked and name in COMPRESSIONS:
        raise ImageFormatError(path, name, "stream", None, "is compressed twice; decompress it once first")
    if member is not None and name not in PACKAGES:
        raise ImageFormatError(
            path,
            name,
            "file",
            None,
            f"holds one disk; choosing a disk ({member!r}) applies to OVA and OVF only",
        )
    if name == "tar":
        from imgpub.disk.tarred import open_tar

        return open_tar(path, fd, forced=fmt == "raw")
    if name in PACKAGES:
        from imgpub.disk.ova import open_ova, open_ovf

        return (open_ova if name == "ova" else open_ovf)(path, fd, member)
    opener = _opener(name)
    if opener is None:
        raise ImageFormatError(path, name, "file", None, f"format {name!r} is not supported")
    return opener(path, fd)


def _open(path: Path, fd: int, fmt: str, member: Member) -> DiskImage:
    head = os.pread(fd, 8, 0)
    if any(head.startswith(magic) for magic in MAGICS):
        from imgpub.disk.compressed import open_compressed

        inner = "auto" if fmt in COMPRESSIONS else fmt
        return open_compressed(path, fd, lambda p, out: _open_content(p, out, inner, member, unpacked=True))
    return _open_content(path, fd, fmt, member)


def open_image(path: str | os.PathLike[str], fmt: str = "auto", *, member: Member = None) -> DiskImage:
    """Open `path` as a disk image. `fmt` forces a format; 'auto' detects it from the file's structure.

    `member` chooses the disk of an OVA/OVF (its index in OVF order, its file name or its OVF disk id);
    a package with several disks and no `member` raises an ImageFormatError that lists them."""
    p = Path(path)
    if "\0" in str(p):
        raise ImageFormatError(p, "image", "file", None, "the path holds a NUL byte")
    if fmt != "auto" and fmt not in FORMATS and fmt not in COMPRESSIONS:
        raise ImageFormatError(p, fmt, "file", None, f"format {fmt!r} is not supported")
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        raise ImageFormatError(p, "image", "file", None, "no such file") from None
    except IsADirectoryError:
        raise ImageFormatError(p, "image", "file", None, "is a directory, not a disk image") from None
    except PermissionError:
        raise ImageFormatError(p, "image", "file", None, "permission denied") from None
    except OSError as exc:
        raise ImageFormatError(p, "image", "file", None, f"cannot open: {exc.strerror}") from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):  # Linux opens directories read-only without complaint
            raise ImageFormatError(p, "image", "file", None, "is a directory, not a disk image")
        return _open(p, fd, fmt, member)
    except OSError as exc:  # EIO from a failing disk, /proc/self/mem, a vanished network file...
        os.close(fd)
        raise ImageFormatError(p, "image", "file", None, f"cannot read: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
