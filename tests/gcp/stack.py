"""Helpers shared by the gcp tests: the test project, an ImageInfo and a Context for a settings model."""

from __future__ import annotations

from typing import Any

from imgpub.disk import DiskImage
from imgpub.identity import image_digest
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context, ImageInfo
from imgpub.retry import FAST
from imgpub_gcp import GcpSettings

PROJECT = "imgpub-test"


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
