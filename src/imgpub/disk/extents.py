"""Allocation maps: which guest byte ranges may hold data. Everything else reads as zeros."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Extent:
    offset: int
    length: int
    data: bool

    @property
    def end(self) -> int:
        return self.offset + self.length


class AllocationMap:
    """Sorted, non-overlapping, coalesced data ranges of a disk of `virtual_size` bytes.

    A data range may still contain zero bytes (allocated but zero-filled clusters); consumers that
    must not send zeros zero-check what they read.
    """

    __slots__ = ("_runs", "virtual_size")

    def __init__(self, virtual_size: int, runs: tuple[tuple[int, int], ...]) -> None:
        self.virtual_size = virtual_size
        self._runs = runs

    @classmethod
    def from_runs(cls, virtual_size: int, runs: Iterable[tuple[int, int]]) -> AllocationMap:
        """Build from (offset, length) data runs in any order; clips to the disk, merges touching runs."""
        merged: list[list[int]] = []
        for off, length in sorted(runs):
            end = min(off + length, virtual_size)
            off = max(off, 0)
            if end <= off:
                continue
            if merged and off <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1][1] = end
            else:
                merged.append([off, end])
        return cls(virtual_size, tuple((a, b - a) for a, b in merged))

    @classmethod
    def full(cls, virtual_size: int) -> AllocationMap:
        return cls(virtual_size, ((0, virtual_size),) if virtual_size else ())

    @property
    def data_runs(self) -> tuple[tuple[int, int], ...]:
        return self._runs

    @property
    def data_bytes(self) -> int:
        return sum(length for _, length in self._runs)

    def extents(self) -> Iterator[Extent]:
        """Every byte of the disk exactly once: data and zero extents alternating, in order."""
        pos = 0
        for off, length in self._runs:
            if off > pos:
                yield Extent(pos, off - pos, False)
            yield Extent(off, length, True)
            pos = off + length
        if pos < self.virtual_size:
            yield Extent(pos, self.virtual_size - pos, False)

    def blocks(self, block_size: int) -> Iterator[int]:
        """Indexes of the `block_size` blocks that overlap a data run, ascending, each once."""
        last = -1
        for off, length in self._runs:
            first = max(off // block_size, last + 1)
            stop = (off + length - 1) // block_size
            yield from range(first, stop + 1)
            last = max(last, stop)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AllocationMap)
            and other.virtual_size == self.virtual_size
            and other._runs == self._runs
        )

    def __hash__(self) -> int:
        return hash((self.virtual_size, self._runs))

    def __repr__(self) -> str:
        return (
            f"AllocationMap(virtual_size={self.virtual_size}, runs={len(self._runs)}, data={self.data_bytes})"
        )
