"""deflate: one valid gzip member from parallel chunks, whatever the threads, level or chunking."""

from __future__ import annotations

import gzip
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging import MiB, pattern, text_like
from imgpub.disk import deflate
from imgpub.disk.deflate import backend, crc32_combine, gzip_chunks

DATA = pattern(MiB + 333, 1) + text_like(2 * MiB, 2) + bytes(MiB) + text_like(7777, 3)


def pieces(data: bytes, size: int) -> list[memoryview]:
    return [memoryview(data)[i : i + size] for i in range(0, len(data), size)]


def single_member(blob: bytes) -> bytes:
    d = zlib.decompressobj(31)
    out = d.decompress(blob)
    assert d.eof and d.unused_data == b""
    return out


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 9])
def test_output_is_one_gzip_member_of_the_input(threads: int, level: int) -> None:
    blob = b"".join(gzip_chunks(pieces(DATA, 100_001), level=level, threads=threads, chunk=256 * 1024))
    assert single_member(blob) == DATA
    assert gzip.decompress(blob) == DATA


def test_gzip_tool_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "x.gz"
    out.write_bytes(b"".join(gzip_chunks([DATA], threads=2, chunk=64 * 1024)))
    subprocess.run(["gzip", "-t", out], check=True)
    assert subprocess.run(["gzip", "-dc", out], check=True, capture_output=True).stdout == DATA


@pytest.mark.parametrize("data", [b"", b"x", bytes(5)])
def test_tiny_inputs(data: bytes) -> None:
    assert single_member(b"".join(gzip_chunks([data, b""], threads=2))) == data


def test_level_1_compresses_text_and_keeps_random_data_near_its_size() -> None:
    text = text_like(2 * MiB, 5)
    assert len(b"".join(gzip_chunks([text]))) < len(text) // 2
    rnd = pattern(2 * MiB, 6)
    assert len(b"".join(gzip_chunks([rnd]))) < len(rnd) * 1.01


def test_input_is_consumed_with_bounded_lookahead() -> None:
    produced = 0

    def source() -> Iterator[bytes]:
        nonlocal produced
        for i in range(64):
            produced += 1
            yield pattern(64 * 1024, i)

    stream = gzip_chunks(source(), threads=2, chunk=64 * 1024)
    next(stream)  # the header
    next(stream)  # the first compressed chunk
    assert produced <= 2 * 2 + 3
    rest = b"".join(stream)
    assert produced == 64 and rest


def test_backends() -> None:
    assert backend(1).__name__ == "isal.isal_zlib"
    assert backend(6).__name__ == "zlib_ng.zlib_ng"
    with pytest.raises(ValueError, match="0-9"):
        backend(10)


def test_crc32_combine_matches_whole_crcs() -> None:
    a, b = os.urandom(1000), pattern(70_000, 9)
    want = zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == want
    assert deflate._crc32_combine_py(zlib.crc32(a), zlib.crc32(b), len(b)) == want
    assert deflate._crc32_combine_py(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)
    assert deflate._crc32_combine_py(123, 456, 1 << 40) == crc32_combine(123, 456, 1 << 40)
