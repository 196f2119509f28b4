"""A digest of the guest content that ignores the container: same bytes, same digest.

sha256 over a version tag, the virtual size, then (block index, sha256 of the block) for every
1 MiB block that is not all zero, in order. Holes and zero-filled clusters hash alike, so raw,
qcow2, VMDK and VHD copies of one disk agree.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from imgpub.disk.image import DiskImage
from imgpub.disk.zeros import is_zero

__all__ = ["DIGEST_BLOCK", "content_digest"]

DIGEST_BLOCK = 1 << 20
_TAG = b"imgpub-content-v1\0"
_THREADS = 2
_IN_FLIGHT = 8


def _block_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def digest_bytes(img: DiskImage) -> int:
    """How many bytes content_digest reads: every block the allocation map touches."""
    blocks = sum(1 for _ in img.allocation.blocks(DIGEST_BLOCK))
    return min(blocks * DIGEST_BLOCK, img.virtual_size)


def content_digest(img: DiskImage, on_progress: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of the guest content of `img` (independent of format and sparseness).
    `on_progress` gets the bytes of every block read (they add up to `digest_bytes(img)`)."""
    outer = hashlib.sha256(_TAG + img.virtual_size.to_bytes(8, "big"))
    pending: deque[tuple[int, Future[bytes]]] = deque()
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="imgpub-digest") as pool:
        for index, data in img.blocks(DIGEST_BLOCK, skip_zero=False):
            if on_progress is not None:
                on_progress(len(data))
            if is_zero(data):
                continue
            pending.append((index, pool.submit(_block_digest, data)))
            while len(pending) > _IN_FLIGHT:
                i, fut = pending.popleft()
                outer.update(i.to_bytes(8, "big") + fut.result())
        while pending:
            i, fut = pending.popleft()
            outer.update(i.to_bytes(8, "big") + fut.result())
    return outer.hexdigest()
