"""Compressed raw disks: exact content, sparse temp file in $TMPDIR gone on close, clear errors; what
the compression holds is opened by its structure (a tarred disk, an image, or refused)."""

from __future__ import annotations

import gzip
import lzma
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from imaging import MiB, convert, mbr, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.compressed import check_zstd_frames, open_compressed
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.qcow2 import Qcow2Image
from imgpub.disk.raw import RawImage

SIZE = 24 * MiB + 1024


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = sparse_raw(
        tmp_path_factory.mktemp("cmp") / "d.raw",
        SIZE,
        [
            (0, mbr(1) + pattern(300_000 - 512, 1)),
            (5 * MiB + 512, text_like(2 * MiB, 2)),
            (12 * MiB, bytes(MiB)),
            (SIZE - 512, pattern(512, 3)),
        ],
    )
    return path.read_bytes()


def _zstd_frames(data: bytes) -> bytes:
    """Two frames, the second without a content size (as a streaming compressor writes)."""
    half = len(data) // 2
    first = zstandard.ZstdCompressor(level=1, threads=0).compress(data[:half])
    cobj = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
    return first + cobj.compress(data[half:]) + cobj.flush()


PIGZ = ["pigz", "-1", "-p", "2", "-b", "512", "-c"]
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "xz": lambda d: lzma.compress(d, preset=0),
    "xz-2-streams": lambda d: lzma.compress(d[: 3 * MiB], preset=0) + lzma.compress(d[3 * MiB :], preset=0),
    "gzip": lambda d: gzip.compress(d, compresslevel=1),
    "gzip-pigz": lambda d: subprocess.run(PIGZ, input=d, capture_output=True, check=True).stdout,
    "gzip-padded": lambda d: gzip.compress(d, compresslevel=1) + bytes(4096),
    "zstd": lambda d: zstandard.ZstdCompressor(level=1).compress(d),
    "zstd-frames": _zstd_frames,
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_content_and_sparseness(
    disk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    src = tmp_path / "d.raw.x"
    src.write_bytes(COMPRESSORS[kind](disk))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    with open_image(src) as img:
        assert type(img) is RawImage
        assert img.virtual_size == SIZE
        assert img.read(0, SIZE) == disk
        assert img.container["compression"] == kind.split("-")[0]
        target = str(Path(f"/proc/self/fd/{img.fd}").readlink())
        assert target.startswith(str(scratch)) and target.endswith("(deleted)")
        # only the data is allocated: the 1 MiB of zeros and the holes are not
        allocated = os.fstat(img.fd).st_blocks * 512
        assert allocated <= 300_000 + 2 * MiB + 512 + 6 * 65536
        assert img.allocation.data_bytes < SIZE // 4
        blocks = dict(img.blocks(MiB))
        assert b"".join(blocks.get(i, bytes(MiB)) for i in range(-(-SIZE // MiB)))[:SIZE] == disk
        fd = img.fd
    assert list(scratch.iterdir()) == []
    with pytest.raises(OSError):
        os.fstat(fd)


def broken(path: Path, fmt: str, words: str) -> ImageFormatError:
    with pytest.raises(ImageFormatError) as info:
        open_image(path)
    err = info.value
    assert err.fmt == fmt and words in str(err), str(err)
    assert str(path) in str(err) and "\n" not in str(err)
    return err


@pytest.mark.parametrize(
    ("kind", "fmt"), [("xz", "xz"), ("gzip", "gzip"), ("zstd", "zstd"), ("zstd-frames", "zstd")]
)
def test_truncated(disk: bytes, tmp_path: Path, kind: str, fmt: str) -> None:
    data = COMPRESSORS[kind](disk)
    for cut in (len(data) - 3, len(data) // 2, 20):
        src = tmp_path / f"cut{cut}"
        src.write_bytes(data[:cut])
        err = broken(src, fmt, "truncated")
        assert err.offset is not None and err.offset <= cut


@pytest.mark.parametrize(("kind", "fmt"), [("xz", "xz"), ("gzip", "gzip"), ("zstd", "zstd")])
def test_corrupt(disk: bytes, tmp_path: Path, kind: str, fmt: str) -> None:
    data = bytearray(COMPRESSORS[kind](disk))
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0x5A for b in data[mid : mid + 64])
    src = tmp_path / "bad"
    src.write_bytes(data)
    err = broken(src, fmt, "corrupt")
    assert err.offset is not None and err.offset <= mid + 64


def test_trailing_garbage(disk: bytes, tmp_path: Path) -> None:
    src = tmp_path / "g.raw.gz"
    src.write_bytes(gzip.compress(disk[:MiB]) + b"not gzip at all")
    broken(src, "gzip", "trailing garbage")


def test_size_must_be_whole_sectors(tmp_path: Path) -> None:
    src = tmp_path / "odd.raw.xz"
    src.write_bytes(lzma.compress(b"\x01" * 1000))
    with pytest.raises(ImageFormatError, match="decompresses to 1000 bytes, which is not a whole number"):
        open_image(src, "raw")
    with pytest.raises(ImageFormatError, match="size 1000 is not a whole number of 512-byte sectors"):
        open_image(src)
    src.write_bytes(lzma.compress(b""))
    broken(src, "xz", "decompresses to 0 bytes")


def test_content_without_a_partition_table_needs_format_raw(tmp_path: Path) -> None:
    """The rule of bare files holds inside a compression too; `format: raw` names the content."""
    data = pattern(MiB, 5)
    src = tmp_path / "bare.raw.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(data))
    with pytest.raises(
        ImageFormatError, match="not a recognised disk image; if this is a raw disk without a "
    ):
        open_image(src)
    with open_image(src, "raw") as img:
        assert type(img) is RawImage and img.read(0, MiB) == data
    src.write_bytes(gzip.compress(b"hello world, this is a README\n" * 40))
    with pytest.raises(ImageFormatError, match="looks like a text file"):
        open_image(src)


def test_a_compressed_image_opens_as_what_it_holds(disk: bytes, tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    raw.write_bytes(disk)
    qcow2 = convert(raw, tmp_path / "d.qcow2", "qcow2", src_fmt="raw")
    src = tmp_path / "d.qcow2.xz"
    src.write_bytes(lzma.compress(qcow2.read_bytes(), preset=0))
    with open_image(src) as img:
        assert isinstance(img, Qcow2Image)
        assert img.read(0, SIZE) == disk
        assert img.container == {"compression": "xz", "compressed_size": src.stat().st_size}
    twice = tmp_path / "d.raw.gz.xz"
    twice.write_bytes(lzma.compress(gzip.compress(disk[:MiB]), preset=0))
    with pytest.raises(ImageFormatError, match="compressed twice"):
        open_image(twice)


def test_zstd_frame_walk_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    good = zstandard.ZstdCompressor(write_checksum=True).compress(b"a" * 100_000)
    path = tmp_path / "z"
    for data, words in [
        (good[:-2], "truncated"),
        (good + b"JUNKJUNK", "bad frame magic"),
        (good[:5], "truncated"),
    ]:
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(ImageFormatError, match=words):
                check_zstd_frames(path, fd)
        finally:
            os.close(fd)
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip"
    path.write_bytes(skippable + good)
    fd = os.open(path, os.O_RDONLY)
    try:
        check_zstd_frames(path, fd)
    finally:
        os.close(fd)


def test_unknown_magic_given_to_open_compressed(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(bytes(1024))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ImageFormatError, match="unknown compression magic"):
            open_compressed(path, fd)
    finally:
        os.close(fd)


def test_unwritable_tmpdir(disk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "d.raw.gz"
    src.write_bytes(gzip.compress(disk[:MiB], compresslevel=1))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    broken(src, "gzip", "temporary file")


def test_decompression_bomb_is_capped(disk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imgpub.disk.compressed.MAX_SIZE", 8 * MiB)
    src = tmp_path / "bomb.raw.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(bytes(64 * MiB)))
    broken(src, "zstd", "more than 64 TiB")
