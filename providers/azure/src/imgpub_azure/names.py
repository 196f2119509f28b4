"""Azure naming rules (cloud-formats §6.2) and the default names imgpub derives from the manifest."""

from __future__ import annotations

import re

__all__ = [
    "DEFINITION_NAME",
    "GALLERY_NAME",
    "IMAGE_NAME",
    "blob_name",
    "default_definition",
    "default_image_name",
    "gallery_version_problem",
    "region_key",
    "text",
    "upload_disk_name",
]

IMAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
"""Managed image: 1-80; alphanumerics, '_', '.', '-'; starts alphanumeric, ends alphanumeric or '_'."""
GALLERY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]{0,78}[A-Za-z0-9])?$")
"""Gallery: 1-80; alphanumerics, '_' and '.' (no hyphens, for portability); alphanumeric ends."""
DEFINITION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,78}[A-Za-z0-9])?$")
"""Image definition: 1-80; alphanumerics, '-', '.'; starts and ends alphanumeric."""
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_INT32_MAX = 2**31 - 1


def _clean(text: str, allowed: str, limit: int = 80) -> str:
    out = re.sub(rf"[^A-Za-z0-9{re.escape(allowed)}]+", "-" if "-" in allowed else ".", text)
    out = re.sub(r"[-._]{2,}", lambda m: m.group(0)[0], out)
    out = out[:limit].strip("-._") or "image"
    return out


def default_image_name(name: str, version: str) -> str:
    """`<name>-<version>` made valid as a managed image name."""
    return _clean(f"{name}-{version}", "-._")


def default_definition(name: str) -> str:
    """The image name made valid as an image definition name."""
    return _clean(name, "-.")


def blob_name(image_name: str) -> str:
    return f"{image_name}.vhd"


def upload_disk_name(image_name: str) -> str:
    return _clean(f"{image_name}-upload", "-._")


def gallery_version_problem(version: str) -> str | None:
    """Why `version` is not a valid gallery image version (MAJOR.MINOR.PATCH, 32-bit parts), or None."""
    match = _VERSION.match(version)
    if not match:
        return f"{version!r} is not MAJOR.MINOR.PATCH (digits only)"
    if any(int(part) > _INT32_MAX for part in match.groups()):
        return f"{version!r}: each part must be at most {_INT32_MAX}"
    return None


def region_key(region: str | None) -> str:
    """A region as a comparable key: 'West Europe' and 'westeurope' are the same region."""
    return (region or "").replace(" ", "").lower()


def text(value: object) -> str:
    """An SDK enum or string as the service spells it ('Linux', not 'OperatingSystemTypes.LINUX')."""
    inner = getattr(value, "value", value)
    return "" if inner is None else str(inner)
