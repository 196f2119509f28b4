"""The tags that let a re-run find what imgpub made: name, version, digest and a managed-by marker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import ImageInfo

__all__ = ["digest_of", "identity_tags"]

MAX_VALUE = 256
"""Azure tag values are at most 256 characters."""


def identity_tags(image: ImageInfo, digest: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's tags plus imgpub's identity tags (which win)."""
    tags = dict(extra or {})
    tags.update(
        {
            TAG_NAME: image.name[:MAX_VALUE],
            TAG_VERSION: image.version[:MAX_VALUE],
            TAG_DIGEST: digest,
            TAG_MANAGED: "imgpub",
        }
    )
    return tags


def digest_of(resource: Any) -> str | None:
    """The imgpub digest a resource is tagged with, or None (not made by imgpub)."""
    tags = getattr(resource, "tags", None) or {}
    value = tags.get(TAG_DIGEST)
    return str(value) if value else None
