"""qemu-img as the oracle for readers: guest bytes, virtual size and allocation must agree with it."""

from __future__ import annotations

import json
import random
from pathlib import Path

from imaging import qemu_img, to_raw
from imgpub.disk import DiskImage, open_image


def qemu_info_size(path: Path, fmt: str) -> int:
    return int(json.loads(qemu_img("info", "--output=json", "-f", fmt, path))["virtual-size"])


def qemu_data_runs(path: Path, fmt: str) -> list[tuple[int, int]]:
    """qemu's data ranges as (start, end), touching ranges merged."""
    recs = json.loads(qemu_img("map", "--output=json", "-f", fmt, path))
    runs: list[tuple[int, int]] = []
    for r in recs:
        if not r["data"]:
            continue
        start, end = int(r["start"]), int(r["start"]) + int(r["length"])
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def assert_matches_qemu(path: Path, fmt: str, tmp: Path, cls: type[DiskImage]) -> None:
    """Byte-identical guest data (read, blocks, random reads), qemu's size, and a map that is no larger
    than qemu's data ranges yet covers every non-zero byte."""
    ref = to_raw(path, tmp / f"{path.name}.ref.raw", src_fmt=fmt).read_bytes()
    with open_image(path) as img:
        assert isinstance(img, cls)
        assert img.virtual_size == len(ref) == qemu_info_size(path, fmt)
        assert img.read(0, img.virtual_size) == ref
        for bs in (512 * 1024, 3 * 65536, 4096):
            got = bytearray(len(ref))
            indexes = []
            for index, block in img.blocks(bs):
                assert block == ref[index * bs : index * bs + bs]
                assert any(block)
                got[index * bs : index * bs + len(block)] = block
                indexes.append(index)
            assert got == ref
            assert indexes == sorted(set(indexes))
        unskipped = [i for i, _ in img.blocks(1 << 20, skip_zero=False)]
        assert unskipped == list(img.allocation.blocks(1 << 20))
        rnd = random.Random(path.name)
        for _ in range(40):
            off = rnd.randrange(len(ref))
            n = rnd.randrange(1, 300_000)
            assert img.read(off, n) == ref[off : off + n]
        qemu_runs = qemu_data_runs(path, fmt)
        for a, n in img.allocation.data_runs:
            assert any(s <= a and a + n <= e for s, e in qemu_runs), (a, n, qemu_runs)
        for ext in img.allocation.extents():
            if not ext.data:
                assert not any(ref[ext.offset : ext.end])
