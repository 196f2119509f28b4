"""The tags that identify imgpub's AMIs and snapshots, and finding what a previous run made."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import ImageInfo, Problem
from imgpub_aws.errors import Caller
from imgpub_aws.settings import AwsSettings

_AMI_CHARS = r"A-Za-z0-9()\[\] ./\-'@_"
AMI_NAME = re.compile(rf"^[{_AMI_CHARS}]{{3,128}}$")


MAX_USER_TAGS = 50 - 4
"""AWS allows 50 tags per resource; imgpub's identity tags take 4."""


def tag_problems(tags: dict[str, str]) -> list[Problem]:
    problems = []
    if len(tags) > MAX_USER_TAGS:
        problems.append(Problem("tags", f"{len(tags)} tags; AWS allows {MAX_USER_TAGS} next to imgpub's own"))
    for key, value in tags.items():
        if key.lower().startswith(("aws:", "imgpub:")):
            problems.append(Problem(f"tags.{key}", "keys starting with aws: or imgpub: are reserved"))
        elif not 1 <= len(key) <= 127 or len(value) > 255:
            problems.append(Problem(f"tags.{key}", "tag keys are 1-127 characters, values at most 255"))
    return problems


def image_name(image: ImageInfo, settings: AwsSettings) -> str:
    return settings.image_name or image.name


def ami_name(image: ImageInfo, settings: AwsSettings) -> str:
    """settings.ami_name, or `<name>-<version>` with characters AMIs refuse replaced by '-'."""
    if settings.ami_name:
        return settings.ami_name
    raw = f"{image_name(image, settings)}-{image.version}"
    clean = re.sub(rf"[^{_AMI_CHARS}]", "-", raw)[:128]
    return clean.ljust(3, "-")


def identity_tags(image: ImageInfo, settings: AwsSettings, digest: str) -> dict[str, str]:
    return {
        TAG_NAME: image_name(image, settings),
        TAG_VERSION: image.version,
        TAG_DIGEST: digest,
        TAG_MANAGED: "imgpub",
    }


def all_tags(image: ImageInfo, settings: AwsSettings, digest: str) -> dict[str, str]:
    return {**settings.tags, **identity_tags(image, settings, digest)}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@dataclass
class Found:
    """imgpub's AMIs for one image name+version in one region."""

    region: str
    images: list[dict[str, Any]] = field(default_factory=list)

    def matching(self, digest: str) -> dict[str, Any] | None:
        for img in self.images:
            if tag_dict(img).get(TAG_DIGEST) == digest and img.get("State") != "failed":
                return img
        return None

    def others(self, digest: str) -> list[dict[str, Any]]:
        return [img for img in self.images if tag_dict(img).get(TAG_DIGEST) != digest]


def find_images(ec2: Any, call: Caller, region: str, name: str, version: str) -> Found:
    filters = [
        {"Name": f"tag:{TAG_NAME}", "Values": [name]},
        {"Name": f"tag:{TAG_VERSION}", "Values": [version]},
    ]
    resp = call(
        "DescribeImages",
        region,
        lambda: ec2.describe_images(Owners=["self"], Filters=filters, IncludeDeprecated=True),
    )
    return Found(region, [i for i in resp.get("Images", []) if i.get("State") not in ("deregistered",)])


def find_snapshot(ec2: Any, call: Caller, region: str, digest: str) -> dict[str, Any] | None:
    """A completed snapshot uploaded for this digest (a run that stopped before RegisterImage)."""
    filters = [{"Name": f"tag:{TAG_DIGEST}", "Values": [digest]}, {"Name": "status", "Values": ["completed"]}]
    resp = call(
        "DescribeSnapshots", region, lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)
    )
    snaps = resp.get("Snapshots", [])
    return snaps[0] if snaps else None
