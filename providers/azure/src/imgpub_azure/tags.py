"""Azure tags: the image's labels, the target's tags, and imgpub's identity tags that let a re-run
find what it made (name, version, digest, managed-by).

Azure's rules (resource-name-rules, tag-resources): at most 50 tags per resource, names 1-512
characters without `<>%&\\?/` or control characters, values at most 256; names are
case-insensitive, so `Team` and `team` are one tag. A target tag overrides the label of the very
same name; the same name spelt otherwise is an error, as is anything imgpub cannot represent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import ImageInfo, Problem

__all__ = [
    "DELETING_TAG",
    "DEPRECATED_TAG",
    "MAX_TAGS",
    "belongs_to",
    "definition_tags",
    "digest_of",
    "identity_tags",
    "merged_tags",
    "missing_tags",
    "tag_of",
    "tag_problems",
]

MAX_TAGS = 50
MAX_NAME = 512
MAX_VALUE = 256
"""Azure tag values are at most 256 characters."""
_FORBIDDEN = re.compile(r"[<>%&\\?/\x00-\x1f\x7f]")
_IDENTITY = (TAG_NAME, TAG_VERSION, TAG_DIGEST, TAG_MANAGED)
DEPRECATED_TAG = "imgpub:deprecated"
"""On a managed image: when imgpub deprecated its version (Azure has no deprecation for it)."""
DELETING_TAG = "imgpub:deleting"
"""On a managed image: imgpub started deleting its version (the gallery version goes first). A
publish of that version again clears it."""


def _user_tags(image: ImageInfo, tags: Mapping[str, str]) -> dict[str, str]:
    return {**image.labels, **tags}


def identity_tags(image: ImageInfo, digest: str, tags: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels, then the target's tags, then imgpub's identity tags: for images, versions, upload disks."""
    out = _user_tags(image, tags or {})
    out.update(
        {
            TAG_NAME: image.name[:MAX_VALUE],
            TAG_VERSION: image.version[:MAX_VALUE],
            TAG_DIGEST: digest,
            TAG_MANAGED: "imgpub",
        }
    )
    return out


def definition_tags(image: ImageInfo, tags: Mapping[str, str] | None = None) -> dict[str, str]:
    """A gallery or definition holds many versions: labels, tags, and who manages it."""
    return {**_user_tags(image, tags or {}), TAG_NAME: image.name[:MAX_VALUE], TAG_MANAGED: "imgpub"}


def _field(section: str, key: str) -> str:
    """`tags.team`, or `tags["cost.center"]` for a key the dotted path cannot hold."""
    if not re.search(r"[.\[\]'\"]", key):
        return f"{section}.{key}"
    return f"{section}['{key}']" if '"' in key else f'{section}["{key}"]'


def tag_problems(image: ImageInfo, tags: Mapping[str, str]) -> list[Problem]:
    """Every label or tag Azure cannot take, at `image.labels.<key>` or `tags.<key>`."""
    problems: list[Problem] = []
    seen: dict[str, str] = {name.lower(): "imgpub's own tag" for name in _IDENTITY}
    entries = [(_field("image.labels", k), "label", k, v) for k, v in image.labels.items() if k not in tags]
    entries += [(_field("tags", k), "tag", k, v) for k, v in tags.items()]
    for field, kind, name, value in entries:
        key = name.lower()
        if key.startswith("imgpub:"):
            problems.append(Problem(field, f"{kind} names starting with 'imgpub:' are reserved for imgpub"))
        elif _FORBIDDEN.search(name):
            problems.append(
                Problem(
                    field, f"Azure tag names cannot contain < > % & \\ ? / or control characters ({name!r})"
                )
            )
        elif not 1 <= len(name) <= MAX_NAME:
            problems.append(Problem(field, f"Azure tag names take 1-{MAX_NAME} characters ({len(name)})"))
        elif key in seen:
            problems.append(
                Problem(
                    field,
                    f"{kind} {name!r} is the same Azure tag as {seen[key]} (tag names are case-insensitive)",
                )
            )
        if len(value) > MAX_VALUE:
            problems.append(
                Problem(field, f"Azure tag values take at most {MAX_VALUE} characters ({len(value)})")
            )
        seen.setdefault(key, f"{kind} {name!r}")
    total = len(_user_tags(image, tags)) + len(_IDENTITY)
    if total > MAX_TAGS:
        problems.append(
            Problem(
                "tags",
                f"{total} tags with image.labels and imgpub's {len(_IDENTITY)}; "
                f"Azure takes {MAX_TAGS} per resource",
            )
        )
    return problems


def missing_tags(resource: Any, wanted: Mapping[str, str]) -> dict[str, str]:
    """The wanted tags a resource lacks or holds with another value (names compared as Azure does,
    without case). Tags others put there are not imgpub's business."""
    have = {str(k).lower(): str(v) for k, v in (getattr(resource, "tags", None) or {}).items()}
    return {k: v for k, v in wanted.items() if have.get(k.lower()) != v}


def merged_tags(resource: Any, wanted: Mapping[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The resource's tags with the wanted ones set and those named in `drop` gone (a PATCH replaces
    the whole set)."""
    lowered = {k.lower() for k in (*wanted, *drop)}
    kept = {
        str(k): str(v)
        for k, v in (getattr(resource, "tags", None) or {}).items()
        if str(k).lower() not in lowered
    }
    return {**kept, **wanted}


def digest_of(resource: Any) -> str | None:
    """The imgpub digest a resource is tagged with, or None (not made by imgpub)."""
    tags = getattr(resource, "tags", None) or {}
    value = tags.get(TAG_DIGEST)
    return str(value) if value else None


def tag_of(resource: Any, name: str) -> str | None:
    """The value of tag `name` on a resource (tag names compared as Azure does, without case)."""
    wanted = name.lower()
    for key, value in (getattr(resource, "tags", None) or {}).items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def belongs_to(resource: Any, name: str, version: str | None = None) -> bool:
    """Whether imgpub made `resource` for the image `name` (and `version`): its `imgpub:name` tag says
    so, with an `imgpub:version`. A resource that merely shares a name is never imgpub's."""
    have = tag_of(resource, TAG_VERSION)
    return (
        tag_of(resource, TAG_NAME) == name[:MAX_VALUE]
        and bool(have)
        and (version is None or have == version[:MAX_VALUE])
    )
