"""Raw reader: holes from SEEK_DATA/SEEK_HOLE, reads clipped to the disk, zero blocks never emitted."""

from __future__ import annotations

import os
from pathlib import Path

from imaging import MiB, pattern, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.raw import RawImage, sparse_runs


def test_allocation_follows_the_written_ranges(tmp_path: Path) -> None:
    writes = [(0, pattern(5000, 1)), (3 * MiB, pattern(MiB, 2)), (9 * MiB - 4096, pattern(4096, 3))]
    path = sparse_raw(tmp_path / "d.raw", 9 * MiB, writes)
    with open_image(path, "raw") as img:
        assert isinstance(img, RawImage)
        runs = img.allocation.data_runs
        for off, data in writes:
            assert any(a <= off and off + len(data) <= a + n for a, n in runs)
        assert img.allocation.data_bytes < 2 * MiB
        content = path.read_bytes()
        assert img.read(0, img.virtual_size) == content
        assert img.read(2 * MiB, 100) == bytes(100)  # a hole


def test_reads_are_clipped_to_the_disk(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "d.raw", MiB, [(MiB - 512, b"\x07" * 512)])
    with open_image(path, "raw") as img:
        assert img.read(MiB - 4, 100) == b"\x07" * 4
        assert img.read(MiB, 10) == b""
        assert img.read(2 * MiB, 10) == b""


def test_virtual_size_larger_than_the_file_reads_zeros(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "d.raw", MiB, [(0, b"\x01" * 512)])
    fd = os.open(path, os.O_RDONLY)
    with RawImage(path, fd, virtual_size=2 * MiB) as img:
        assert img.virtual_size == 2 * MiB
        assert img.read(MiB - 2, 4) == bytes(4)
        assert img.read(0, 2) == b"\x01\x01"


def test_written_zeros_are_data_runs_but_never_blocks(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "d.raw", 8 * MiB, [(MiB, bytes(2 * MiB)), (6 * MiB, b"\x09" * 4096)])
    with open_image(path, "raw") as img:
        assert img.allocation.data_bytes >= 2 * MiB  # the filesystem reports the zeros as data
        blocks = list(img.blocks(512 * 1024))
        assert [i for i, _ in blocks] == [12]
        assert blocks[0][1][:4096] == b"\x09" * 4096 and len(blocks[0][1]) == 512 * 1024
        assert len(list(img.blocks(512 * 1024, skip_zero=False))) == 5


def test_preallocated_extents_are_only_a_hint(tmp_path: Path) -> None:
    """ext4 unwritten extents may show up as data (SEEK_DATA is a hint); they read as zeros."""
    path = tmp_path / "prealloc.raw"
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
        os.posix_fallocate(f.fileno(), 4 * MiB, 4 * MiB)
        f.seek(12 * MiB)
        f.write(b"\x05" * 512)
    path.read_bytes()  # bring the unwritten pages into the page cache, as a long-running system would
    with open_image(path, "raw") as img:
        assert [i for i, _ in img.blocks(MiB)] == [12]


def test_dense_file(tmp_path: Path) -> None:
    data = pattern(3 * MiB + 512, 4)
    path = tmp_path / "dense.raw"
    path.write_bytes(data)
    with open_image(path, "raw") as img:
        assert img.allocation.data_runs == ((0, len(data)),)
        got = b"".join(b for _, b in img.blocks(MiB))
        assert got == data


def test_sparse_runs_of_an_all_hole_file(tmp_path: Path) -> None:
    path = sparse_raw(tmp_path / "holes.raw", 64 * MiB, [])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert sparse_runs(fd, 64 * MiB) == []
        assert sparse_runs(fd, 0) == []
    finally:
        os.close(fd)
