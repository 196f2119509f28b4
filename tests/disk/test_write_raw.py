"""write_raw: byte-exact sparse output, holes kept, progress totals, atomic replacement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imaging import MiB, mixed_raw, pattern, qemu_img, sha256_file, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.raw import RawImage
from imgpub.disk.write_raw import GRAIN, data_ranges, write_raw


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.mark.parametrize("size", [64 * MiB, 64 * MiB + 3 * 512, 40 * MiB + 512 * 1024 + 512])
def test_output_is_byte_exact_and_sparse(tmp_path: Path, size: int) -> None:
    src = mixed_raw(tmp_path / "src.raw", size)
    dest = tmp_path / "out.raw"
    with open_image(src) as img:
        write_raw(img, dest)
        ranges = [(off, sum(p.nbytes for p in pieces)) for off, pieces in data_ranges(img)]
    assert dest.stat().st_size == size
    assert sha256_file(dest) == sha256_file(src)
    assert "identical" in qemu_img("compare", "-f", "raw", "-F", "raw", dest, src)
    # only the ranges are allocated, and the 1 MiB run of written zeros in mixed_raw is not among them
    written = sum(n for _, n in ranges)
    assert allocated(dest) <= written + 4096 * len(ranges)
    assert written < allocated(src) - MiB // 2


def test_all_holes_disk_gives_an_all_holes_file(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "empty.raw", 48 * MiB + 512, [])
    dest = tmp_path / "out.raw"
    with open_image(src, "raw") as img:
        write_raw(img, dest)
    assert dest.stat().st_size == 48 * MiB + 512
    assert allocated(dest) == 0


def test_progress_adds_up_to_the_allocated_bytes(tmp_path: Path) -> None:
    src = mixed_raw(tmp_path / "src.raw", 32 * MiB + 1024)
    steps: list[int] = []
    with open_image(src) as img:
        write_raw(img, tmp_path / "out.raw", on_progress=steps.append)
        assert sum(steps) == img.allocation.data_bytes
    assert all(s > 0 for s in steps) and len(steps) > 1


def test_data_ranges_coalesce_split_and_skip_zero_grains(tmp_path: Path) -> None:
    data = pattern(5 * MiB, 7)
    src = sparse_raw(
        tmp_path / "src.raw",
        16 * MiB,
        [(0, data), (2 * MiB, bytes(GRAIN)), (10 * MiB + 512, b"x")],
    )
    with open_image(src, "raw") as img:
        ranges = [(off, b"".join(p)) for off, p in data_ranges(img, max_len=2 * MiB)]
        for off, blob in ranges:
            assert 0 < len(blob) <= 2 * MiB
            assert blob == img.read(off, len(blob))
            for g in range(0, len(blob), GRAIN):
                assert blob[g : g + GRAIN] != bytes(len(blob[g : g + GRAIN]))
    assert [(off, len(b)) for off, b in ranges] == [
        (0, 2 * MiB),
        (2 * MiB + GRAIN, 2 * MiB),
        (4 * MiB + GRAIN, MiB - GRAIN),
        (10 * MiB, GRAIN),
    ]


class FailingImage(RawImage):
    def read(self, offset: int, length: int) -> bytes:
        if offset >= 2 * MiB:
            raise OSError(5, "Input/output error")
        return super().read(offset, length)


def test_failure_leaves_the_destination_and_no_temp_file(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "src.raw", 8 * MiB, [(0, pattern(4 * MiB, 1))])
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "disk.raw"
    dest.write_bytes(b"previous")
    fd = os.open(src, os.O_RDONLY)
    with FailingImage(src, fd) as img, pytest.raises(OSError, match="Input/output"):
        write_raw(img, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in out.iterdir()) == ["disk.raw"]
