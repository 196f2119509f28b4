"""Compressed disks (`.raw.xz`, `.raw.gz`, `.raw.zst`, `disk.raw.tar.gz`...): stream-decompressed
into a sparse temp file, which is then opened by what it holds (a raw disk, a tarred disk, any image).

The temporary file lives in $TMPDIR (or the system default), holds only the non-zero blocks
(zero runs are left as holes), and is unlinked as soon as it is created, so it disappears when the
image is closed, or when the process dies.
"""

from __future__ import annotations

import lzma
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from imgpub.disk.errors import ImageFormatError
from imgpub.disk.image import DiskImage
from imgpub.disk.raw import RawImage
from imgpub.disk.zeros import is_zero

READ = 1 << 20  # compressed bytes per read
OUT = 4 << 20  # decompressed bytes per call: memory stays bounded whatever the ratio
HOLE = 64 << 10  # zero runs this long (and aligned) become holes
MAX_SIZE = 64 << 40  # the largest EBS volume

MAGICS = {b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


class DiskTooLarge(Exception):
    """The stream decompresses to more than MAX_SIZE (a decompression bomb, or not a disk)."""


class _SparseSink:
    """Writes a byte stream to `fd`, seeking over all-zero HOLE-sized blocks (without copying the
    stream: only a partial block between two writes is buffered)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, 0
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        pos = 0
        if self._pending:
            pos = min(HOLE - len(self._pending), len(data))
            self._pending += data[:pos]
            if len(self._pending) < HOLE:
                return
            self._emit(self._pending, 0, HOLE)
            self._pending = bytearray()
        usable = pos + (len(data) - pos) // HOLE * HOLE
        self._emit(data, pos, usable)
        self._pending += data[usable:]
        if self.size > MAX_SIZE:
            raise DiskTooLarge

    def _emit(self, buf: bytes | bytearray, lo: int, hi: int) -> None:
        """Write buf[lo:hi] at the current size, leaving its all-zero HOLE blocks as holes."""
        view = memoryview(buf)
        start = None  # first byte of the run of non-zero blocks being collected
        for block in range(lo, hi, HOLE):
            if is_zero(buf, block, min(block + HOLE, hi)):
                if start is not None:
                    os.pwrite(self.fd, view[start:block], self.size + start - lo)
                    start = None
            elif start is None:
                start = block
        if start is not None:
            os.pwrite(self.fd, view[start:hi], self.size + start - lo)
        view.release()
        self.size += hi - lo

    def finish(self) -> int:
        self._emit(self._pending, 0, len(self._pending))
        self._pending = bytearray()
        os.ftruncate(self.fd, self.size)
        return self.size


def _chunks(fd: int) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while chunk := os.pread(fd, READ, pos):
        yield pos, chunk
        pos += len(chunk)


def _stream_codec(
    new: Callable[[], Any], errors: tuple[type[Exception], ...], magic: bytes, padding: bool
) -> Callable[[Path, int, str, _SparseSink], None]:
    """A decoder for concatenated xz streams or gzip members (each with `magic`), bounded output."""

    def decode(path: Path, fd: int, fmt: str, sink: _SparseSink) -> None:
        d, started, at = new(), False, 0
        for at, chunk in _chunks(fd):
            buf = chunk
            while buf or started:
                if not started:
                    if padding:
                        buf = buf.lstrip(b"\0")
                    if not buf:
                        break
                    if not (buf.startswith(magic) or (len(buf) < len(magic) and magic.startswith(buf))):
                        raise ImageFormatError(
                            path, fmt, "stream", at, "trailing garbage after the last stream"
                        )
                    started = True
                try:
                    out = d.decompress(buf, OUT)
                except errors as exc:
                    raise ImageFormatError(
                        path, fmt, "stream", at, f"corrupt compressed data ({exc})"
                    ) from None
                sink.write(out)
                if d.eof:
                    buf, d, started = d.unused_data, new(), False
                    continue
                buf = getattr(d, "unconsumed_tail", b"")
                if not buf and len(out) < OUT:
                    break  # the decoder wants more input
        if started:
            raise ImageFormatError(path, fmt, "stream", at, "the compressed stream is truncated")

    return decode


def _gzip() -> Callable[[Path, int, str, _SparseSink], None]:
    try:
        from isal import isal_zlib as zmod
    except ImportError:  # pragma: no cover
        import zlib as zmod  # type: ignore[no-redef]
    error: type[Exception] = zmod.error  # type: ignore[assignment]
    return _stream_codec(lambda: zmod.decompressobj(31), (error,), b"\x1f\x8b", padding=True)


def _xz() -> Callable[[Path, int, str, _SparseSink], None]:
    return _stream_codec(lzma.LZMADecompressor, (lzma.LZMAError,), b"\xfd7zXZ\x00", padding=True)


ZSTD_MAGIC = 0xFD2FB528


def check_zstd_frames(path: Path, fd: int) -> None:
    """Walk the frame and block headers of a zstd file, so a truncated file is an error.

    (python-zstandard's bounded readers stop silently at a cut; this walk costs one small read
    per 128 KiB block of output.)
    """
    size = os.fstat(fd).st_size
    pos = 0

    def need(n: int, what: str) -> bytes:
        data = os.pread(fd, n, pos)
        if len(data) < n:
            raise ImageFormatError(path, "zstd", what, pos, "the compressed stream is truncated")
        return data

    while pos < size:
        (magic,) = struct.unpack("<I", need(4, "frame"))
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
            (skip,) = struct.unpack("<I", os.pread(fd, 4, pos + 4).ljust(4, b"\0"))
            pos += 8 + skip
            if pos > size:
                raise ImageFormatError(
                    path, "zstd", "skippable frame", pos, "the compressed stream is truncated"
                )
            continue
        if magic != ZSTD_MAGIC:
            raise ImageFormatError(path, "zstd", "frame", pos, f"bad frame magic {magic:#010x}")
        desc = need(5, "frame header")[4]
        fcs_flag, single, checksum, dict_flag = desc >> 6, desc >> 5 & 1, desc >> 2 & 1, desc & 3
        if desc & 0x08:
            raise ImageFormatError(path, "zstd", "frame header", pos, "reserved bit set")
        pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
        while True:
            (header,) = struct.unpack("<I", need(3, "block header") + b"\0")
            last, btype, bsize = header & 1, header >> 1 & 3, header >> 3
            if btype == 3:
                raise ImageFormatError(path, "zstd", "block header", pos, "reserved block type")
            pos += 3 + (1 if btype == 1 else bsize)
            if pos > size:
                raise ImageFormatError(
                    path, "zstd", "block", pos - bsize, "the compressed stream is truncated"
                )
            if last:
                break
        pos += 4 * checksum
        if pos > size:
            raise ImageFormatError(path, "zstd", "frame checksum", size, "the compressed stream is truncated")


class _TrackedInput:
    """A file-like view of `fd` that remembers where its last read started (for error offsets)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pos, self.last = fd, 0, 0

    def read(self, n: int = READ) -> bytes:
        data = os.pread(self.fd, n if n >= 0 else 1 << 30, self.pos)
        self.last = self.pos
        self.pos += len(data)
        return data


def _zstd(path: Path, fd: int, fmt: str, sink: _SparseSink) -> None:
    import zstandard

    check_zstd_frames(path, fd)
    source = _TrackedInput(fd)
    reader = zstandard.ZstdDecompressor().stream_reader(
        source,  # type: ignore[arg-type]  # any object with read() will do
        read_size=READ,
        read_across_frames=True,
    )
    try:
        while out := reader.read(OUT):
            sink.write(out)
    except zstandard.ZstdError as exc:
        raise ImageFormatError(path, fmt, "stream", source.last, f"corrupt compressed data ({exc})") from None


def open_compressed(
    path: Path, fd: int, open_content: Callable[[Path, int], DiskImage] | None = None
) -> DiskImage:
    """Decompress the xz / gzip / zstd file open as `fd` (detected by magic) into a sparse temp file
    and open that with `open_content(path, temp_fd)` (default: as a raw disk). The image says in
    `container` how it was compressed.

    Takes ownership of `fd`: it is closed once the data is decompressed.
    """
    head = os.pread(fd, 8, 0)
    fmt = next((name for magic, name in MAGICS.items() if head.startswith(magic)), None)
    if fmt is None:
        raise ImageFormatError(path, "compressed", "header", 0, f"unknown compression magic {head[:6].hex()}")
    decode = {"xz": _xz(), "gzip": _gzip(), "zstd": _zstd}[fmt]
    compressed_size = os.fstat(fd).st_size
    tmpdir = os.environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        out, name = tempfile.mkstemp(prefix="imgpub-", suffix=".raw", dir=tmpdir)
    except OSError as exc:
        raise ImageFormatError(
            path, fmt, "temporary file", None, f"cannot create one in {tmpdir}: {exc.strerror}"
        ) from None
    Path(name).unlink()
    try:
        sink = _SparseSink(out)
        try:
            decode(path, fd, fmt, sink)
            size = sink.finish()
        except DiskTooLarge:
            raise ImageFormatError(path, fmt, "stream", None, "decompresses to more than 64 TiB") from None
        except OSError as exc:
            raise ImageFormatError(
                path, fmt, "temporary file", None,
                f"cannot write the decompressed disk in {tmpdir}: {exc.strerror} (point TMPDIR elsewhere)",
            ) from None  # fmt: skip
        if size == 0:
            raise ImageFormatError(path, fmt, "stream", None, "decompresses to 0 bytes")
        image = (open_content or RawImage)(path, out)
        if isinstance(image, RawImage) and size % 512:
            image.fd = -1  # closed below
            raise ImageFormatError(
                path, fmt, "stream", None,
                f"decompresses to {size} bytes, which is not a whole number of 512-byte sectors",
            )  # fmt: skip
        image.container.update(compression=fmt, compressed_size=compressed_size)
    except BaseException:
        os.close(out)
        raise
    os.close(fd)
    return image
