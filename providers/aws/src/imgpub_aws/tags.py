"""The tags every AMI and snapshot carries: imgpub's identity, the image's labels and the target's tags.

`image.labels` and the target's `tags` both become tags. A key set in both must have the same value
in both: which one was meant cannot be guessed, so a clash is an error rather than a precedence.
AWS's tag rules (EC2 and EBS, for every resource): at most 50 tags, keys 1-127 characters and not
starting with `aws:`, values at most 255, and the characters every AWS service accepts in tags
(letters, digits, spaces and `+ - = . _ : / @`; EC2 alone takes more, but the tagging, cost and
resource-group services that read these tags do not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import ImageInfo, Problem
from imgpub_aws.names import AMI_CHARS
from imgpub_aws.settings import AwsSettings

__all__ = ["all_tags", "ami_name", "identity_tags", "image_name", "tag_dict", "tag_list", "tag_problems"]

MAX_TAGS = 50
"""Tags per AMI or snapshot (EC2 and the EBS direct StartSnapshot alike)."""
IDENTITY_TAGS = 5
"""imgpub:name, imgpub:version, imgpub:digest and imgpub:managed-by, and imgpub:deleting, which a
delete puts on a version's snapshots before it removes anything (catalog.py)."""
MAX_KEY, MAX_VALUE = 127, 255
"""EBS StartSnapshot's TagKey / TagValue limits (EC2's own value limit, 256, is one more)."""
_RESERVED = ("aws:", "imgpub:")
"""Any other character is fine: EC2 tags, and EBS StartSnapshot's TagKey/TagValue (`[\\S\\s]`), take
all of Unicode; the narrower cross-service set binds only services imgpub does not tag."""


def _field(mapping: str, key: str) -> str:
    """`tags.team`, or `tags["app.tier"]` for a key a dotted path would split (or read as an index)."""
    if re.fullmatch(r"[^.\[\]\"']+", key) and not key.isdigit():
        return f"{mapping}.{key}"
    quote = "'" if '"' in key else '"'
    return f"{mapping}[{quote}{key}{quote}]"


def _one_tag(field: str, key: str, value: str) -> list[Problem]:
    if key.lower().startswith(_RESERVED):
        return [Problem(field, f"tag keys starting with {' or '.join(_RESERVED)} are reserved")]
    if not 1 <= len(key) <= MAX_KEY:
        return [Problem(field, f"tag keys are 1-{MAX_KEY} characters; {key[:20]!r}... has {len(key)}")]
    if len(value) > MAX_VALUE:
        return [Problem(field, f"tag values are at most {MAX_VALUE} characters; this one has {len(value)}")]
    return []


def tag_problems(image: ImageInfo, settings: AwsSettings) -> list[Problem]:
    """Every label and tag that AWS would refuse, a key set twice with two values, and the count."""
    out: list[Problem] = []
    for key, value in image.labels.items():
        out += _one_tag(_field("image.labels", key), key, value)
    for key, value in settings.tags.items():
        out += _one_tag(_field("tags", key), key, value)
        if key in image.labels and image.labels[key] != value:
            out.append(
                Problem(
                    _field("tags", key),
                    f"image.labels sets {key}={image.labels[key]!r} and tags sets {key}={value!r}; "
                    "a tag has one value, so keep one of them",
                )
            )
    count = len({**image.labels, **settings.tags})
    if count + IDENTITY_TAGS > MAX_TAGS:
        out.append(
            Problem(
                "tags",
                f"image.labels and tags make {count} tags; AWS allows {MAX_TAGS} per AMI and snapshot, "
                f"{IDENTITY_TAGS} of them kept for imgpub, so at most {MAX_TAGS - IDENTITY_TAGS}",
            )
        )
    return out


def image_name(image: ImageInfo, settings: AwsSettings) -> str:
    return settings.image_name or image.name


def ami_name(image: ImageInfo, settings: AwsSettings) -> str:
    """settings.ami_name, or `<name>-<version>` with characters AMIs refuse replaced by '-'."""
    if settings.ami_name:
        return settings.ami_name
    raw = f"{image_name(image, settings)}-{image.version}"
    clean = re.sub(rf"[^{AMI_CHARS}]", "-", raw)[:128]
    return clean.ljust(3, "-")


def identity_tags(image: ImageInfo, settings: AwsSettings, digest: str) -> dict[str, str]:
    return {
        TAG_NAME: image_name(image, settings),
        TAG_VERSION: image.version,
        TAG_DIGEST: digest,
        TAG_MANAGED: "imgpub",
    }


def all_tags(image: ImageInfo, settings: AwsSettings, digest: str) -> dict[str, str]:
    """Labels, then the target's tags (equal where both set a key: tag_problems refuses a clash),
    then imgpub's identity tags."""
    return {**image.labels, **settings.tags, **identity_tags(image, settings, digest)}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
