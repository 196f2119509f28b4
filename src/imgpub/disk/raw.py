"""Raw images: the allocation map comes from SEEK_DATA/SEEK_HOLE, so holes are never read."""

from __future__ import annotations

from pathlib import Path

from imgpub.disk.extents import AllocationMap
from imgpub.disk.image import DiskImage, Window, sparse_runs

__all__ = ["RawImage", "sparse_runs"]


class RawImage(DiskImage):
    format = "raw"

    def __init__(
        self, path: Path, fd: int, *, virtual_size: int | None = None, window: Window | None = None
    ) -> None:
        super().__init__(path, fd, window=window)
        self.virtual_size = self.file_size if virtual_size is None else virtual_size
        self.allocation = AllocationMap.from_runs(self.virtual_size, self.host_runs())

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.virtual_size - offset))
        data = self.host_read(offset, length)
        if len(data) < length:
            data += bytes(length - len(data))
        return data
