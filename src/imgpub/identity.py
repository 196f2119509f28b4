"""Image identity: the digest and the tag/label names that let a re-run find what exists."""

from __future__ import annotations

import hashlib
import json
from typing import Any

TAG_NAME = "imgpub:name"
TAG_VERSION = "imgpub:version"
TAG_DIGEST = "imgpub:digest"
TAG_MANAGED = "imgpub:managed-by"

# GCE labels allow only [a-z0-9_-] in keys.
LABEL_NAME = "imgpub-name"
LABEL_VERSION = "imgpub-version"
LABEL_DIGEST = "imgpub-digest"

DIGEST_LENGTH = 24
"""Hex characters kept: 96 bits, short enough for every cloud's label/tag value limits."""


def image_digest(content_digest: str, registration: dict[str, Any]) -> str:
    """Digest of the guest content and the settings that shape the registered image."""
    blob = json.dumps({"content": content_digest, "registration": registration}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:DIGEST_LENGTH]


def label_safe(value: str) -> str:
    """A value valid as a GCE label value: lowercase [a-z0-9_-], at most 63 characters."""
    out = "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else "-" for c in value.lower())
    return out[:63]
