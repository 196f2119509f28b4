"""Building test images: sparse raw files written by us, other formats made by qemu-img (the oracle)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


def pattern(n: int, seed: int) -> bytes:
    """n reproducible pseudo-random bytes (incompressible)."""
    return random.Random(seed).randbytes(n)


def text_like(n: int, seed: int) -> bytes:
    """n reproducible compressible bytes."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij \n") for _ in range(rnd.randint(2, 9))) for _ in range(64)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


def sparse_raw(path: Path, size: int, writes: Sequence[tuple[int, bytes]]) -> Path:
    """A sparse raw file of `size` bytes with `writes` (offset, data) in it; the rest are holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)
    return path


def mixed_raw(path: Path, size: int = 64 * MiB, seed: int = 1) -> Path:
    """A raw disk with random data, text, an explicit run of zero bytes, and holes, at odd offsets."""
    return sparse_raw(
        path,
        size,
        [
            (0, pattern(MiB + 4096, seed)),
            (3 * MiB + 512, text_like(2 * MiB, seed + 1)),
            (8 * MiB, bytes(MiB)),  # allocated zeros
            (size // 2 + 12345 * 512, pattern(300 * 1024, seed + 2)),
            (size - 4096, pattern(4096, seed + 3)),
        ],
    )


def qemu_img(*args: str | os.PathLike[str]) -> str:
    out = subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout


def convert(src: Path, dst: Path, out_fmt: str, *options: str, src_fmt: str | None = None) -> Path:
    """qemu-img convert src -> dst in `out_fmt` with `-o` options (e.g. 'cluster_size=4096')."""
    args: list[str | os.PathLike[str]] = ["convert"]
    if src_fmt:
        args += ["-f", src_fmt]
    args += ["-O", out_fmt]
    settings = [o for o in options if not o.startswith("-")]
    if settings:
        args += ["-o", ",".join(settings)]
    args += [o for o in options if o.startswith("-")]
    args += [src, dst]
    qemu_img(*args)
    return dst


def to_raw(src: Path, dst: Path, src_fmt: str | None = None) -> Path:
    """The guest bytes of `src` as qemu-img sees them."""
    return convert(src, dst, "raw", src_fmt=src_fmt)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()
