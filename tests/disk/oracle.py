"""qemu-img as the oracle for readers: guest bytes, virtual size and allocation must agree with it."""

from __future__ import annotations

import json
import random
from pathlib import Path

from imaging import qemu_img
from imgpub.disk import DiskImage, open_image


def byte_range(path: Path, fmt: str, offset: int, size: int) -> str:
    """A qemu filename for the `fmt` image stored at [offset, offset+size) of `path` (a tar member):
    qemu reads the same bytes imgpub does, without extracting them."""
    spec = {
        "driver": fmt,
        "file": {
            "driver": "raw",
            "offset": offset,
            "size": size,
            "file": {"driver": "file", "filename": str(path)},
        },
    }
    return "json:" + json.dumps(spec)


def qemu_info_size(path: Path | str, fmt: str) -> int:
    args = (
        ("info", "--output=json", path)
        if str(path).startswith("json:")
        else ("info", "--output=json", "-f", fmt, path)
    )
    return int(json.loads(qemu_img(*args))["virtual-size"])


def qemu_data_runs(path: Path | str, fmt: str) -> list[tuple[int, int]]:
    """qemu's data ranges as (start, end), touching ranges merged."""
    spec = str(path).startswith("json:")
    recs = json.loads(qemu_img("map", "--output=json", *(() if spec else ("-f", fmt)), path))
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


def assert_matches_qemu(
    path: Path,
    fmt: str,
    tmp: Path,
    cls: type[DiskImage],
    *,
    qemu_path: Path | str | None = None,
    open_as: str = "auto",
    member: str | int | None = None,
) -> None:
    """Byte-identical guest data (read, blocks, random reads), qemu's size, and a map that is no larger
    than qemu's data ranges yet covers every non-zero byte. `qemu_path` is what qemu reads when it is
    not `path` itself (a byte_range of a package, or the disk an OVF names)."""
    theirs = path if qemu_path is None else qemu_path
    spec = str(theirs).startswith("json:")
    ref_path = tmp / f"{path.name}.{member}.ref.raw"
    qemu_img("convert", *(() if spec else ("-f", fmt)), "-O", "raw", theirs, ref_path)
    ref = ref_path.read_bytes()
    with open_image(path, open_as, member=member) as img:
        assert isinstance(img, cls)
        assert img.virtual_size == len(ref) == qemu_info_size(theirs, fmt)
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
        qemu_runs = qemu_data_runs(theirs, fmt)
        for a, n in img.allocation.data_runs:
            assert any(s <= a and a + n <= e for s, e in qemu_runs), (a, n, qemu_runs)
        for ext in img.allocation.extents():
            if not ext.data:
                assert not any(ref[ext.offset : ext.end])
