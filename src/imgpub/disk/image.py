"""The reader contract every format implements: virtual size, allocation map, positioned reads."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.zeros import is_zero

__all__ = ["DiskImage", "ImageFormatError", "UnsupportedImageError"]


class DiskImage(ABC):
    """An opened disk image. Readers parse metadata in `__init__`; guest data is read on demand.

    Subclasses set `virtual_size` and `allocation`, and implement `read`. They may override
    `blocks` to decode in parallel (compressed formats).
    """

    format: ClassVar[str]

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.file_size = os.fstat(fd).st_size
        self.virtual_size: int = 0
        self.allocation: AllocationMap = AllocationMap(0, ())

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes [offset, offset+length), clipped to the virtual size; holes read as zeros."""

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Guest bytes [offset, offset+len(buf)) into `buf`, holes as zeros; returns how many
        (fewer than len(buf) only at the end of the disk). Safe to call from several threads.

        Formats that can read straight into the buffer (no intermediate bytes) override this;
        writers then copy with one reused buffer per thread."""
        data = self.read(offset, len(buf))
        buf[: len(data)] = data
        return len(data)

    def blocks(self, block_size: int, *, skip_zero: bool = True) -> Iterator[tuple[int, bytes]]:
        """(index, data) for each `block_size` block that overlaps the allocation map, ascending.

        `data` is `block_size` bytes, except for the disk's last block when the virtual size is not
        a multiple. Blocks whose bytes are all zero are left out when `skip_zero` is set.
        """
        for index in self.allocation.blocks(block_size):
            data = self.read(index * block_size, block_size)
            if skip_zero and is_zero(data):
                continue
            yield index, data

    def info(self) -> dict[str, Any]:
        """Format-specific facts for `imgpub inspect` (cluster size, subformat, version...)."""
        return {}

    def pread(self, offset: int, length: int, structure: str) -> bytes:
        """Exactly `length` host bytes at `offset`, or an ImageFormatError naming `structure`."""
        if offset < 0 or offset + length > self.file_size:
            raise ImageFormatError(
                self.path,
                self.format,
                structure,
                offset,
                f"needs {length} bytes but the file ends at byte {self.file_size:#x} (truncated?)",
            )
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise ImageFormatError(self.path, self.format, structure, offset, "short read (truncated?)")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DiskImage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} virtual_size={self.virtual_size}>"
