"""The reader contract every format implements: virtual size, allocation map, positioned reads."""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.extents import AllocationMap
from imgpub.disk.zeros import is_zero

__all__ = ["DiskImage", "ImageFormatError", "UnsupportedImageError", "Window", "sparse_runs"]

Window = tuple[int, int]  # (offset, length) of the image's bytes inside a bigger file (a tar member)
ProgressFn = Callable[[int], None]


def sparse_runs(fd: int, size: int, base: int = 0) -> list[tuple[int, int]]:
    """Data runs of the file bytes [base, base+size) by SEEK_DATA/SEEK_HOLE, relative to `base`;
    the whole range if the filesystem cannot say."""
    runs: list[tuple[int, int]] = []
    pos, stop = base, base + size
    try:
        while pos < stop:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if start >= stop:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), stop)
            runs.append((start - base, end - start))
            pos = end
    except OSError:
        return [(0, size)] if size else []
    return runs


class DiskImage(ABC):
    """An opened disk image. Readers parse metadata in `__init__`; guest data is read on demand.

    Subclasses set `virtual_size` and `allocation`, and implement `read`. They may override
    `blocks` to decode in parallel (compressed formats). Host bytes are those of the file, or of
    `window` (offset, length) inside it: a disk stored in a tar is read where it lies, never copied.
    `format` names what was opened ("vmdk", or "ova/vmdk" for the disk of an OVA); `firmware` is
    the boot firmware the container declares ("uefi", "bios"; None when it says nothing), and
    `container` holds facts about what held the disk (compression, OVA/OVF) for `imgpub inspect`.
    `files` are every file the disk is read from (a descriptor and its extents, an OVF and its disk,
    a manifest): a cache of anything computed from the disk must change when any of them does.
    """

    format: str
    firmware: str | None = None

    def __init__(self, path: Path, fd: int, *, window: Window | None = None) -> None:
        self.path = path
        self.fd = fd
        self.base, self.file_size = window if window is not None else (0, os.fstat(fd).st_size)
        self.virtual_size: int = 0
        self.allocation: AllocationMap = AllocationMap(0, ())
        self.container: dict[str, Any] = {}
        self.files: tuple[Path, ...] = (path,)
        self.integrity: Callable[[ProgressFn | None], None] | None = None

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

    def check_integrity(self, on_progress: ProgressFn | None = None) -> None:
        """Verify the digests the container lists for the files this disk is read from (an OVA's
        manifest); `on_progress` gets the bytes hashed. A no-op for formats that carry none."""
        if self.integrity is not None:
            self.integrity(on_progress)

    def host_runs(self, size: int | None = None) -> list[tuple[int, int]]:
        """Data runs of the first `size` host bytes (all of them by default)."""
        return sparse_runs(self.fd, self.file_size if size is None else size, self.base)

    def host_read(self, offset: int, length: int) -> bytes:
        """Up to `length` host bytes at `offset`: fewer at the end of the file (or window)."""
        n = max(0, min(length, self.file_size - offset))
        return os.pread(self.fd, n, self.base + offset) if n > 0 else b""

    def host_readinto(self, buf: memoryview, offset: int) -> int:
        """Host bytes at `offset` into `buf`; returns how many (fewer at the end of the file)."""
        n = max(0, min(len(buf), self.file_size - offset))
        return os.preadv(self.fd, [buf[:n]], self.base + offset) if n > 0 else 0

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
        data = os.pread(self.fd, length, self.base + offset)
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
