"""Open an image by its magic bytes (never by its file name)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from imgpub.disk.errors import ImageFormatError
from imgpub.disk.image import DiskImage

FORMATS = ("raw", "qcow2", "vmdk", "vhd", "vhdx")


def detect_format(path: Path, fd: int) -> str:
    """Name of the format of the open file `fd`: one of FORMATS, or 'xz' / 'gzip' / 'zstd'."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, 512, 0)
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix"):
        return "vhd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if size >= 512 and os.pread(fd, 8, size - 512) == b"conectix":
        return "vhd"  # fixed VHD: footer only at the end
    if size == 0:
        raise ImageFormatError(path, "image", "file", None, "the file is empty")
    if size % 512 == 0:
        return "raw"
    raise ImageFormatError(
        path,
        "image",
        "header",
        0,
        f"no known magic (starts {head[:8].hex()}) and the size {size} is not a whole number of "
        "512-byte sectors, so it is not a raw disk either",
    )


Opener = Callable[[Path, int], DiskImage]


def _opener(name: str) -> Opener | None:
    """The reader class (or factory) for a detected format, imported on first use."""
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
    if name in ("xz", "gzip", "zstd"):
        from imgpub.disk.compressed import open_compressed

        return open_compressed
    return None


def open_image(path: str | os.PathLike[str], fmt: str = "auto") -> DiskImage:
    """Open `path` as a disk image. `fmt` forces a format; 'auto' detects it from magic bytes."""
    p = Path(path)
    if "\0" in str(p):
        raise ImageFormatError(p, "image", "file", None, "the path holds a NUL byte")
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
        detected = detect_format(p, fd)
        name = detected if fmt == "auto" else fmt
        opener = _opener(name)
        if opener is None:
            raise ImageFormatError(p, name, "file", None, f"format {name!r} is not supported")
        return opener(p, fd)
    except OSError as exc:  # EIO from a failing disk, /proc/self/mem, a vanished network file...
        os.close(fd)
        raise ImageFormatError(p, "image", "file", None, f"cannot read: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
