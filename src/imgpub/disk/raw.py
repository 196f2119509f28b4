"""Raw images: the allocation map comes from SEEK_DATA/SEEK_HOLE, so holes are never read."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage


def sparse_runs(fd: int, size: int) -> list[tuple[int, int]]:
    """Data runs of a file by SEEK_DATA/SEEK_HOLE; the whole file if the filesystem cannot say."""
    runs: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            runs.append((start, end - start))
            pos = end
    except OSError:
        return [(0, size)] if size else []
    return runs


class RawImage(DiskImage):
    format = "raw"

    def __init__(self, path: Path, fd: int, *, virtual_size: int | None = None) -> None:
        super().__init__(path, fd)
        self.virtual_size = self.file_size if virtual_size is None else virtual_size
        self.allocation = AllocationMap.from_runs(self.virtual_size, sparse_runs(fd, self.file_size))

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.virtual_size - offset))
        data = os.pread(self.fd, length, offset)
        if len(data) < length:
            data += bytes(length - len(data))
        return data
