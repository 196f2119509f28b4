"""Snapshots with imgpub's tags that no AMI uses: what a stopped --replace, or a stopped run, left.

They are found by tag, so a run on another machine (without the journal that would have finished the
job) sees them too. What happens to them depends on whose they are:

* this name and version with another digest, completed: the snapshots of an AMI that --replace
  deregistered before the run stopped (killed between DeregisterImage and DeleteSnapshot on a
  machine whose journal is gone). No run of this version can use them (it has other content now).
* this digest, in a copy region: the snapshot of a copy deregistered since (by hand, say). CopyImage
  makes a copy's snapshot together with its AMI, so no run is about to use it.
  publish deletes both kinds in a region once this version's AMI is available there; plan shows it.
* this digest, in the home region: an upload no AMI uses. It may be another run's, a moment before
  its RegisterImage, so publish never deletes it (while no AMI exists, a publish reuses it); status
  reports it.
* other versions: status reports them; publish of this version leaves them alone.

Whether an AMI uses a snapshot is asked of EC2 (`block-device-mapping.snapshot-id`), so an AMI
registered by hand from an imgpub snapshot, without imgpub's tags, keeps it; DeleteSnapshot's
`InvalidSnapshot.InUse` is the last guard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imgpub.identity import TAG_DIGEST, TAG_NAME, TAG_VERSION
from imgpub.progress import Progress
from imgpub_aws.catalog import users_of
from imgpub_aws.errors import Caller
from imgpub_aws.inventory import Found, snapshot_ids
from imgpub_aws.removal import delete_snapshot
from imgpub_aws.tags import tag_dict

__all__ = ["Orphan", "delete_leftovers", "leftovers", "survey"]


@dataclass(frozen=True)
class Orphan:
    region: str
    snapshot_id: str
    version: str
    digest: str
    state: str


def _orphan(region: str, snap: dict[str, Any]) -> Orphan:
    tags = tag_dict(snap)
    return Orphan(
        region,
        snap["SnapshotId"],
        tags.get(TAG_VERSION, "?"),
        tags.get(TAG_DIGEST, "?"),
        str(snap.get("State")),
    )


def unused(ec2: Any, call: Caller, region: str, snapshot_ids_: Iterable[str]) -> set[str]:
    """The snapshots among `snapshot_ids_` that no AMI of this account uses (in any state, deprecated
    and disabled AMIs included)."""
    return {s for s, users in users_of(ec2, call, region, snapshot_ids_).items() if not users}


def leftovers(
    ec2: Any, call: Caller, f: Found, digest: str, *, home: bool, skip: Iterable[str] = ()
) -> list[Orphan]:
    """The orphans of this version publish deletes in this region (`home`: the upload region, where an
    unused snapshot of this digest may be another run's upload), except those in `skip` (the
    journal's --replace record deletes them anyway)."""
    used = {s for img in f.images for s in snapshot_ids(img)} | set(skip)
    candidates = [
        s
        for s in f.snapshots.values()
        if s.get("State") == "completed"
        and (tag_dict(s).get(TAG_DIGEST) != digest or not home)
        and s["SnapshotId"] not in used
    ]
    if not candidates:
        return []
    free = unused(ec2, call, f.region, (s["SnapshotId"] for s in candidates))
    return [_orphan(f.region, s) for s in candidates if s["SnapshotId"] in free]


def why(o: Orphan, digest: str) -> str:
    """What a leftover is an orphan of."""
    if o.digest != digest:
        return f"of replaced content (digest {o.digest})"
    return "of a copy deregistered since"


def delete_leftovers(ec2: Any, call: Caller, progress: Progress, orphans: list[Orphan], digest: str) -> bool:
    """Delete them; True when any was deleted."""
    deleted = False
    for o in orphans:
        outcome = delete_snapshot(ec2, call, o.region, o.snapshot_id)
        if outcome == "in use":
            progress.note(f"{o.region}: kept snapshot {o.snapshot_id}: an AMI uses it now")
        elif outcome == "deleted":
            progress.note(f"{o.region}: deleted orphan snapshot {o.snapshot_id} {why(o, digest)}")
            deleted = True
    return deleted


def survey(
    ec2: Any,
    call: Caller,
    region: str,
    name: str,
    version: str,
    digest: str,
    current: dict[str, Any] | None,
    *,
    home: bool,
) -> list[str]:
    """Status lines for every snapshot of this image name (any version) that no AMI uses.
    `current`: this version's AMI of this digest in the region, if any; `home`: the upload region."""
    filters = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
    snaps = call(
        "DescribeSnapshots", region, lambda: ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)
    ).get("Snapshots", [])
    if not snaps:
        return []
    free = unused(ec2, call, region, (s["SnapshotId"] for s in snaps))
    lines = []
    for snap in snaps:
        if snap["SnapshotId"] not in free:
            continue
        o = _orphan(region, snap)
        line = _line(o, name, version, digest, current, home)
        if line:
            lines.append(line)
    return lines


def _line(
    o: Orphan, name: str, version: str, digest: str, current: dict[str, Any] | None, home: bool
) -> str | None:
    where = f"{o.region}: snapshot {o.snapshot_id} of {name} {o.version}"
    by_hand = f"aws ec2 delete-snapshot --region {o.region} --snapshot-id {o.snapshot_id}"
    if o.state == "pending":
        return (
            f"{where} is pending: an upload in progress, or one a stopped run left (the machine that "
            "started it resumes it; EBS fails it when its timeout runs out, and publish then deletes it)"
        )
    if o.state == "error" and o.version == version:
        return None  # a wreck of this version: reported (and removed by publish) as such
    if o.version != version:
        return f"{where} is an orphan: no AMI uses it; publish of {version} leaves it (delete it: {by_hand})"
    if o.digest != digest or not home:
        return f"{where} is an orphan {why(o, digest)}: no AMI uses it; publish deletes it"
    if current is None:
        return None  # an upload not registered yet: publish registers it (the region shows missing)
    return (
        f"{where} is an orphan: an upload of this content that {current['ImageId']} does not use (a run "
        f"that lost the race to another, stopped before deleting it; or one about to register): {by_hand}"
    )
