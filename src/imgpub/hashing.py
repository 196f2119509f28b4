"""sha256 of files that may be sparse: holes are hashed from a zero buffer, never read from disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgpub.disk.zeros import zeros

__all__ = ["Hasher", "file_hasher", "file_sha256", "hash_zeros"]

_CHUNK = 4 << 20
Hasher = Any  # hashlib's sha256 object (its class is private)


def file_sha256(path: Path, on_progress: Callable[[int], None] | None = None) -> str:
    return str(file_hasher(path, on_progress).hexdigest())


def hash_zeros(h: Hasher, n: int, on_progress: Callable[[int], None] | None = None) -> None:
    while n > 0:
        step = min(_CHUNK, n)
        h.update(zeros(step))
        if on_progress is not None:
            on_progress(step)
        n -= step


def file_hasher(path: Path, on_progress: Callable[[int], None] | None = None) -> Hasher:
    """The sha256 state after a (possibly sparse) file; `on_progress` gets every byte hashed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                data_at = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                data_at = size
            if pos < data_at:  # a hole
                hash_zeros(h, data_at - pos, on_progress)
                pos = data_at
            if pos >= size:
                break
            try:
                hole_at = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
            except OSError:
                hole_at = size
            while pos < hole_at:
                chunk = os.pread(fd, min(_CHUNK, hole_at - pos), pos)
                if not chunk:
                    raise OSError(f"{path}: short read at byte {pos}")
                h.update(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
                pos += len(chunk)
    return h
