"""glibc allocator tuning for streaming big blocks through Python.

By default glibc hands freed memory back to the kernel as soon as more than about 1 MiB is free at
the top of a heap, so every new 512 KiB block faults its pages in again: on a 1.2 GiB qcow2 read
that is 0.5-0.7 s of system time, about a quarter of the whole job. Keeping freed memory (it is
reused by the next block, so the resident size stays at the working set, a few tens of MiB)
removes that cost. Process-wide, so the CLI calls it once at start-up; the library never does.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(*, mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Tell glibc malloc to serve blocks below `mmap_threshold` from its heaps and to keep up to
    `trim_threshold` bytes of freed memory. False (and nothing changed) on a non-glibc libc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
