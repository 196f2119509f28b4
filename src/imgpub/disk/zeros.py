"""Zero detection at memory speed: one memcmp against a preallocated zero buffer."""

from __future__ import annotations

_ZEROS = bytes(4 << 20)
_ZVIEW = memoryview(_ZEROS)


def is_zero(buf: bytes | bytearray, start: int = 0, end: int | None = None) -> bool:
    """True if buf[start:end] is all zero bytes, without copying.

    `bytes.startswith` with a memoryview prefix over a shared zero buffer is a C memcmp (about
    40 GiB/s here). Never iterate bytes in Python and never compare memoryviews with `==` (100x
    slower).
    """
    end = len(buf) if end is None else end
    pos = start
    step = len(_ZEROS)
    while pos < end:
        n = min(end - pos, step)
        if not buf.startswith(_ZVIEW[:n], pos):
            return False
        pos += n
    return True


def zeros(n: int) -> bytes | memoryview:
    """A read-only zero buffer of length n (shared when it fits, so it costs nothing)."""
    return _ZVIEW[:n] if n <= len(_ZEROS) else bytes(n)
