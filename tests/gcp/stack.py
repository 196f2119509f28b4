"""Helpers shared by the gcp tests: the test project, the GCS emulator, an ImageInfo and a Context."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fakes.process import free_port, stop, wait_until_ready
from imgpub.disk import DiskImage
from imgpub.identity import image_digest
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context, ImageInfo
from imgpub.retry import FAST, RetryPolicy
from imgpub_gcp import GcpSettings

PROJECT = "imgpub-test"


@contextmanager
def running_gcs(port: int = 0) -> Iterator[str]:
    """Base URL of an in-memory gcp-storage-emulator on `port` (0: a free one)."""
    port = port or free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(
            proc,
            lambda: _status(url + "/") == 200,
            timeout=20,
            poll=0.05,
            failure=f"gcp-storage-emulator did not start on {url}",
        )
        yield url
    finally:
        stop(proc)


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=1) as r:
        return int(r.status)


def image_info(disk: DiskImage, **overrides: Any) -> ImageInfo:
    fields: dict[str, Any] = {
        "name": "Demo Linux",
        "version": "1.2.3",
        "arch": "x86_64",
        "boot": "uefi",
        "virtual_size": disk.virtual_size,
        "content_digest": "c0ffee" * 10,
        "description": "demo image",
        **overrides,
    }
    return ImageInfo(**fields)


def context(settings: GcpSettings, info: ImageInfo, journal: Journal, **overrides: Any) -> Context:
    fields: dict[str, Any] = {
        "target": settings.name,
        "digest": image_digest(info.content_digest, settings.identity()),
        "journal": journal,
        "progress": RecordingProgress(),
        "retry": FAST,
        **overrides,
    }
    return Context(**fields)


@dataclass(frozen=True)
class RecordingRetry(RetryPolicy):
    """The one retry policy, but its waits are recorded instead of slept (Retry-After tests stay fast)."""

    waits: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sleep", self.waits.append)
