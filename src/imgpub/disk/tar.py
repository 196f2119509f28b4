"""Tar archives as a list of members whose data is located, never extracted.

ustar and V7 headers, GNU extensions (long names 'L'/'K', base-256 numbers, oldgnu sparse members
'S' with extension blocks) and PAX extended headers (path, linkpath, size, and GNU sparse formats
0.0, 0.1 and 1.0). Every member's data is a list of regions (guest offset, length, archive offset),
so a sparse member is read where it lies. Sparse data regions are stored one after the other, as
GNU tar and CPython's tarfile both lay them out when the regions are whole 512-byte blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgpub.disk.errors import ImageFormatError

BLOCK = 512
MAX_MEMBERS = 65536
MAX_META = 1 << 20  # a long name or PAX header larger than this is not from a real tar
MAX_REGIONS = 1 << 20
USTAR, GNU_MAGIC = b"ustar\x0000", b"ustar  \x00"
FILE_TYPES = b"07\x00"
KINDS = {b"5": "dir", b"D": "dir", b"2": "symlink", b"1": "hard link", b"3": "device", b"4": "device"}
_PAX_RECORD = re.compile(rb"(\d+) ")

ReadAt = Callable[[int, int], bytes]
Region = tuple[int, int, int]  # guest offset, length, archive offset


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hard link", "device", "fifo"...
    size: int  # the file's size (the real size of a sparse file)
    header: int  # byte offset of its first header block (long names and PAX headers included)
    regions: tuple[Region, ...]  # where its data lies; holes between them read as zeros
    sparse: bool = False
    target: str = ""  # of links

    @property
    def stored(self) -> int:
        return sum(n for _, n, _ in self.regions)


def is_tar_header(block: bytes) -> bool:
    """A ustar/GNU magic, or a valid checksum over a block that has a name (V7 tar)."""
    if len(block) < BLOCK:
        return False
    if block[257:265] in (USTAR, GNU_MAGIC):
        return True
    try:
        return bool(block[0]) and _checksum_ok(block)
    except ValueError:
        return False


def _checksum_ok(block: bytes) -> bool:
    stored = _octal(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:BLOCK])
    signed = unsigned - 2 * sum(b for b in (*block[:148], *block[156:BLOCK]) if b > 127)
    return stored in (unsigned, signed)


def _octal(field: bytes) -> int:
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):
        raise ValueError(f"{field!r} is not an octal number")
    return int(text, 8)


def _number(field: bytes) -> int:
    """Octal text, or GNU base-256 (first byte 0x80) for values that do not fit."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise ValueError("a negative base-256 number")
    return _octal(field)


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


class _Reader:
    def __init__(self, path: Path, read_at: ReadAt, size: int, fmt: str) -> None:
        self.path, self.read_at, self.size, self.fmt = path, read_at, size, fmt

    def error(self, offset: int, what: str, structure: str = "header") -> ImageFormatError:
        return ImageFormatError(self.path, self.fmt, structure, offset, what)

    def need(self, offset: int, n: int, structure: str) -> bytes:
        if offset + n > self.size:
            raise self.error(
                offset, f"needs {n} bytes but the archive ends at byte {self.size:#x} (truncated?)", structure
            )
        data = self.read_at(offset, n)
        if len(data) != n:
            raise self.error(offset, "short read (truncated?)", structure)
        return data

    def number(self, block: bytes, lo: int, hi: int, at: int) -> int:
        try:
            return _number(block[lo:hi])
        except ValueError as exc:
            raise self.error(at + lo, str(exc)) from None

    def members(self) -> list[Member]:
        out: list[Member] = []
        pos = 0
        meta: dict[str, object] = {}  # long name / link and PAX records for the next member
        first = 0
        while pos + BLOCK <= self.size:
            block = self.need(pos, BLOCK, "header")
            if not any(block):
                break  # end of archive (one zero block is enough)
            if not meta:
                first = pos
            try:
                valid = _checksum_ok(block)
            except ValueError:
                valid = False
            if not valid:
                raise self.error(pos, "checksum does not match: not a tar header (damaged or not a tar)")
            kind = block[156:157]
            size = self.number(block, 124, 136, pos)
            data = pos + BLOCK
            if kind in (b"L", b"K", b"x", b"g"):
                if size > MAX_META:
                    raise self.error(pos, f"a {size}-byte extended header is absurd")
                body = self.need(data, size, "extended header")
                if kind == b"L":
                    meta["path"] = _text(body)
                elif kind == b"K":
                    meta["linkpath"] = _text(body)
                elif kind == b"x":
                    meta.update(self.pax(body, data))
                pos = data + -(-size // BLOCK) * BLOCK
                continue
            if kind in (b"V", b"M"):
                if kind == b"M":
                    raise self.error(pos, "is a multi-volume archive continuation; join the volumes first")
                pos = data + -(-size // BLOCK) * BLOCK
                meta = {}
                continue
            member, pos = self.member(block, first, data, size, meta)
            out.append(member)
            if len(out) > MAX_MEMBERS:
                raise self.error(first, f"holds more than {MAX_MEMBERS} members")
            meta = {}
        return out

    def pax(self, body: bytes, at: int) -> dict[str, object]:
        records: dict[str, object] = {}
        pairs: list[int] = []
        p = 0
        while p < len(body) and body[p : p + 1] != b"\x00":
            m = _PAX_RECORD.match(body, p)
            length = int(m.group(1)) if m else 0
            if not m or length <= len(m.group(0)) or p + length > len(body) or body[p + length - 1] != 10:
                raise self.error(at + p, "malformed PAX record", "extended header")
            key, eq, value = body[m.end() : p + length - 1].partition(b"=")
            if not eq:
                raise self.error(at + p, "PAX record without '='", "extended header")
            name = key.decode("utf-8", "surrogateescape")
            if name in ("GNU.sparse.offset", "GNU.sparse.numbytes"):  # format 0.0 repeats them
                pairs.append(self.integer(value, at + p))
            else:
                records[name] = value.decode("utf-8", "surrogateescape")
            p += length
        if pairs:
            records["sparse.pairs"] = pairs
        return records

    def integer(self, value: bytes | str, at: int) -> int:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise self.error(at, f"{text[:30]!r} is not a number", "extended header")
        return int(text)

    def member(
        self, block: bytes, first: int, data: int, size: int, meta: dict[str, object]
    ) -> tuple[Member, int]:
        pos = data - BLOCK
        kind = block[156:157]
        name = _text(block[:100])
        if block[257:263] == USTAR[:6] and block[263:265] == b"00" and block[345]:
            name = _text(block[345:500]) + "/" + name
        name = str(meta.get("path", name))
        target = str(meta.get("linkpath", _text(block[157:257])))
        if "size" in meta:
            size = self.integer(str(meta["size"]), pos)
        sparse_map: list[tuple[int, int]] | None = None
        real = size
        if kind == b"S":
            sparse_map, real, data = self.oldgnu_sparse(block, pos)
        elif "GNU.sparse.major" in meta or "GNU.sparse.map" in meta or "sparse.pairs" in meta:
            sparse_map, real, data, size = self.pax_sparse(meta, pos, data, size)
            name = str(meta.get("GNU.sparse.name", name))
        end = data + size
        if end > self.size:
            raise self.error(
                pos, f"member {name!r} ({size} bytes) runs past the end of the archive (truncated?)"
            )
        if kind not in FILE_TYPES and kind != b"S":
            label = KINDS.get(kind, "fifo" if kind == b"6" else f"type {kind!r}")
            return Member(name, label, 0, first, (), target=target), data + -(-size // BLOCK) * BLOCK
        if sparse_map is None:
            regions: tuple[Region, ...] = ((0, size, data),) if size else ()
        else:
            regions = self.regions(sparse_map, real, data, size, pos)
        member = Member(name, "file", real, first, regions, sparse_map is not None, target)
        return member, data + -(-size // BLOCK) * BLOCK

    def oldgnu_sparse(self, block: bytes, pos: int) -> tuple[list[tuple[int, int]], int, int]:
        entries = self.entries(block, 386, 4, pos)
        real = self.number(block, 483, 495, pos)
        more, at = block[482], pos + BLOCK
        while more:
            ext = self.need(at, BLOCK, "sparse header")
            entries += self.entries(ext, 0, 21, at)
            if len(entries) > MAX_REGIONS:
                raise self.error(at, f"more than {MAX_REGIONS} sparse regions", "sparse header")
            more, at = ext[504], at + BLOCK
        return entries, real, at

    def entries(self, block: bytes, start: int, count: int, at: int) -> list[tuple[int, int]]:
        out = []
        for i in range(count):
            lo = start + 24 * i
            if not block[lo]:
                break
            out.append((self.number(block, lo, lo + 12, at), self.number(block, lo + 12, lo + 24, at)))
        return out

    def pax_sparse(
        self, meta: dict[str, object], pos: int, data: int, size: int
    ) -> tuple[list[tuple[int, int]], int, int, int]:
        version = (str(meta.get("GNU.sparse.major", "0")), str(meta.get("GNU.sparse.minor", "0")))
        if version == ("1", "0"):
            real = self.integer(str(meta.get("GNU.sparse.realsize", "")), pos)
            numbers, used = self.sparse_numbers(data, size)
            count = numbers[0]
            if len(numbers) != 1 + 2 * count:
                raise self.error(data, "sparse map is malformed", "sparse map")
            pairs = numbers[1:]
        elif version[0] == "0":
            real = self.integer(str(meta.get("GNU.sparse.size", meta.get("GNU.sparse.realsize", ""))), pos)
            raw = meta.get("sparse.pairs")
            if isinstance(raw, list):
                pairs = raw
            else:
                text = str(meta.get("GNU.sparse.map", ""))
                pairs = [self.integer(v, pos) for v in text.split(",")] if text else []
            used = 0
        else:
            raise self.error(pos, f"GNU sparse format {'.'.join(version)} is not supported")
        if len(pairs) % 2 or len(pairs) > 2 * MAX_REGIONS:
            raise self.error(pos, "sparse map has an odd or absurd number of values", "sparse map")
        return list(zip(pairs[::2], pairs[1::2], strict=True)), real, data + used, size - used

    def sparse_numbers(self, data: int, size: int) -> tuple[list[int], int]:
        """PAX 1.0: decimal lines at the start of the data (count, then offset/length pairs), padded
        to a whole block; returns the numbers and the bytes they take."""
        numbers: list[int] = []
        partial = b""
        used = 0
        while True:
            if used >= size or used > MAX_META:
                raise self.error(data, "sparse map runs past the member", "sparse map")
            *lines, partial = (partial + self.need(data + used, BLOCK, "sparse map")).split(b"\n")
            used += BLOCK
            numbers += [self.integer(line, data + used - BLOCK) for line in lines]
            if numbers and len(numbers) >= 1 + 2 * numbers[0]:
                return numbers[: 1 + 2 * numbers[0]], used

    def regions(
        self, sparse: list[tuple[int, int]], real: int, data: int, stored: int, pos: int
    ) -> tuple[Region, ...]:
        out: list[Region] = []
        end = 0
        archive = data
        for off, n in sparse:
            if off < end or off + n > real:
                raise self.error(
                    pos, f"sparse region {off}+{n} overlaps or lies past the {real}-byte file", "sparse map"
                )
            if n:
                out.append((off, n, archive))
            archive += n
            end = off + n
        if archive - data > stored:
            raise self.error(
                pos, f"sparse map holds {archive - data} bytes, the member stores {stored}", "sparse map"
            )
        return tuple(out)


def read_members(path: Path, read_at: ReadAt, size: int, fmt: str = "tar") -> list[Member]:
    """Every member of the tar archive of `size` bytes read through `read_at(offset, n)`."""
    return _Reader(path, read_at, size, fmt).members()
