"""Everything imgpub holds of one image name in one region, every version at once (prune, the version
matrix, reconcile), in two calls however many versions there are.

Only what carries imgpub's `imgpub:name` tag with this name is ever listed: an AMI that shares the
name but not the tag, or another image's AMIs, are never seen here, so never touched. AMIs are asked
for with IncludeDeprecated and IncludeDisabled (EC2 leaves disabled ones out otherwise).

A delete marks the version's snapshots with `imgpub:deleting` before it deregisters anything: a
snapshot left without its AMI by a delete that stopped (between DeregisterImage and DeleteSnapshot)
is then told apart from an upload not registered yet, and the next prune finishes the delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from imgpub.identity import TAG_NAME, TAG_VERSION
from imgpub_aws.errors import Caller
from imgpub_aws.inventory import GONE_STATES, snapshot_ids
from imgpub_aws.tags import tag_dict

__all__ = ["TAG_DELETING", "Catalog", "catalog", "parse_time", "users_of"]

TAG_DELETING = "imgpub:deleting"
"""Put on a version's snapshots (with the time) before its delete deregisters anything."""
_FILTER_VALUES = 200
"""Values per DescribeImages filter (EC2 takes up to 200 in one filter)."""


@dataclass
class Catalog:
    """imgpub's AMIs and snapshots of one image name in one region, by version."""

    region: str
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def versions(self) -> set[str]:
        return set(self.images) | set(self.snapshots)

    def marked(self, version: str) -> list[dict[str, Any]]:
        """This version's snapshots that a delete has marked."""
        return [s for s in self.snapshots.get(version, []) if TAG_DELETING in tag_dict(s)]


def _pages(call: Caller, operation: str, region: str, method: Callable[..., Any], key: str) -> list[Any]:
    """Every page of a Describe call (EC2 pages when the answer is large)."""
    out: list[Any] = []
    token: str | None = None
    while True:
        page = call(operation, region, partial(method, **({"NextToken": token} if token else {})))
        out += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return out


def catalog(ec2: Any, call: Caller, region: str, name: str, version: str | None = None) -> Catalog:
    """imgpub's AMIs (any state but deregistered) and snapshots of `name` (of one `version`) here."""
    filters = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
    if version is not None:
        filters.append({"Name": f"tag:{TAG_VERSION}", "Values": [version]})
    images = _pages(
        call,
        "DescribeImages",
        region,
        partial(
            ec2.describe_images,
            Owners=["self"],
            Filters=filters,
            IncludeDeprecated=True,
            IncludeDisabled=True,
        ),
        "Images",
    )
    snapshots = _pages(
        call,
        "DescribeSnapshots",
        region,
        partial(ec2.describe_snapshots, OwnerIds=["self"], Filters=filters),
        "Snapshots",
    )
    out = Catalog(region)
    for img in images:
        tags = tag_dict(img)
        if img.get("State") in GONE_STATES or tags.get(TAG_NAME) != name or not tags.get(TAG_VERSION):
            continue
        out.images.setdefault(tags[TAG_VERSION], []).append(img)
    for snap in snapshots:
        tags = tag_dict(snap)
        if tags.get(TAG_NAME) == name and tags.get(TAG_VERSION):
            out.snapshots.setdefault(tags[TAG_VERSION], []).append(snap)
    if version is not None:
        return Catalog(
            region,
            {version: out.images.get(version, [])},
            {version: out.snapshots.get(version, [])},
        )
    return out


def users_of(ec2: Any, call: Caller, region: str, ids: Iterable[str]) -> dict[str, set[str]]:
    """The AMIs of this account (any state: deprecated and disabled too) that use each snapshot."""
    wanted = sorted(set(ids))
    users: dict[str, set[str]] = {s: set() for s in wanted}
    for start in range(0, len(wanted), _FILTER_VALUES):
        chunk = wanted[start : start + _FILTER_VALUES]
        describe = partial(
            ec2.describe_images,
            Owners=["self"],
            Filters=[{"Name": "block-device-mapping.snapshot-id", "Values": chunk}],
            IncludeDeprecated=True,
            IncludeDisabled=True,
        )
        for img in call("DescribeImages", region, describe).get("Images", []):
            if img.get("State") in GONE_STATES:
                continue
            for snap in snapshot_ids(img):
                if snap in users:
                    users[snap].add(str(img["ImageId"]))
    return users


def parse_time(value: Any) -> datetime | None:
    """An EC2 time (ISO text with Z, or a datetime) in UTC; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
