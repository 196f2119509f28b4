"""Errors of the disk engine. All are bad input (exit code 2 at the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class DiskError(Exception):
    exit_code: ClassVar[int] = 2


class ImageFormatError(DiskError):
    """A structure of the image is invalid: names the format, the structure and the byte offset."""

    def __init__(self, path: Path | str, fmt: str, structure: str, offset: int | None, what: str) -> None:
        at = f" at byte {offset:#x}" if offset is not None else ""
        super().__init__(f"{path}: {fmt} {structure}{at}: {what}")
        self.path, self.fmt, self.structure, self.offset, self.what = path, fmt, structure, offset, what


class UnsupportedImageError(ImageFormatError):
    """A valid image that uses a feature imgpub refuses to read; `what` says what to do instead."""


def human(n: int | None) -> str:
    """A size for a one-line message: "20.0 GiB", "512.0 KiB", "6 bytes"."""
    if n is None:
        return "size unknown"
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"
