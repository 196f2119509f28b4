"""Mutated headers and tables of small real VMDK, VHD and VHDX images: only DiskError is ever raised,
quickly. Checksums are optionally recomputed after mutating, so the fuzzer gets past them.

Inputs that once crashed a reader are kept in tests/disk/corpus/ (vmdk_*, vhd_*, vhdx_*) and replayed.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk.vmdk_stream import write_vmware_stream
from imaging import MiB, convert, pattern, sparse_raw, text_like
from imgpub.disk import DiskImage
from imgpub.disk.errors import DiskError
from imgpub.disk.partitions import inspect_partitions
from imgpub.disk.vhd import VhdImage, vhd_checksum
from imgpub.disk.vhdx import VhdxImage, crc32c
from imgpub.disk.vmdk import open_vmdk

CORPUS = Path(__file__).parent / "corpus"
KiB = 1024
INTERESTING = [
    0,
    1,
    2,
    3,
    6,
    7,
    8,
    63,
    64,
    127,
    128,
    511,
    512,
    4096,
    65536,
    1 << 20,
    1 << 31,
    1 << 32,
    1 << 44,
    1 << 62,
    1 << 63,
    2**64 - 1,
    0xFFFFFFFF,
]


def _u32s(data: bytes, off: int, n: int, endian: str = "<") -> list[int]:
    n = max(0, min(n, (len(data) - off) // 4))
    return list(struct.unpack_from(f"{endian}{n}I", data, off)) if off >= 0 else []


def _vmdk_hot(data: bytes) -> list[int]:
    hot = [*range(0, 80, 4), 12, 20, 28, 36, 44, 48, 56, 64, 72, 77]
    hot += range(512, 1024, 16)  # the descriptor text
    gd_sec = struct.unpack_from("<Q", data, 56)[0]
    if gd_sec == 2**64 - 1:
        hot += range(len(data) - 1536, len(data), 4)
        gd_sec = struct.unpack_from("<Q", data, len(data) - 1024 + 56)[0]
    gd = gd_sec * 512
    for i, gt in enumerate(_u32s(data, gd, 8)):
        hot.append(gd + 4 * i)
        hot += [gt * 512 + 4 * j for j in range(32)]
        hot += [e * 512 + k for e in _u32s(data, gt * 512, 8) if e > 1 for k in (0, 8, 12, 14, 40)]
    return hot


def _vhd_hot(data: bytes) -> list[int]:
    end = len(data) - 512
    hot = [end + k for k in range(0, 88, 4)]
    if data[:8] == b"conectix":
        hot += range(0, 88, 4)
        dyn = struct.unpack_from(">Q", data, 16)[0]
        hot += [dyn + k for k in range(0, 40, 4)]
        bat = struct.unpack_from(">Q", data, dyn + 16)[0]
        hot += [bat + 4 * i for i in range(16)]
    return hot


def _vhdx_hot(data: bytes) -> list[int]:
    hot = [h + k for h in (64 * KiB, 128 * KiB) for k in range(0, 80, 4)]
    hot += [r + k for r in (192 * KiB, 256 * KiB) for k in range(0, 112, 4)]
    count = struct.unpack_from("<I", data, 192 * KiB + 8)[0]
    for k in range(min(count, 4)):
        off = struct.unpack_from("<Q", data, 192 * KiB + 16 + 32 * k + 16)[0]
        hot += [off + j for j in range(0, 256, 4)] + [off + 64 * KiB + j for j in range(0, 64, 4)]
    return hot


def _fix_vhd(buf: bytearray) -> None:
    for where in (0, len(buf) - 512):
        if len(buf) >= 512 and buf[where : where + 8] == b"conectix":
            struct.pack_into(">I", buf, where + 64, vhd_checksum(bytes(buf[where : where + 512]), 64))
    if buf[:8] == b"conectix":
        dyn = struct.unpack_from(">Q", buf, 16)[0]
        if dyn + 1024 <= len(buf):
            struct.pack_into(">I", buf, dyn + 36, vhd_checksum(bytes(buf[dyn : dyn + 1024]), 36))


CHECKSUMMED = ((64 * KiB, 4 * KiB), (128 * KiB, 4 * KiB), (192 * KiB, 64 * KiB), (256 * KiB, 64 * KiB))


def _fix_vhdx(buf: bytearray) -> None:
    for where, size in (
        (64 * KiB, 4 * KiB),
        (128 * KiB, 4 * KiB),
        (192 * KiB, 64 * KiB),
        (256 * KiB, 64 * KiB),
    ):
        if where + size <= len(buf):
            buf[where + 4 : where + 8] = bytes(4)
            struct.pack_into("<I", buf, where + 4, crc32c(bytes(buf[where : where + size])))


Opener = Callable[[Path, int], DiskImage]
FORMATS: dict[str, tuple[Opener, str, Callable[[bytes], list[int]], Callable[[bytearray], None] | None]] = {
    "vmdk": (open_vmdk, "<", _vmdk_hot, None),
    "vhd": (VhdImage, ">", _vhd_hot, _fix_vhd),
    "vhdx": (VhdxImage, "<", _vhdx_hot, _fix_vhdx),
}
SEEDS = {
    "vmdk_sparse": ("vmdk", ["subformat=monolithicSparse"]),
    "vmdk_stream": ("vmdk", ["subformat=streamOptimized"]),
    "vmdk_vmware": ("vmdk", []),
    "vhd_dynamic": ("vpc", ["subformat=dynamic"]),
    "vhd_fixed": ("vpc", ["subformat=fixed", "force_size=on"]),
    "vhdx_dynamic": ("vhdx", ["block_size=1M", "log_size=1M"]),
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, list[int]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    raw = sparse_raw(
        tmp / "src.raw",
        2 * MiB + 1024,
        [
            (0, pattern(6000, 1)),
            (70_000, text_like(20_000, 2)),
            (MiB, bytes(8192)),
            (2 * MiB, text_like(1024, 3)),
        ],
    )
    out = {}
    for name, (fmt, options) in SEEDS.items():
        if name == "vmdk_vmware":
            data = write_vmware_stream(tmp / "w.vmdk", raw.read_bytes(), grain=16).read_bytes()
        else:
            data = convert(raw, tmp / name, fmt, *options, src_fmt="raw").read_bytes()
        out[name] = (data, [h for h in FORMATS[name.split("_")[0]][2](data) if 0 <= h < len(data)])
    return out


def exercise(path: Path, fmt: str) -> bool:
    """Open and read everything; only DiskError may escape. True if the reader refused the input."""
    fd = os.open(path, os.O_RDONLY)
    try:
        img = FORMATS[fmt][0](path, fd)
    except DiskError:
        os.close(fd)
        return True
    with img:
        try:
            if img.virtual_size <= 64 * MiB:
                img.read(0, img.virtual_size)
            for _ in img.blocks(256 * 1024):
                pass
            img.read(img.virtual_size // 2, 70_000)
            inspect_partitions(img)
        except DiskError:
            return True
    return False


@st.composite
def mutation(draw: st.DrawFn, data: bytes, hot: list[int], endian: str) -> tuple[bytes, int | None, bool]:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        width = draw(st.sampled_from([1, 2, 4, 8]))
        off = draw(st.one_of(st.sampled_from(hot), st.integers(0, len(buf) - 1)))
        if off + width > len(buf):
            continue
        value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1)))
        old = int.from_bytes(buf[off : off + width], "little" if endian == "<" else "big")
        value = draw(st.sampled_from([value, old ^ value, old + 1, old - 1, old + 512, old * 2, 0]))
        order = "little" if endian == "<" else "big"
        buf[off : off + width] = (value % (1 << (8 * width))).to_bytes(width, order)
    cut = draw(st.one_of(st.none(), st.integers(0, len(buf))))
    return bytes(buf), cut, draw(st.booleans())


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_images_raise_only_disk_errors(
    seeds: dict[str, tuple[bytes, list[int]]], tmp_path: Path, name: str
) -> None:
    data, hot = seeds[name]
    fmt = name.split("_")[0]
    _, endian, _, fix = FORMATS[fmt]

    @settings(
        max_examples=60 if fmt == "vhdx" else 120,
        deadline=3000,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutation(data, hot, endian))
    def run(case: tuple[bytes, int | None, bool]) -> None:
        buf, cut, fix_checksums = case
        mutated = bytearray(buf)
        if fix_checksums and fix is not None:
            fix(mutated)
        path = tmp_path / f"m.{fmt}"
        path.write_bytes(mutated if cut is None else mutated[:cut])
        try:
            exercise(path, fmt)
        except Exception:
            CORPUS.mkdir(exist_ok=True)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            (CORPUS / f"{fmt}_{digest}.bin").write_bytes(path.read_bytes())
            raise

    run()


@pytest.mark.parametrize("case", sorted(p.name for f in FORMATS for p in CORPUS.glob(f"{f}_*.bin")))
def test_corpus_regressions(case: str) -> None:
    """Hazards kept by name (shared tables, a deflate bomb, ...) must be refused; crash inputs saved by
    the fuzzer (named by digest) must only not crash."""
    refused = exercise(CORPUS / case, case.split("_")[0])
    assert refused or re.fullmatch(r"[a-z]+_[0-9a-f]{12}\.bin", case)
