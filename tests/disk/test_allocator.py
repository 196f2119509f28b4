"""Allocator tuning: accepted by glibc, and reading still works with it (RSS stays the working set)."""

from __future__ import annotations

import resource
from pathlib import Path

from imaging import MiB, convert, pattern, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.allocator import keep_freed_memory


def test_glibc_accepts_the_tuning(tmp_path: Path) -> None:
    assert keep_freed_memory() is True
    raw = sparse_raw(tmp_path / "d.raw", 64 * MiB, [(i * 4 * MiB, pattern(2 * MiB, i)) for i in range(16)])
    img = convert(raw, tmp_path / "d.qcow2", "qcow2", "-c", "cluster_size=64k", src_fmt="raw")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_image(img) as reader:
        got = sum(len(b) for _, b in reader.blocks(512 * 1024))
    assert got == 32 * MiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: < 64 MiB
