"""Deregistering AMIs and deleting snapshots, where "already gone" is success.

A retry after a lost reply finds the AMI or snapshot gone (the first request did it), and so does a
run that overlaps another one removing the same old AMI: both are done, not failures. A snapshot that
an AMI uses (InvalidSnapshot.InUse) is not ours to delete any more: it is kept, and the caller says so.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from imgpub.errors import CloudError
from imgpub_aws.errors import Caller, error_code, is_transient

__all__ = ["AMI_GONE", "SNAPSHOT_GONE", "delete_snapshot", "deregister"]

AMI_GONE = ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable")
SNAPSHOT_GONE = ("InvalidSnapshot.NotFound",)
_IN_USE = ("InvalidSnapshot.InUse",)

Outcome = Literal["deleted", "gone", "in use"]


def deregister(ec2: Any, call: Caller, region: str, image_id: str) -> bool:
    """Deregister `image_id`; False when it was gone already."""
    try:
        call("DeregisterImage", region, partial(ec2.deregister_image, ImageId=image_id))
    except CloudError as exc:
        if exc.code not in AMI_GONE:
            raise
        return False
    return True


def _settling(exc: BaseException) -> bool:
    return is_transient(exc) or error_code(exc) in _IN_USE


def delete_snapshot(
    ec2: Any, call: Caller, region: str, snapshot_id: str, *, settling: bool = False
) -> Outcome:
    """Delete `snapshot_id`: "deleted", "gone" (already), or "in use" (an AMI uses it: kept).

    `settling`: the AMI that used it was deregistered a moment ago, and no other uses it; EC2 may
    still count it in use for a while, so InvalidSnapshot.InUse is retried like throttling."""
    transient = _settling if settling else is_transient
    try:
        call("DeleteSnapshot", region, partial(ec2.delete_snapshot, SnapshotId=snapshot_id), transient)
    except CloudError as exc:
        if exc.code in SNAPSHOT_GONE:
            return "gone"
        if exc.code in _IN_USE:
            return "in use"
        raise
    return "deleted"
