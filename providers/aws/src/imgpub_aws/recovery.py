"""Resources in a failed state: never published, so publish removes them and makes them again.

A `failed` AMI (or `error`, `invalid`) is deregistered and its snapshots deleted, except a completed
home-region snapshot of this very digest, which the new AMI reuses instead of a second upload. A
snapshot in `error` is deleted. `plan` lists both as `delete` actions and `status` as drift.

These are removed whoever made them (another run's failed AMI is as dead as ours, and never becomes
usable); a removal that finds them gone already (another run, a retry) is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgpub.identity import TAG_DIGEST
from imgpub.progress import Progress
from imgpub_aws.errors import Caller
from imgpub_aws.inventory import Found, snapshot_ids
from imgpub_aws.removal import delete_snapshot, deregister
from imgpub_aws.tags import tag_dict

__all__ = ["Wreck", "clear_failed", "wrecks"]


@dataclass(frozen=True)
class Wreck:
    """One failed AMI or error snapshot, and what publish does about it."""

    region: str
    resource: str
    detail: str

    @property
    def drift(self) -> str:
        return f"{self.region}: {self.detail}; not published (publish removes it and makes it again)"


def wrecks(found: dict[str, Found]) -> list[Wreck]:
    out = []
    for region, f in found.items():
        for img in f.failed():
            reason = (img.get("StateReason") or {}).get("Message") or "no reason given"
            out.append(Wreck(region, img["ImageId"], f"{img['ImageId']} is {img.get('State')} ({reason})"))
        for snap in f.broken_snapshots():
            reason = snap.get("StateMessage") or "no reason given"
            out.append(
                Wreck(region, snap["SnapshotId"], f"snapshot {snap['SnapshotId']} is error ({reason})")
            )
    return out


def clear_failed(
    ec2_for: Any, call: Caller, progress: Progress, found: dict[str, Found], *, home: str, digest: str
) -> bool:
    """Deregister failed AMIs and delete error snapshots; True when anything was removed."""
    changed = False
    for region, f in found.items():
        ec2 = ec2_for(region)
        for img in f.failed():
            deregister(ec2, call, region, img["ImageId"])
            progress.note(f"{region}: deregistered {img['ImageId']}, which is {img.get('State')}")
            for snap_id in snapshot_ids(img):
                known = f.snapshots.get(snap_id, {})
                reusable = (
                    region == home
                    and known.get("State") == "completed"
                    and tag_dict(known).get(TAG_DIGEST) == digest
                )
                if not reusable:
                    delete_snapshot(ec2, call, region, snap_id)
            changed = True
        for snap in f.broken_snapshots():
            delete_snapshot(ec2, call, region, snap["SnapshotId"])
            progress.note(f"{region}: deleted snapshot {snap['SnapshotId']}, which is in error")
            changed = True
    return changed
