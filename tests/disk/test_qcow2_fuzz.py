"""Mutated headers and tables of small real qcow2 images: only DiskError is ever raised, quickly.

Inputs that once crashed the reader, or that guard a past hazard (a deflate bomb in a 4 KiB cluster,
every L1 entry pointing at one L2 table, an L2 table that is the L1 table), are kept in
tests/disk/corpus/ and replayed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaging import MiB, convert, pattern, sparse_raw, text_like
from imgpub.disk.errors import DiskError
from imgpub.disk.qcow2 import Qcow2Image

CORPUS = Path(__file__).parent / "corpus"
WIDTHS = {1: ">B", 4: ">I", 8: ">Q"}
INTERESTING = [
    0,
    1,
    2,
    8,
    9,
    16,
    21,
    22,
    63,
    64,
    512,
    4096,
    65536,
    1 << 31,
    1 << 32,
    1 << 62,
    1 << 63,
    2**64 - 1,
]
OPTIONS = {
    "c4k": ["cluster_size=4096"],
    "c512": ["cluster_size=512"],
    "c4k-deflate": ["-c", "cluster_size=4096"],
    "c512-zstd": ["-c", "compression_type=zstd", "cluster_size=512"],
    "extl2-16k": ["extended_l2=on", "cluster_size=16k"],
    "v2-c1k": ["compat=0.10", "cluster_size=1024"],
}


def _hot_offsets(data: bytes) -> list[int]:
    """Header fields, L1 entries and the first L2 entries: where a mutation matters most."""
    hot = list(range(0, 112, 4))
    l1 = struct.unpack_from(">Q", data, 40)[0]
    l1_size = struct.unpack_from(">I", data, 36)[0]
    for i in range(min(l1_size, 64)):
        hot.append(l1 + 8 * i)
        l2 = struct.unpack_from(">Q", data, l1 + 8 * i)[0] & 0x00FF_FFFF_FFFF_FE00
        if l2:
            hot += [l2 + 8 * j for j in range(64)]
    return [h for h in hot if h < len(data)]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, list[int]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    raw = sparse_raw(
        tmp / "src.raw",
        2 * MiB + 1024,
        [
            (0, pattern(6000, 1)),
            (40_000, text_like(20_000, 2)),
            (MiB, bytes(8192)),
            (2 * MiB, text_like(1024, 3)),
        ],
    )
    out = {}
    for name, options in OPTIONS.items():
        data = convert(raw, tmp / f"{name}.qcow2", "qcow2", *options, src_fmt="raw").read_bytes()
        out[name] = (data, _hot_offsets(data))
    return out


def exercise(path: Path) -> None:
    """Open and read everything; only DiskError may escape."""
    fd = os.open(path, os.O_RDONLY)
    try:
        img = Qcow2Image(path, fd)
    except DiskError:
        os.close(fd)
        return
    with img:
        try:
            if img.virtual_size <= 64 * MiB:
                img.read(0, img.virtual_size)
            for _ in img.blocks(256 * 1024):
                pass
            img.read(img.virtual_size // 2, 70_000)
        except DiskError:
            pass


@st.composite
def mutation(draw: st.DrawFn, data: bytes, hot: list[int]) -> tuple[bytes, int | None]:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        width = draw(st.sampled_from(sorted(WIDTHS)))
        off = draw(st.one_of(st.sampled_from(hot), st.integers(0, len(buf) - 1)))
        if off + width > len(buf):
            continue
        value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1)))
        old = int.from_bytes(buf[off : off + width], "big")
        value = draw(st.sampled_from([value, old ^ value, old + 512, old | 1 << 63, old | 1 << 62, 0]))
        struct.pack_into(WIDTHS[width], buf, off, value % (1 << (8 * width)))
    cut = draw(st.one_of(st.none(), st.integers(0, len(buf))))
    return bytes(buf), cut


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_mutated_images_raise_only_disk_errors(
    seeds: dict[str, tuple[bytes, list[int]]], tmp_path: Path, name: str
) -> None:
    data, hot = seeds[name]

    @settings(
        max_examples=150,
        deadline=2000,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutation(data, hot))
    def run(case: tuple[bytes, int | None]) -> None:
        buf, cut = case
        path = tmp_path / "m.qcow2"
        path.write_bytes(buf if cut is None else buf[:cut])
        try:
            exercise(path)
        except Exception:
            CORPUS.mkdir(exist_ok=True)
            (CORPUS / f"qcow2-{name}-{hashlib.sha256(buf).hexdigest()[:12]}.bin").write_bytes(
                path.read_bytes()
            )
            raise

    run()


@pytest.mark.parametrize("case", sorted(p.name for p in CORPUS.glob("qcow2-*.bin")))
def test_corpus_regressions(tmp_path: Path, case: str) -> None:
    exercise(CORPUS / case)
