"""Files a descriptor names (VMDK extents, an OVF's disks): resolved next to it, never outside."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from imgpub.disk.errors import ImageFormatError


def sibling_path(descriptor: Path, name: str, fmt: str, offset: int | None, what: str) -> Path:
    """`name` in the folder of `descriptor`: absolute paths, `..`, backslashes and symbolic links
    that lead out of the folder are refused."""
    folder = descriptor.parent.resolve()
    rel = Path(name)
    if not name or "\0" in name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise ImageFormatError(
            descriptor,
            fmt,
            "descriptor",
            offset,
            f"{what} path {name!r} must be a plain file name next to the descriptor",
        )
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder):
        raise ImageFormatError(
            descriptor, fmt, "descriptor", offset, f"{what} path {name!r} leaves the folder {folder}"
        )
    return target


def open_sibling(descriptor: Path, name: str, fmt: str, offset: int | None, what: str) -> tuple[Path, int]:
    """(path, read-only fd) of the regular file `name` next to `descriptor`."""
    path = sibling_path(descriptor, name, fmt, offset, what)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ImageFormatError(
            descriptor, fmt, "descriptor", offset, f"cannot open {what} {name!r}: {exc.strerror}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageFormatError(
            descriptor, fmt, "descriptor", offset, f"{what} {name!r} is not a regular file"
        )
    return path, fd
