"""Write a disk image into a page blob as a fixed VHD: only the non-zero pages, in parallel, resumable.

The blob is `vhd_disk_size(virtual_size) + 512` bytes: the data area, then the footer. A new page
blob reads as zeros, so zero ranges are never sent. An interrupted upload resumes: pages the blob
already holds (Get Page Ranges) are not sent again. A blob left by another digest is recreated.
With a lease (blob_lease.py: the one run that holds it writes the blob), every write carries it.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from imgpub.disk import DiskImage
from imgpub.disk.write_vhd import FOOTER_SIZE, vhd_disk_size, vhd_footer, vhd_pages
from imgpub.errors import CloudError, CredentialsError, ImgpubError
from imgpub.progress import NullProgress, Progress
from imgpub.retry import RetryPolicy
from imgpub_azure.errors import call
from imgpub_azure.names import text

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

__all__ = [
    "MAX_PAGE",
    "META_DIGEST",
    "META_NAME",
    "META_VERSION",
    "PageUploader",
    "UploadStats",
    "blob_identity",
    "unique_id",
]

T = TypeVar("T")

MAX_PAGE = 4 << 20
"""Put Page takes at most 4 MiB per request on Azure. Azurite accepts 8 MiB, so we enforce it here."""
IN_FLIGHT_PER_WORKER = 2
"""Pages read ahead per worker: enough to keep workers busy, bounded memory (16 x 4 MiB at 8)."""
META_DIGEST = "imgpub_digest"
META_COMPLETE = "imgpub_complete"
"""Blob metadata (names must be C# identifiers): which image the blob holds, and that it is whole."""
META_NAME = "imgpub_name"
META_VERSION = "imgpub_version"
"""Blob metadata: the image name and version the blob is the upload of (URL-quoted: metadata values
travel as HTTP headers), so prune finds a version's leftover blob by them, never by its name alone."""


def blob_identity(name: str, version: str) -> dict[str, str]:
    """The metadata that names a page blob's image and version (values as the `imgpub:*` tags have
    them, URL-quoted)."""
    from urllib.parse import quote

    return {META_NAME: quote(name[:256], safe=""), META_VERSION: quote(version[:256], safe="")}


def unique_id(digest: str) -> bytes:
    """The VHD footer's 16-byte unique id, derived from the image digest so re-runs agree."""
    return hashlib.sha256(f"imgpub-vhd:{digest}".encode()).digest()[:16]


@dataclass
class UploadStats:
    blob_size: int = 0
    pages_sent: int = 0
    bytes_sent: int = 0
    pages_present: int = 0
    """Pages skipped because the blob already had them (a resumed upload)."""
    bytes_present: int = 0
    resumed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sent(self, length: int) -> None:
        with self._lock:
            self.pages_sent += 1
            self.bytes_sent += length


class _Ranges:
    """Byte ranges a page blob already holds, merged, for 'is this page there?' lookups."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [r[0] for r in merged]
        self._ends = [r[1] for r in merged]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def covers(self, offset: int, length: int) -> bool:
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and self._ends[i] >= offset + length


class PageUploader:
    """Uploads one image into one page blob (a storage account blob or a managed disk's SAS URL)."""

    def __init__(
        self,
        blob: BlobClient,
        *,
        target: str,
        retry: RetryPolicy,
        progress: Progress | None = None,
        concurrency: int = 8,
        lease: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.blob = blob
        self.target = target
        self.retry = retry
        self.progress = progress or NullProgress()
        self.concurrency = concurrency
        self.lease = lease
        """The blob's lease id, carried by every write (None: the blob is not leased)."""
        self.metadata = dict(metadata or {})
        """Metadata the blob carries besides its digest (blob_identity: its image and version)."""

    def upload(self, img: DiskImage, digest: str, *, create: bool = True, fresh: bool = False) -> UploadStats:
        """Make the blob hold `img` as a fixed VHD. With `create`, the blob is (re)created as needed
        and marked complete with metadata; without, it must exist at the right size (a managed disk),
        and `fresh` says it was just created (so nothing is there yet)."""
        disk_size = vhd_disk_size(img.virtual_size)
        stats = UploadStats(blob_size=disk_size + FOOTER_SIZE)
        if create:
            present = self._prepare(stats.blob_size, digest)
            if present is None:
                stats.resumed = True
                self.progress.note("upload: the blob already holds this image")
                return stats
        else:
            present = _Ranges(()) if fresh else self._present_or_nothing()
        self.progress.stage("upload", img.allocation.data_bytes + FOOTER_SIZE)
        footer = vhd_footer(disk_size, unique_id=unique_id(digest))
        pages = itertools.chain(vhd_pages(img, max_page=MAX_PAGE), [(disk_size, footer)])
        self._put_all(self._missing(pages, present, stats), stats)
        if create:
            self._mark_complete(digest)
        return stats

    def _prepare(self, size: int, digest: str) -> _Ranges | None:
        """Pages already in a blob of this digest (None: it is complete), or a fresh empty blob."""
        if self._call("check the upload blob", self.blob.exists):
            props = self._call("read the upload blob", self.blob.get_blob_properties)
            meta = props.metadata or {}
            if text(props.blob_type) == "PageBlob" and props.size == size and meta.get(META_DIGEST) == digest:
                if meta.get(META_COMPLETE) == "true":
                    return None
                present = self._present()
                if present:
                    self.progress.note("upload: resuming an interrupted upload")
                return present
        self._call(
            "create the page blob",
            lambda: self.blob.create_page_blob(
                size, metadata={**self.metadata, META_DIGEST: digest}, lease=self.lease
            ),
        )
        return _Ranges(())

    def _present(self) -> _Ranges:
        def pages() -> list[tuple[int, int]]:
            return [(r.start or 0, (r.end or 0) + 1) for r in self.blob.list_page_ranges() if not r.cleared]

        return _Ranges(self._call("list the blob's pages", pages))

    def _present_or_nothing(self) -> _Ranges:
        """Pages already written to a disk opened for upload; if its SAS may not list them, send all."""
        try:
            return self._present()
        except CredentialsError:
            self.progress.note("upload: cannot list the disk's pages with this SAS; sending every page")
            return _Ranges(())

    def _missing(
        self, pages: Iterable[tuple[int, bytes]], present: _Ranges, stats: UploadStats
    ) -> Iterator[tuple[int, bytes]]:
        for offset, data in pages:
            if len(data) > MAX_PAGE or offset % 512 or len(data) % 512:
                raise ValueError(f"page at {offset} of {len(data)} bytes breaks the Put Page rules")
            if present.covers(offset, len(data)):
                stats.pages_present += 1
                stats.bytes_present += len(data)
                self.progress.advance(len(data))
                continue
            yield offset, data

    def _put_all(self, pages: Iterator[tuple[int, bytes]], stats: UploadStats) -> None:
        """Put pages with `concurrency` workers; stop at the first failure and report the count."""
        failures: list[ImgpubError] = []
        pending: set[Future[None]] = set()
        limit = self.concurrency * IN_FLIGHT_PER_WORKER

        def collect(done: set[Future[None]]) -> None:
            for fut in done:
                exc = fut.exception()
                if isinstance(exc, ImgpubError):
                    failures.append(exc)
                elif exc is not None:
                    raise exc

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="imgpub-azure-page") as pool:
            try:
                for offset, data in pages:
                    if failures:
                        break
                    if len(pending) >= limit:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        collect(done)
                    pending.add(pool.submit(self._put_page, offset, data, stats))
            finally:
                done, _ = wait(pending)
                collect(done)
        if failures:
            first = failures[0]
            raise CloudError(
                self.target,
                "upload pages",
                f"{len(failures)} page(s) failed, first: {getattr(first, 'message', first)}",
                code=getattr(first, "code", None),
            ) from first

    def _put_page(self, offset: int, data: bytes, stats: UploadStats) -> None:
        self._call(
            f"put page at byte {offset}",
            lambda: self.blob.upload_page(data, offset, len(data), validate_content=True, lease=self.lease),
        )
        stats.sent(len(data))
        self.progress.advance(len(data))

    def _mark_complete(self, digest: str) -> None:
        self._call(
            "mark the upload complete",
            lambda: self.blob.set_blob_metadata(
                {**self.metadata, META_DIGEST: digest, META_COMPLETE: "true"}, lease=self.lease
            ),
        )

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        return call(fn, target=self.target, operation=operation, retry=self.retry)
