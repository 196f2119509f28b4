"""Every version of an image on an AWS target: its state, age, regions and drift, from the tags.

A version's AMIs are grouped by `imgpub:version` across the target's regions (two Describe calls per
region, whatever the number of versions). Its state:

* `deleting`: a delete marked its snapshots (`imgpub:deleting`) and stopped; the next prune finishes it;
* `failed`: an AMI is failed (or a snapshot is in error and no AMI exists);
* `pending`: an AMI is still being made, or only an upload exists (no AMI yet);
* `deprecated`: every AMI's DeprecationTime is at or before now (a disabled AMI counts as deprecated);
* `active` otherwise.

`created` is its oldest AMI's CreationDate (its oldest snapshot's StartTime while it has none).
A snapshot of the version that an AMI of another image uses (registered by hand from it) is no longer
this version's: it is left out, and never deleted.

Drift is what costs no call per AMI: tags missing on an AMI or its snapshots (imgpub's, the target's
`tags`, and the home AMI's labels), another digest in some region, public or not as the settings
say, launch permissions for `share_accounts` (one DescribeImages per region and account, with
ExecutableUsers), and the deprecation time. Organization and OU sharing and snapshot
createVolumePermission are not checked here (`imgpub status` checks them for the manifest's version).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from imgpub.errors import TargetError
from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import Artifact, Context, Release, ReleaseState
from imgpub_aws.catalog import TAG_DELETING, Catalog, parse_time, users_of
from imgpub_aws.inventory import FAILED_STATES, snapshot_ids
from imgpub_aws.scan import Account, scan
from imgpub_aws.settings import AwsSettings
from imgpub_aws.share import deprecation_change
from imgpub_aws.tags import tag_dict

__all__ = ["deprecation_origin", "earliest_deprecation", "list_releases", "release_tags", "source_image"]

USABLE = ("available", "disabled")
"""AMI states whose tags, permissions and deprecation are looked at (and set by reconcile)."""


def release_tags(
    name: str, version: str, digest: str | None, settings: AwsSettings, source: dict[str, Any] | None
) -> dict[str, str]:
    """The tags every AMI and snapshot of this version should carry: the source AMI's own (its labels,
    as they were when it was published), the target's `tags`, and imgpub's identity tags."""
    own = {
        k: v
        for k, v in (tag_dict(source) if source else {}).items()
        if not k.startswith("aws:") and k != TAG_DELETING
    }
    identity = {TAG_NAME: name, TAG_VERSION: version, TAG_MANAGED: "imgpub"}
    if digest:
        identity[TAG_DIGEST] = digest
    return {**own, **settings.tags, **identity}


def source_image(
    settings: AwsSettings, holders: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]] | None:
    """The copy to take tags (and copies) from: the home region's, else the first region's."""
    for region in [settings.region, *holders]:
        if region in holders:
            return region, holders[region]
    return None


def deprecation_origin(
    settings: AwsSettings, source: tuple[str, dict[str, Any]] | None, oldest: datetime | None
) -> Any:
    """What a relative `deprecate_after` counts from: the home AMI's creation, as publish counts it,
    else the version's oldest AMI's."""
    if source is not None and source[0] == settings.region:
        return source[1].get("CreationDate")
    return oldest


def earliest_deprecation(images: list[dict[str, Any]]) -> datetime | None:
    """The soonest DeprecationTime among a version's AMIs: the version's own deprecation everywhere."""
    times = [t for img in images if (t := parse_time(img.get("DeprecationTime"))) is not None]
    return min(times) if times else None


def _deprecated(img: dict[str, Any], now: datetime) -> bool:
    when = parse_time(img.get("DeprecationTime"))
    return img.get("State") == "disabled" or (when is not None and when <= now)


def _state(images: list[dict[str, Any]], snapshots: list[dict[str, Any]], now: datetime) -> ReleaseState:
    if any(TAG_DELETING in tag_dict(s) for s in snapshots):
        return "deleting"
    if not images:
        return "failed" if any(s.get("State") == "error" for s in snapshots) else "pending"
    if any(img.get("State") in FAILED_STATES for img in images):
        return "failed"
    if any(img.get("State") not in USABLE for img in images):
        return "pending"
    return "deprecated" if all(_deprecated(img, now) for img in images) else "active"


def _shared(account: Account, found: Catalog, name: str) -> dict[tuple[str, str], set[str]]:
    """(region, account) -> the AMIs of this image with an explicit launch permission for it."""
    out: dict[tuple[str, str], set[str]] = {}
    if not found.images:
        return out
    filters = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
    ec2 = account.ec2(found.region)
    for user in account.settings.share_accounts:
        describe = partial(ec2.describe_images, Owners=["self"], ExecutableUsers=[user], Filters=filters)
        images = account.call("DescribeImages", found.region, describe).get("Images", [])
        out[(found.region, user)] = {str(i["ImageId"]) for i in images}
    return out


def _handed_over(account: Account, found: Catalog) -> set[str]:
    """Snapshots no AMI of their own version uses, that another AMI uses: not this image's any more."""
    loose = []
    for version, snaps in found.snapshots.items():
        used = {i for img in found.images.get(version, []) for i in snapshot_ids(img)}
        loose += [s["SnapshotId"] for s in snaps if s["SnapshotId"] not in used]
    if not loose:
        return set()
    users = users_of(account.ec2(found.region), account.call, found.region, loose)
    return {s for s, amis in users.items() if amis}


class _Version:
    """One version's AMIs and snapshots, region by region."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.images: dict[str, list[dict[str, Any]]] = {}
        self.snapshots: dict[str, list[dict[str, Any]]] = {}

    def all_images(self) -> list[dict[str, Any]]:
        return [img for imgs in self.images.values() for img in imgs]

    def all_snapshots(self) -> list[dict[str, Any]]:
        return [s for snaps in self.snapshots.values() for s in snaps]


def list_releases(name: str, settings: AwsSettings, ctx: Context) -> list[Release]:
    account = Account(settings, ctx)
    scanned = scan(account, name)
    versions: dict[str, _Version] = {}
    shared: dict[tuple[str, str], set[str]] = {}
    for region, found in list(scanned.catalogs.items()):
        try:
            gone = _handed_over(account, found)
            shared.update(_shared(account, found, name))
        except TargetError as exc:  # answered the listing, then stopped answering
            if not scanned.skip(region, exc):
                raise
            continue
        for version in sorted(found.versions):
            v = versions.setdefault(version, _Version(version))
            if found.images.get(version):
                v.images[region] = found.images[version]
            snaps = [s for s in found.snapshots.get(version, []) if s["SnapshotId"] not in gone]
            if snaps:
                v.snapshots[region] = snaps
    versions = {k: v for k, v in versions.items() if v.images or v.snapshots}
    known = {
        s["SnapshotId"]
        for found in scanned.catalogs.values()
        for snaps in found.snapshots.values()
        for s in snaps
    }
    skipped = [f"{r}: not checked ({why})" for r, why in scanned.skipped.items()]
    return [_release(name, settings, v, ctx.now(), shared, known, skipped) for v in versions.values()]


def _release(
    name: str,
    settings: AwsSettings,
    v: _Version,
    now: datetime,
    shared: dict[tuple[str, str], set[str]],
    known: set[str],
    skipped: list[str],
) -> Release:
    images, snapshots = v.all_images(), v.all_snapshots()
    created_at = [t for img in images if (t := parse_time(img.get("CreationDate")))]
    created_at = created_at or [t for s in snapshots if (t := parse_time(s.get("StartTime")))]
    order = [r for r in settings.all_regions if r in v.images] or [
        r for r in settings.all_regions if r in v.snapshots
    ]
    holders = {r: v.images[r][0] for r in settings.all_regions if r in v.images}
    source = source_image(settings, holders)
    digest = tag_dict(source[1]).get(TAG_DIGEST) if source else None
    if digest is None and snapshots:
        digest = tag_dict(snapshots[0]).get(TAG_DIGEST)
    state = _state(images, snapshots, now)
    created = min(created_at) if created_at else None
    drift: list[str] = []
    if state in ("active", "deprecated"):
        drift = _drift(
            name,
            settings,
            v,
            source,
            digest,
            deprecation_origin(settings, source, created),
            now,
            shared,
            known,
        )
    artifacts = [
        Artifact(
            "ami",
            img["ImageId"],
            region,
            extra={
                "name": img.get("Name"),
                "state": img.get("State"),
                "digest": tag_dict(img).get(TAG_DIGEST),
                "snapshots": snapshot_ids(img),
                "deprecation": img.get("DeprecationTime"),
            },
        )
        for region, imgs in v.images.items()
        for img in imgs
    ]
    used = {s for img in images for s in snapshot_ids(img)}
    artifacts += [
        Artifact("snapshot", s["SnapshotId"], region, extra={"state": s.get("State")})
        for region, snaps in v.snapshots.items()
        for s in snaps
        if s["SnapshotId"] not in used
    ]
    return Release(
        v.version,
        state,
        created,
        regions=tuple(order),
        digest=digest,
        artifacts=tuple(artifacts),
        drift=tuple(skipped + drift),
    )


def _drift(
    name: str,
    settings: AwsSettings,
    v: _Version,
    source: tuple[str, dict[str, Any]] | None,
    digest: str | None,
    created: Any,
    now: datetime,
    shared: dict[tuple[str, str], set[str]],
    known: set[str],
) -> list[str]:
    wanted = release_tags(name, v.version, digest, settings, source[1] if source else None)
    earliest = earliest_deprecation(v.all_images())
    by_id = {s["SnapshotId"]: s for s in v.all_snapshots()}
    out: list[str] = []
    for region, imgs in v.images.items():
        for img in imgs:
            ami = img["ImageId"]
            tags = tag_dict(img)
            if digest and tags.get(TAG_DIGEST) != digest:
                where = source[0] if source else "the home region"
                out.append(f"{region}: {ami} has digest {tags.get(TAG_DIGEST)}, {where} has {digest}")
                continue
            lacking = [f"{k}={val}" for k, val in wanted.items() if tags.get(k) != val]
            if lacking:
                out.append(f"{region}: {ami} lacks tags {', '.join(lacking)}")
            for snap in snapshot_ids(img):
                if snap not in by_id:
                    why = f"{TAG_NAME}={name}" if snap not in known else f"{TAG_VERSION}={v.version}"
                    out.append(f"{region}: snapshot {snap} of {ami} lacks tags {why}")
                    continue
                have = tag_dict(by_id[snap])
                lacking = [f"{k}={val}" for k, val in wanted.items() if have.get(k) != val]
                if lacking:
                    out.append(f"{region}: snapshot {snap} of {ami} lacks tags {', '.join(lacking)}")
            out += _permission_drift(settings, region, img, shared)
            due = deprecation_change(settings, img, created, now, earliest)
            if due is not None and img.get("State") == "available":
                have_time = img.get("DeprecationTime") or "unset"
                out.append(f"{region}: {ami} deprecation time is {have_time}, not {due:%Y-%m-%dT%H:%MZ}")
    return out


def _permission_drift(
    settings: AwsSettings, region: str, img: dict[str, Any], shared: dict[tuple[str, str], set[str]]
) -> list[str]:
    ami, public = img["ImageId"], bool(img.get("Public"))
    out = []
    if settings.public and not public:
        out.append(f"{region}: {ami} lacks launch permission {{'Group': 'all'}}")
    if public and not settings.public:
        out.append(f"{region}: {ami} is public, but the manifest says public: false")
    for user in settings.share_accounts:
        if ami not in shared.get((region, user), set()):
            out.append(f"{region}: {ami} lacks launch permission {{'UserId': '{user}'}}")
    return out
