"""Retiring one version on AWS, in every region that holds a copy: deprecate, then (later) delete.

Deprecate: EnableImageDeprecation at the first whole minute at least a minute from now (EC2 refuses
a time in the past and rounds seconds); an AMI deprecated by then already is left alone. AWS has no
"replaced by" field: the newest kept version is named in the line said about it.

Delete, in this order, each step safe to repeat and "already gone" counted as done:
1. the version's imgpub snapshots (pending uploads aside) are tagged `imgpub:deleting` in every
   region, before anything is removed: from then on the version is listed as "deleting", and the next
   prune finishes it whatever the policy says;
2. per region, each AMI of the version: public launch permission removed first when it is public,
   then DeregisterImage;
3. DeleteSnapshot of the version's imgpub snapshots (its AMIs' and any left over), except those an
   AMI of another image uses (registered by hand from it), which are kept. A snapshot EC2 still
   counts as in use by the AMI just deregistered is retried; if it stays so, the version fails and
   the next prune deletes it.
Snapshots without imgpub's tags (and AMIs without them) are never touched.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from imgpub.errors import CloudError, TargetError
from imgpub.provider import Context, Release, RetireAction
from imgpub_aws.catalog import TAG_DELETING, Catalog, parse_time, users_of
from imgpub_aws.errors import with_note
from imgpub_aws.inventory import FAILED_STATES
from imgpub_aws.removal import AMI_GONE, SNAPSHOT_GONE, delete_snapshot, deregister
from imgpub_aws.scan import Account, scan
from imgpub_aws.settings import AwsSettings
from imgpub_aws.share import enable_deprecation, first_valid_minute
from imgpub_aws.tags import tag_dict

__all__ = ["retire"]

PUBLIC = {"Group": "all"}


def retire(
    name: str,
    settings: AwsSettings,
    release: Release,
    action: RetireAction,
    ctx: Context,
    replacement: str | None,
) -> list[str]:
    account = Account(settings, ctx)
    scanned = scan(account, name, release.version)
    catalogs = list(scanned.catalogs.values())
    if action == "deprecate":
        done = _deprecate(account, catalogs, release.version, replacement)
    else:
        done = _delete(account, catalogs, release.version)
    return done + scanned.notes()


def _deprecate(account: Account, catalogs: list[Catalog], version: str, replacement: str | None) -> list[str]:
    at = first_valid_minute(account.ctx.now())
    newest = f" (newest kept: {replacement})" if replacement else ""
    done = []
    for found in catalogs:
        for img in found.images[version]:
            ami, state = img["ImageId"], img.get("State")
            if state in FAILED_STATES or state == "pending":
                done.append(f"{found.region}: {ami} left as it is: it is {state}")
                continue
            if state == "disabled":
                continue  # out of use already: counted as deprecated
            have = parse_time(img.get("DeprecationTime"))
            if have is not None and have <= at:
                continue  # deprecated by then already (an earlier run, or by hand)
            enable_deprecation(account.ec2(found.region), account.call, found.region, ami, at)
            done.append(f"{found.region}: {ami} deprecated from {at:%Y-%m-%dT%H:%MZ}{newest}")
    return done


def _delete(account: Account, catalogs: list[Catalog], version: str) -> list[str]:
    stamp = account.ctx.now().isoformat(timespec="seconds")
    for found in catalogs:
        _mark(account, found, version, stamp)
    done: list[str] = []
    stuck: list[str] = []
    for found in catalogs:
        done += _remove(account, found, version, stuck)
    if stuck:
        raise TargetError(
            account.ctx.target,
            f"{version}: {'; '.join(done)}; but EC2 still counts {', '.join(stuck)} in use by the AMI "
            "deregistered: the version stays listed as deleting, and the next prune deletes them",
        )
    return done


def _deletable(found: Catalog, version: str) -> list[dict[str, Any]]:
    """The version's imgpub snapshots here, except pending ones (an upload in progress)."""
    return [s for s in found.snapshots[version] if s.get("State") != "pending"]


def _mark(account: Account, found: Catalog, version: str, stamp: str) -> None:
    ec2, region = account.ec2(found.region), found.region
    tags = [{"Key": TAG_DELETING, "Value": stamp}]
    for snap in _deletable(found, version):
        if TAG_DELETING in tag_dict(snap):
            continue
        create = partial(ec2.create_tags, Resources=[snap["SnapshotId"]], Tags=tags)
        try:
            account.call("CreateTags", region, create)
        except CloudError as exc:
            if exc.code in SNAPSHOT_GONE:
                continue  # deleted meanwhile (another prune): nothing to mark
            raise with_note(exc, "nothing of this version was deleted") from exc


def _remove(account: Account, found: Catalog, version: str, stuck: list[str]) -> list[str]:
    ec2, region, call = account.ec2(found.region), found.region, account.call
    done: list[str] = []
    deregistered: set[str] = set()
    for img in found.images[version]:
        ami = img["ImageId"]
        if img.get("Public"):
            remove = partial(ec2.modify_image_attribute, ImageId=ami, LaunchPermission={"Remove": [PUBLIC]})
            try:
                call("ModifyImageAttribute", region, remove)
                done.append(f"{region}: removed public launch permission of {ami}")
            except CloudError as exc:
                if exc.code not in AMI_GONE:
                    raise
        if deregister(ec2, call, region, ami):
            done.append(f"{region}: deregistered {ami}")
        deregistered.add(ami)
    snaps = _deletable(found, version)
    users = users_of(ec2, call, region, (s["SnapshotId"] for s in snaps)) if snaps else {}
    for snap in snaps:
        snap_id = snap["SnapshotId"]
        others = users.get(snap_id, set()) - deregistered
        if others:
            done.append(f"{region}: kept snapshot {snap_id}: {', '.join(sorted(others))} uses it")
            continue
        outcome = delete_snapshot(ec2, call, region, snap_id, settling=True)
        if outcome == "deleted":
            done.append(f"{region}: deleted snapshot {snap_id}")
        elif outcome == "in use":
            stuck.append(f"{snap_id} ({region})")
    done += [
        f"{region}: left snapshot {s['SnapshotId']}: still pending (an upload in progress)"
        for s in found.snapshots[version]
        if s.get("State") == "pending"
    ]
    return done
