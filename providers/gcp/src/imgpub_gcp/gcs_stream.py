"""The tarball stream cut into upload chunks: hashed as it goes, the bytes GCS already holds skipped
(and checked against the journalled CRC32C of that prefix), compressed ahead by a worker thread."""

from __future__ import annotations

import base64
import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imgpub_gcp.gcs_session import SessionGone

T = TypeVar("T")


def _crc32c() -> Any:
    import google_crc32c

    return google_crc32c.Checksum()  # type: ignore[no-untyped-call]


@dataclass
class Hashes:
    crc: Any = field(default_factory=_crc32c)
    md5: Any = field(default_factory=hashlib.md5)
    length: int = 0

    def update(self, data: bytes | memoryview) -> None:
        self.crc.update(bytes(data))
        self.md5.update(data)
        self.length += len(data)

    def crc32c(self) -> str:
        return base64.b64encode(self.crc.digest()).decode()

    def md5_b64(self) -> str:
        return base64.b64encode(self.md5.digest()).decode()


def split(pieces: Iterable[bytes], marks: set[int]) -> Iterator[bytes]:
    """The same bytes, cut so that no piece crosses one of the absolute offsets in `marks`."""
    position = 0
    pending = sorted(marks)
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            while pending and pending[0] <= position:
                pending.pop(0)
            cut = min(len(view), pending[0] - position) if pending else len(view)
            yield bytes(view[:cut])
            view, position = view[cut:], position + cut


def chunks(
    pieces: Iterable[bytes], offset: int, expected: tuple[int, str] | None, size: int, hashes: Hashes
) -> Iterator[tuple[bytes, bool, str]]:
    """(chunk, final, CRC32C of the stream up to the chunk's end) for the bytes after `offset`.

    The first `offset` bytes are only hashed; the journalled CRC at `expected[0]` must match, or the
    stream is not the one GCS holds the start of. A chunk is cut only once a byte follows it,
    so the last chunk (maybe empty) is always the one that names the total.
    """
    marks = {offset} | ({expected[0]} if expected else set())
    buffer = bytearray()
    for piece in split(pieces, marks):
        if hashes.length < offset:
            hashes.update(piece)
            if expected and hashes.length == expected[0] and hashes.crc32c() != expected[1]:
                raise SessionGone("the regenerated stream differs from the uploaded prefix")
            continue
        buffer += piece
        while len(buffer) > size:
            chunk = bytes(memoryview(buffer)[:size])
            del buffer[:size]
            hashes.update(chunk)
            yield chunk, False, hashes.crc32c()
    if hashes.length < offset:
        raise SessionGone("the stream is shorter than what GCS already holds")
    chunk = bytes(buffer)
    hashes.update(chunk)
    yield chunk, True, hashes.crc32c()


_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` produced by a worker thread up to `depth` ahead; its exceptions re-raised here."""
    ready: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            offer((None, exc))

    worker = threading.Thread(target=work, name="gcs-upload-producer", daemon=True)
    worker.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()
