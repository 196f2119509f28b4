"""The manifest's source: a local file or an https download, verified against its sha256.

Downloads stream into a sparse cache file under the state dir (zero runs become holes) while being
hashed; a mismatch deletes the file. Digests of local files are cached by (path, size, mtime_ns,
inode), so a re-run does not read the image again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from imgpub.disk import DiskImage
from imgpub.disk.zeros import is_zero
from imgpub.errors import ChecksumMismatchError, ConfigurationError, ImgpubError
from imgpub.hashing import file_sha256
from imgpub.progress import NullProgress, Progress

__all__ = ["DigestCache", "cached_download", "download", "file_sha256", "local_source"]

CHUNK = 1 << 20
GRAIN = 64 << 10
"""Zero runs shorter than this inside a downloaded chunk are written; longer ones become holes."""
TIMEOUT = 60.0
"""Seconds without a byte before a download gives up."""


class DigestCache:
    """sha256 and content digests of files, keyed by (path, size, mtime_ns, inode), in the state dir."""

    _lock = threading.Lock()

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "cache" / "digests.json"

    @staticmethod
    def key(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"

    def get(self, path: Path, kind: str) -> str | None:
        value = self._load().get(self.key(path), {}).get(kind)
        return value if isinstance(value, str) else None

    def put(self, path: Path, kind: str, value: str) -> None:
        with self._lock:
            data = self._load()
            data.setdefault(self.key(path), {})[kind] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".digests.")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, sort_keys=True)
                Path(tmp).replace(self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _kind(self, what: str, path: Path, disk: DiskImage) -> str:
        """`what`, plus the state of every other file the disk is read from (a descriptor's extents,
        an OVF's disk): a change to any of them is a cache miss, not a stale digest."""
        others = [self.key(f) for f in disk.files if f.resolve() != path.resolve()]
        if not others:
            return what
        return f"{what}|{hashlib.sha256('|'.join(sorted(others)).encode()).hexdigest()[:32]}"

    def integrity(self, path: Path, variant: str, disk: DiskImage, progress: Progress | None = None) -> None:
        """Check the digests a container lists for the disk (an OVA's manifest) once per file state:
        a mismatch is an ImageFormatError before anything is published."""
        if disk.integrity is None:
            return
        kind = self._kind(f"integrity:{variant}", path, disk)
        if self.get(path, kind) == "ok":
            return
        if progress is not None:
            progress.stage("verify the package's digests", disk.file_size)
        disk.check_integrity(progress.advance if progress is not None else None)
        self.put(path, kind, "ok")

    def content_digest(self, path: Path, fmt: str, disk: DiskImage, progress: Progress | None = None) -> str:
        from imgpub.disk.digest import content_digest, digest_bytes

        kind = self._kind(f"content:{fmt}", path, disk)
        cached = self.get(path, kind)
        if cached is None:
            if progress is not None:
                progress.stage("digest", digest_bytes(disk))
            cached = content_digest(disk, progress.advance if progress is not None else None)
            self.put(path, kind, cached)
        return cached

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}


def local_source(
    path: Path, sha256: str | None, cache: DigestCache, progress: Progress | None = None
) -> Path:
    """`path`, after checking its sha256 when the manifest gives one (cached across runs)."""
    if sha256 is not None:
        actual = cache.get(path, "sha256")
        if actual is None:
            progress = progress or NullProgress()
            progress.stage("sha256", path.stat().st_size)
            actual = file_sha256(path, progress.advance)
            cache.put(path, "sha256", actual)
        if actual != sha256:
            raise ChecksumMismatchError(str(path), sha256, actual)
    return path


def cached_download(cache_dir: Path, sha256: str) -> Path:
    """Where download() keeps the verified file whose sha256 is `sha256` (it may not exist yet)."""
    return cache_dir / "sources" / sha256


def download(url: str, sha256: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The file at `url`, from the cache or downloaded into it; its sha256 must be `sha256`."""
    dest = cached_download(cache_dir, sha256)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    progress = progress or NullProgress()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{sha256[:16]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            h, size = _stream(url, f.fileno(), progress)
            f.truncate(size)
        if h != sha256:
            raise ChecksumMismatchError(url, sha256, h)
        Path(tmp).replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return dest


def _stream(url: str, fd: int, progress: Progress) -> tuple[str, int]:
    """Copy `url` into `fd`, seeking over all-zero chunks; returns (sha256, size)."""
    if not url.startswith("https://"):
        raise ConfigurationError(f"{url}: only https:// sources can be downloaded")
    h = hashlib.sha256()
    pos = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            length = resp.headers.get("Content-Length")
            progress.stage("download", int(length) if length and length.isdigit() else None)
            while chunk := resp.read(CHUNK):
                h.update(chunk)
                _write_nonzero(fd, chunk, pos)
                pos += len(chunk)
                progress.advance(len(chunk))
            if length and length.isdigit() and pos != int(length):
                raise ImgpubError(f"{url}: download ended after {pos} of {length} bytes")
    except urllib.error.HTTPError as exc:
        err = ConfigurationError if 400 <= exc.code < 500 else ImgpubError
        raise err(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ImgpubError(f"{url}: cannot download: {exc.reason}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise ImgpubError(f"{url}: download failed: {exc}") from None
    return h.hexdigest(), pos


def _write_nonzero(fd: int, chunk: bytes, pos: int) -> None:
    view = memoryview(chunk)
    start = -1
    for off in range(0, len(chunk), GRAIN):
        zero = is_zero(chunk, off, min(off + GRAIN, len(chunk)))
        if not zero and start < 0:
            start = off
        elif zero and start >= 0:
            os.pwrite(fd, view[start:off], pos + start)
            start = -1
    if start >= 0:
        os.pwrite(fd, view[start:], pos + start)
