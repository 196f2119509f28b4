"""Azure naming rules and the default names imgpub derives from the manifest.

The rules are learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
(Microsoft.Resources, Microsoft.Compute, Microsoft.Storage) and the Compute REST API's own
patterns. Each `*_problem` function says why a name breaks its rule (None when it does not); the
settings model turns them into field errors (exit 2, at the field's line).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "DEFINITION_NAME",
    "GALLERY_NAME",
    "IMAGE_NAME",
    "blob_name",
    "container_problem",
    "default_definition",
    "default_image_name",
    "definition_problem",
    "encryption_set_problem",
    "gallery_problem",
    "gallery_version_problem",
    "image_name_problem",
    "region_key",
    "resource_group_problem",
    "storage_account_problem",
    "subscription_problem",
    "text",
    "upload_disk_name",
]

IMAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
"""Managed image: 1-80; alphanumerics, '_', '.', '-'; starts alphanumeric, ends alphanumeric or '_'."""
GALLERY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]{0,78}[A-Za-z0-9])?$")
"""Gallery: 1-80; alphanumerics, '_' and '.' (no hyphens, for portability); alphanumeric ends."""
DEFINITION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9])?$")
"""Image definition: 1-80; alphanumerics, '_', '-', '.'; starts and ends alphanumeric."""
STORAGE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ENCRYPTION_SET = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/diskEncryptionSets/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
ENCRYPTION_SET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_RESOURCE_GROUP_LETTERS = {"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"}
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_INT32_MAX = 2**31 - 1


def resource_group_problem(name: str) -> str | None:
    """1-90 letters or digits (any script), '_', '-', '.', '(' and ')'; not ending in '.'."""
    bad = sorted(
        {c for c in name if c not in "_-.()" and unicodedata.category(c) not in _RESOURCE_GROUP_LETTERS}
    )
    rule = "resource group names take 1-90 letters, digits, '_', '-', '.', '(' and ')', and do not end in '.'"
    if bad:
        listed = " and ".join(", ".join(repr(c) for c in bad).rsplit(", ", 1))
        return f"{rule}; {listed} {'is' if len(bad) == 1 else 'are'} not allowed"
    if not 1 <= len(name) <= 90 or name.endswith("."):
        return rule
    return None


def storage_account_problem(name: str) -> str | None:
    if STORAGE_ACCOUNT.match(name):
        return None
    return "storage account names are 3-24 lowercase letters and digits"


def container_problem(name: str) -> str | None:
    if CONTAINER.match(name):
        return None
    return (
        "container names are 3-63 lowercase letters, digits and hyphens, start and end with a letter "
        "or digit, and have no '--'"
    )


def subscription_problem(value: str) -> str | None:
    if SUBSCRIPTION.match(value):
        return None
    return "a subscription ID is a GUID, e.g. 00000000-0000-0000-0000-000000000000"


def gallery_problem(name: str) -> str | None:
    if GALLERY_NAME.match(name):
        return None
    return "gallery names are 1-80 letters, digits, '_' and '.', starting and ending with a letter or digit"


def definition_problem(name: str) -> str | None:
    if DEFINITION_NAME.match(name):
        return None
    return (
        "image definition names are 1-80 letters, digits, '_', '-' and '.', starting and ending with a "
        "letter or digit"
    )


def image_name_problem(name: str) -> str | None:
    if IMAGE_NAME.match(name):
        return None
    return (
        f"{name!r} is not a valid managed image name "
        "(1-80 of A-Z a-z 0-9 _ . -, starting alphanumeric, ending alphanumeric or _)"
    )


def encryption_set_problem(value: str) -> str | None:
    """A disk encryption set resource ID, in full."""
    form = (
        "a disk encryption set is its resource ID: /subscriptions/<subscription id>/resourceGroups/"
        "<group>/providers/Microsoft.Compute/diskEncryptionSets/<name>"
    )
    match = ENCRYPTION_SET.match(value)
    if match is None:
        return form
    why = (
        subscription_problem(match["sub"])
        or resource_group_problem(match["rg"])
        or (
            None
            if ENCRYPTION_SET_NAME.match(match["name"])
            else "the set's name is 1-80 letters, digits, '_', '-'"
        )
    )
    return f"{form} ({why})" if why else None


def gallery_version_problem(version: str) -> str | None:
    """Why `version` is not a valid gallery image version (MAJOR.MINOR.PATCH, 32-bit parts), or None."""
    match = _VERSION.match(version)
    if not match:
        return f"{version!r} is not MAJOR.MINOR.PATCH (digits only)"
    if any(int(part) > _INT32_MAX for part in match.groups()):
        return f"{version!r}: each part must be at most {_INT32_MAX}"
    return None


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


def upload_disk_name(image_name: str, run: str) -> str:
    """`<image>-upload-<run>`: each run (each state dir) uploads into its own disk, so two runs at
    once never write, revoke or delete each other's (a disk has no lease to share one safely)."""
    suffix = f"-upload-{run[:8]}"
    return _clean(image_name, "-._", 80 - len(suffix)) + suffix


def region_key(region: str | None) -> str:
    """A region as a comparable key: 'West Europe' and 'westeurope' are the same region."""
    return (region or "").replace(" ", "").lower()


def text(value: object) -> str:
    """An SDK enum or string as the service spells it ('Linux', not 'OperatingSystemTypes.LINUX')."""
    inner = getattr(value, "value", value)
    return "" if inner is None else str(inner)
