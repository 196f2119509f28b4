"""What a previous run left in a region: imgpub's AMIs and snapshots of one image name and version.

Everything is found by tag (imgpub:name + imgpub:version), never by a local record. An AMI in a
failed state, or a snapshot in `error`, is never published: it is listed apart so that publish
removes and remakes it, plan shows that, and status reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_NAME, TAG_VERSION
from imgpub_aws.errors import Caller
from imgpub_aws.tags import tag_dict

__all__ = ["FAILED_STATES", "Found", "find_region", "find_snapshot", "snapshot_ids"]

FAILED_STATES = ("failed", "error", "invalid")
"""AMI states that never become `available` (EC2 ImageState): the AMI must be deregistered."""
GONE_STATES = ("deregistered",)


@dataclass
class Found:
    """imgpub's AMIs and snapshots for one image name+version in one region."""

    region: str
    images: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    """This name+version's snapshots in the region by id, in any state."""

    def matching(self, digest: str) -> dict[str, Any] | None:
        """The usable (available or still pending) AMI of this digest."""
        for img in self.live():
            if tag_dict(img).get(TAG_DIGEST) == digest:
                return img
        return None

    def others(self, digest: str) -> list[dict[str, Any]]:
        """Usable AMIs of this name+version with other content: a conflict."""
        return [img for img in self.live() if tag_dict(img).get(TAG_DIGEST) != digest]

    def live(self) -> list[dict[str, Any]]:
        return [img for img in self.images if img.get("State") not in FAILED_STATES]

    def failed(self) -> list[dict[str, Any]]:
        return [img for img in self.images if img.get("State") in FAILED_STATES]

    def broken_snapshots(self) -> list[dict[str, Any]]:
        """Snapshots in `error` that no AMI uses (a failed AMI's go with it; a usable AMI's cannot)."""
        used = {s for img in self.images for s in snapshot_ids(img)}
        return [
            s for s in self.snapshots.values() if s.get("State") == "error" and s["SnapshotId"] not in used
        ]


def find_region(ec2: Any, call: Caller, region: str, name: str, version: str) -> Found:
    filters = [
        {"Name": f"tag:{TAG_NAME}", "Values": [name]},
        {"Name": f"tag:{TAG_VERSION}", "Values": [version]},
    ]
    images = call(
        "DescribeImages",
        region,
        lambda: ec2.describe_images(Owners=["self"], Filters=filters, IncludeDeprecated=True),
    ).get("Images", [])
    snapshots = call(
        "DescribeSnapshots", region, lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)
    ).get("Snapshots", [])
    return Found(
        region,
        [i for i in images if i.get("State") not in GONE_STATES],
        {s["SnapshotId"]: s for s in snapshots},
    )


def find_snapshot(ec2: Any, call: Caller, region: str, digest: str) -> dict[str, Any] | None:
    """A completed snapshot uploaded for this digest (a run that stopped before RegisterImage)."""
    filters = [{"Name": f"tag:{TAG_DIGEST}", "Values": [digest]}, {"Name": "status", "Values": ["completed"]}]
    resp = call(
        "DescribeSnapshots", region, lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)
    )
    snaps = resp.get("Snapshots", [])
    return snaps[0] if snaps else None


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [
        m["Ebs"]["SnapshotId"]
        for m in image.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]
