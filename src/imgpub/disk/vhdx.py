"""VHDX (Hyper-V gen 2): fixed and dynamic disks. Differencing disks and unreplayed logs are refused."""

from __future__ import annotations

import struct
import sys
import uuid
from array import array
from pathlib import Path
from typing import Any

from imgpub.disk.errors import UnsupportedImageError
from imgpub.disk.image import Window
from imgpub.disk.vhd import BlockMappedImage

KiB, MiB = 1 << 10, 1 << 20
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
REGION_OFFSETS = (192 * KiB, 256 * KiB)
MAX_BAT_ENTRIES = 1 << 22  # 32 MiB of BAT: 4 TiB in 1 MiB blocks, 128 TiB in 32 MiB blocks
MAX_VIRTUAL_SIZE = 64 << 40  # the VHDX limit
BAT_GUID = uuid.UUID("2dc27766-f623-4200-9d64-115e9bfd4a08")
METADATA_GUID = uuid.UUID("8b7ca206-4790-4b9a-b8fe-575f050f886e")
FILE_PARAMETERS = uuid.UUID("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
VIRTUAL_DISK_SIZE = uuid.UUID("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141bf1d-a96f-4709-ba47-f233a8faab5f")
KNOWN_METADATA = {
    FILE_PARAMETERS,
    VIRTUAL_DISK_SIZE,
    LOGICAL_SECTOR_SIZE,
    uuid.UUID("cda348c7-445d-4471-9cc9-e9885251c556"),  # physical sector size
    uuid.UUID("beca12ab-b2e6-4523-93ef-c309e000c746"),  # page 83 data (disk id)
    uuid.UUID("a8d35f2d-b30b-454d-abf7-d3d84834ab0c"),  # parent locator
}
PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT = 6, 7
ZERO_STATES = (0, 1, 2, 3)  # not present, undefined, zero, unmapped: all read as zeros without a parent
_MERGE = "convert it first, e.g. `qemu-img convert -O vpc -o subformat=fixed,force_size=on SRC.vhdx OUT.vhd`"


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as VHDX checksums its headers and region tables (a few KiB each)."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class VhdxImage(BlockMappedImage):
    format = "vhdx"

    def __init__(self, path: Path, fd: int, *, window: Window | None = None) -> None:
        super().__init__(path, fd, window=window)
        sig = self.pread(0, 8, "file identifier")
        if sig != b"vhdxfile":
            raise self._error("file identifier", 0, f"bad signature {sig!r} (expected 'vhdxfile')")
        self.sequence, log_guid, log_region = self._header()
        if log_guid != uuid.UUID(int=0):
            raise UnsupportedImageError(
                path,
                "vhdx",
                "header",
                None,
                "has a log that must be replayed (the disk was not shut down cleanly); open it read-write "
                "once in Hyper-V or with `qemu-img check -r all FILE.vhdx`, or " + _MERGE,
            )
        regions = self._regions()
        for guid in (BAT_GUID, METADATA_GUID):
            if guid not in regions:
                raise self._error("region table", REGION_OFFSETS[0], f"has no {guid} region")
        self._metadata(*regions[METADATA_GUID])
        self._bat(*regions[BAT_GUID], forbidden=[log_region, *((o, o + n) for o, n in regions.values())])

    def _header(self) -> tuple[int, uuid.UUID, tuple[int, int]]:
        """(sequence number, log GUID, log byte range) of the valid header with the higher sequence."""
        best: tuple[int, uuid.UUID, tuple[int, int]] | None = None
        problems = []
        for where in HEADER_OFFSETS:
            buf = self.pread(where, 4 * KiB, "header")
            sig, checksum, seq = struct.unpack_from("<4sIQ", buf)
            if sig != b"head":
                problems.append(f"bad signature at {where:#x}")
                continue
            if crc32c(buf[:4] + bytes(4) + buf[8:]) != checksum:
                problems.append(f"bad checksum at {where:#x}")
                continue
            log_guid = uuid.UUID(bytes_le=buf[48:64])
            version, log_length, log_offset = struct.unpack_from("<HIQ", buf, 66)
            if version != 1:
                problems.append(f"unknown version {version} at {where:#x}")
                continue
            if best is None or seq > best[0]:
                best = (seq, log_guid, (log_offset, log_offset + log_length))
        if best is None:
            raise self._error("header", HEADER_OFFSETS[0], "neither header is valid: " + "; ".join(problems))
        return best

    def _regions(self) -> dict[uuid.UUID, tuple[int, int]]:
        last = ""
        for where in REGION_OFFSETS:
            buf = self.pread(where, 64 * KiB, "region table")
            sig, checksum, count = struct.unpack_from("<4sII", buf)
            if sig != b"regi" or crc32c(buf[:4] + bytes(4) + buf[8:]) != checksum or count > 2047:
                last = f"region table at {where:#x} is invalid (signature, checksum or entry count)"
                continue
            regions: dict[uuid.UUID, tuple[int, int]] = {}
            for k in range(count):
                raw_guid, offset, length, flags = struct.unpack_from("<16sQII", buf, 16 + 32 * k)
                guid = uuid.UUID(bytes_le=raw_guid)
                if guid not in (BAT_GUID, METADATA_GUID):
                    if flags & 1:
                        raise UnsupportedImageError(
                            self.path,
                            "vhdx",
                            "region table",
                            where + 16 + 32 * k,
                            f"requires the unknown region {guid}; " + _MERGE,
                        )
                    continue
                if offset < MiB or offset % MiB or offset + length > self.file_size:
                    raise self._error(
                        "region table",
                        where + 16 + 32 * k,
                        f"region {guid} at {offset:#x}+{length:#x} is outside the file or misaligned",
                    )
                regions[guid] = (offset, length)
            return regions
        raise self._error("region table", REGION_OFFSETS[0], "neither region table is valid: " + last)

    def _metadata(self, offset: int, length: int) -> None:
        if length < 64 * KiB:
            raise self._error("metadata region", offset, f"is only {length} bytes")
        buf = self.pread(offset, min(length, 1 * MiB), "metadata region")
        sig, count = struct.unpack_from("<8s2xH", buf)
        if sig != b"metadata" or count > 2047:
            raise self._error("metadata region", offset, "bad signature or entry count")
        items: dict[uuid.UUID, bytes] = {}
        for k in range(count):
            where = offset + 32 + 32 * k
            raw_guid, item_off, item_len, flags = struct.unpack_from("<16sIII", buf, 32 + 32 * k)
            guid = uuid.UUID(bytes_le=raw_guid)
            if guid not in KNOWN_METADATA:
                if flags & 4:
                    raise UnsupportedImageError(
                        self.path,
                        "vhdx",
                        "metadata table",
                        where,
                        f"requires unknown metadata {guid}; " + _MERGE,
                    )
                continue
            if item_off < 64 * KiB or item_off + item_len > len(buf):
                raise self._error("metadata table", where, f"item {guid} lies outside the metadata region")
            items[guid] = buf[item_off : item_off + item_len]

        def item(guid: uuid.UUID, fmt: str) -> tuple[int, ...]:
            data = items.get(guid)
            if data is None or len(data) < struct.calcsize(fmt):
                raise self._error("metadata region", offset, f"required item {guid} is missing or short")
            return struct.unpack_from(fmt, data)

        block_size, flags = item(FILE_PARAMETERS, "<II")
        self.leave_allocated = bool(flags & 1)  # set for fixed disks
        (self.virtual_size,) = item(VIRTUAL_DISK_SIZE, "<Q")
        (self.sector_size,) = item(LOGICAL_SECTOR_SIZE, "<I")
        if flags & 2:
            raise UnsupportedImageError(
                self.path,
                "vhdx",
                "metadata",
                offset,
                "is a differencing disk (it has a parent); merge it into its parent first, or " + _MERGE,
            )
        if block_size < MiB or block_size > 256 * MiB or block_size & (block_size - 1):
            raise self._error("file parameters", offset, f"block size {block_size} is not 1-256 MiB")
        if self.sector_size not in (512, 4096):
            raise self._error("logical sector size", offset, f"is {self.sector_size}, not 512 or 4096")
        if self.virtual_size % self.sector_size or not 0 < self.virtual_size <= MAX_VIRTUAL_SIZE:
            raise self._error("virtual disk size", offset, f"absurd size {self.virtual_size}")
        self.block_size = block_size

    def _bat(self, offset: int, length: int, forbidden: list[tuple[int, int]]) -> None:
        bs = self.block_size
        chunk_ratio = (1 << 23) * self.sector_size // bs
        payload = -(-self.virtual_size // bs)
        entries = payload + (payload - 1) // chunk_ratio
        if entries > MAX_BAT_ENTRIES or entries * 8 > length:
            raise self._error(
                "BAT region",
                offset,
                f"holds {length // 8} entries, the disk needs {entries}",
            )
        bat = array("Q")
        bat.frombytes(self.pread(offset, entries * 8, "BAT"))
        if sys.byteorder == "big":  # pragma: no cover
            bat.byteswap()
        hosts = array("Q", bytes(8 * payload))

        def entry_at(i: int) -> int:
            return offset + 8 * (i + i // chunk_ratio)

        for i in range(payload):
            entry = bat[i + i // chunk_ratio]
            state = entry & 7
            if state == PAYLOAD_FULLY_PRESENT:
                host = (entry >> 20) * MiB
                if host == 0:
                    raise self._error("BAT entry", entry_at(i), "block at file offset 0")
                hosts[i] = host
            elif state not in ZERO_STATES:
                raise self._error(
                    "BAT entry",
                    offset + 8 * (i + i // chunk_ratio),
                    f"block {i} has state {state}, invalid in a disk without a parent",
                )
        self.hosts = hosts
        self._map_blocks(
            lambda i: offset + 8 * (i + i // chunk_ratio), [(0, MiB), *forbidden], self.file_size
        )
        self.bat_offset, self.chunk_ratio = offset, chunk_ratio

    def info(self) -> dict[str, Any]:
        return {
            "subformat": "fixed" if self.leave_allocated else "dynamic",
            "block_size": self.block_size,
            "logical_sector_size": self.sector_size,
        }
