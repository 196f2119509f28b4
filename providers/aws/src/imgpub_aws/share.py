"""Launch permissions (accounts, organizations, OUs, public), snapshot createVolumePermission, deprecation.

EnableImageDeprecation takes a time in UTC that is not in the past (EC2 rounds seconds to the
nearest minute, so imgpub sends whole minutes, at least a minute ahead when the time is due now).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from imgpub.errors import CloudError
from imgpub_aws.errors import Caller
from imgpub_aws.inventory import snapshot_ids
from imgpub_aws.settings import AwsSettings

DEPRECATION_LEAD = timedelta(minutes=1)
"""How far ahead a deprecation due now is sent (the request must still be in the future on arrival)."""
PUBLIC_BLOCKED = (
    "the account blocks public AMIs (image block public access); run "
    "`aws ec2 disable-image-block-public-access --region {region}` or set public: false"
)


def wanted_permissions(settings: AwsSettings) -> list[dict[str, str]]:
    perms = [{"UserId": a} for a in settings.share_accounts]
    perms += [{"OrganizationArn": o} for o in settings.share_organizations]
    perms += [{"OrganizationalUnitArn": u} for u in settings.share_ous]
    if settings.public:
        perms.append({"Group": "all"})
    return perms


def current_permissions(ec2: Any, call: Caller, region: str, image_id: str) -> list[dict[str, str]]:
    resp = call(
        "DescribeImageAttribute",
        region,
        lambda: ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission"),
    )
    return [dict(p) for p in resp.get("LaunchPermissions", [])]


def missing_permissions(settings: AwsSettings, current: list[dict[str, str]]) -> list[dict[str, str]]:
    return [p for p in wanted_permissions(settings) if p not in current]


def share_image(
    ec2: Any,
    call: Caller,
    region: str,
    image: dict[str, Any],
    settings: AwsSettings,
    created: Any = None,
    *,
    now: datetime | None = None,
    earliest: datetime | None = None,
) -> list[str]:
    """Add what is missing; returns a line per change. Never removes permissions it did not add.

    Deprecation: the settings' time (from `created`), or `earliest` when that comes first (a version
    deprecated already elsewhere: reconcile never postpones a deprecation then)."""
    done: list[str] = []
    image_id = image["ImageId"]
    missing = missing_permissions(settings, current_permissions(ec2, call, region, image_id))
    if missing:
        try:
            call(
                "ModifyImageAttribute",
                region,
                lambda: ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": missing}),
            )
        except CloudError as exc:
            if settings.public and exc.code in ("OperationNotPermitted", "InvalidParameter"):
                raise CloudError(
                    call.target,
                    "ModifyImageAttribute",
                    f"{exc.message}; " + PUBLIC_BLOCKED.format(region=region),
                    code=exc.code,
                    region=region,
                ) from exc
            raise
        done.append(f"launch permission {missing} on {image_id}")
    if settings.share_snapshots and settings.share_accounts:
        for snap in snapshot_ids(image):
            users = missing_volume_permissions(ec2, call, region, snap, settings)
            if users:
                call(
                    "ModifySnapshotAttribute",
                    region,
                    partial(
                        ec2.modify_snapshot_attribute,
                        SnapshotId=snap,
                        Attribute="createVolumePermission",
                        OperationType="add",
                        UserIds=users,
                    ),
                )
                done.append(f"createVolumePermission {users} on {snap}")
    deprecate = deprecation_change(settings, image, created, now or datetime.now(UTC), earliest)
    if deprecate is not None:
        enable_deprecation(ec2, call, region, image_id, deprecate)
        done.append(f"deprecation at {deprecate:%Y-%m-%dT%H:%MZ} on {image_id}")
    return done


def enable_deprecation(ec2: Any, call: Caller, region: str, image_id: str, at: datetime) -> None:
    call(
        "EnableImageDeprecation",
        region,
        lambda: ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at),
    )


def missing_volume_permissions(
    ec2: Any, call: Caller, region: str, snapshot_id: str, settings: AwsSettings
) -> list[str]:
    resp = call(
        "DescribeSnapshotAttribute",
        region,
        lambda: ec2.describe_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission"),
    )
    have = {p.get("UserId") for p in resp.get("CreateVolumePermissions", [])}
    return [a for a in settings.share_accounts if a not in have]


def deprecation_time(settings: AwsSettings, image: dict[str, Any], created: Any = None) -> datetime | None:
    """Relative deprecation counts from `created` (the home region AMI's creation, so every region and
    every re-run agree on the time), else from this AMI's creation."""
    after = settings.deprecate_after
    if after is None:
        return None
    if isinstance(after, timedelta):
        origin = _parse(created) or _parse(image.get("CreationDate")) or datetime.now(UTC)
        when = origin + after
    else:
        when = after if after.tzinfo else after.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def first_valid_minute(now: datetime) -> datetime:
    """The earliest DeprecateAt to send at `now`: a whole minute at least a minute ahead, so that it
    is still in the future when EC2 reads it (EC2 refuses a time in the past and rounds seconds to
    the nearest minute)."""
    ahead = now.astimezone(UTC) + DEPRECATION_LEAD
    floor = ahead.replace(second=0, microsecond=0)
    return floor if floor == ahead else floor + timedelta(minutes=1)


def deprecation_due(
    current: Any, wanted: datetime | None, now: datetime, *, postpone: bool = True
) -> datetime | None:
    """The DeprecateAt to send to an AMI whose DeprecationTime is `current`, or None when it is right.

    A `wanted` time in the past means "now": the first valid minute is sent, and an AMI deprecated
    by then already is left alone. With `postpone` False an AMI deprecated sooner than wanted (by
    prune, or by hand) is left alone too."""
    if wanted is None:
        return None
    soonest = first_valid_minute(now)
    target = max(wanted.replace(second=0, microsecond=0), soonest)
    have = _parse(current)
    if have is None:
        return target
    have = have.replace(second=0, microsecond=0)
    if have == target or (wanted <= now and have <= soonest) or (have < target and not postpone):
        return None
    return target


def deprecation_change(
    settings: AwsSettings,
    image: dict[str, Any],
    created: Any,
    now: datetime,
    earliest: datetime | None = None,
) -> datetime | None:
    """The DeprecateAt that brings `image` in line with the settings (counted from `created`), or with
    `earliest` when that comes first; None when it is in line."""
    wanted = deprecation_time(settings, image, created)
    if earliest is not None:
        wanted = earliest if wanted is None else min(wanted, earliest)
    return deprecation_due(image.get("DeprecationTime"), wanted, now, postpone=earliest is None)


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def share_drift(
    ec2: Any,
    call: Caller,
    region: str,
    image: dict[str, Any],
    settings: AwsSettings,
    created: Any = None,
    now: datetime | None = None,
) -> list[str]:
    current = current_permissions(ec2, call, region, image["ImageId"])
    drift = [
        f"{region}: {image['ImageId']} lacks launch permission {p}"
        for p in missing_permissions(settings, current)
    ]
    if not settings.public and {"Group": "all"} in current:
        drift.append(f"{region}: {image['ImageId']} is public, but the manifest says public: false")
    if settings.share_snapshots:
        for snap in snapshot_ids(image):
            for user in missing_volume_permissions(ec2, call, region, snap, settings):
                drift.append(f"{region}: snapshot {snap} lacks createVolumePermission for {user}")
    deprecate = deprecation_change(settings, image, created, now or datetime.now(UTC))
    if deprecate is not None:
        drift.append(f"{region}: {image['ImageId']} deprecation time is not {deprecate:%Y-%m-%dT%H:%MZ}")
    return drift
