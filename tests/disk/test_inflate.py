"""Bounded inflate: exact lengths or InflateError, never more output than asked for."""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard

from imaging import pattern, text_like
from imgpub.disk.inflate import BACKEND, InflateError, inflate_raw, inflate_zlib, zstd_decompress

DATA = pattern(3000, 1) + text_like(62536, 2)


def raw_deflate(data: bytes, wbits: int = -12) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def test_backend_is_a_fast_one() -> None:
    assert BACKEND in ("isal", "zlib-ng")


def test_raw_deflate_with_trailing_bytes_and_memoryview() -> None:
    packed = raw_deflate(DATA)
    assert inflate_raw(packed + b"next cluster", len(DATA), -12) == DATA
    assert inflate_raw(memoryview(packed), len(DATA), -12) == DATA
    assert inflate_raw(raw_deflate(DATA, -15), len(DATA)) == DATA


def test_zlib_wrapped() -> None:
    assert inflate_zlib(zlib.compress(DATA), len(DATA)) == DATA


@pytest.mark.parametrize(
    ("packed", "out_len", "words"),
    [
        (raw_deflate(DATA)[:-40], len(DATA), "expected 65536"),
        (raw_deflate(DATA), len(DATA) + 1, "expected 65537"),
        (raw_deflate(DATA), len(DATA) - 1, "more than the expected"),
        (b"\xff" * 64, 100, "invalid deflate data"),
    ],
)
def test_wrong_lengths_and_garbage(packed: bytes, out_len: int, words: str) -> None:
    with pytest.raises(InflateError, match=words):
        inflate_raw(packed, out_len, -12)


def test_bomb_is_capped() -> None:
    bomb = raw_deflate(bytes(64 << 20), -15)  # 64 MiB of zeros in about 64 KiB
    with pytest.raises(InflateError, match="more than the expected 65536"):
        inflate_raw(bomb, 65536)


def test_zstd() -> None:
    frame = zstandard.ZstdCompressor().compress(DATA)
    assert zstd_decompress(frame + b"junk", len(DATA)) == DATA
    with pytest.raises(InflateError, match="decodes to"):
        zstd_decompress(frame[: len(frame) // 2], len(DATA))
    with pytest.raises(InflateError, match="decodes to"):
        zstd_decompress(frame, len(DATA) - 1)
    with pytest.raises(InflateError, match="invalid zstd data"):
        zstd_decompress(b"not zstd at all", 10)


def test_threads_share_nothing() -> None:
    frames = [zstandard.ZstdCompressor().compress(DATA[i:] + DATA[:i]) for i in range(0, 4000, 100)]
    deflated = [raw_deflate(DATA[i:] + DATA[:i]) for i in range(0, 4000, 100)]
    with ThreadPoolExecutor(4) as pool:
        z = list(pool.map(lambda f: zstd_decompress(f, len(DATA)), frames))
        d = list(pool.map(lambda f: inflate_raw(f, len(DATA), -12), deflated))
    expected = [DATA[i:] + DATA[:i] for i in range(0, 4000, 100)]
    assert z == expected and d == expected
