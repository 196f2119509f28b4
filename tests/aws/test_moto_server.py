"""The test server is as strict as AWS where imgpub relies on it (a selftest of moto_patches.py)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from aws.contract import deprecate_at_problem
from aws.motoaws import Moto

BLOCK = 524288


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def put(ebs: object, snap: str, index: int, data: bytes, checksum: str | None = None) -> None:
    ebs.put_snapshot_block(  # type: ignore[attr-defined]
        SnapshotId=snap,
        BlockIndex=index,
        BlockData=data,
        DataLength=len(data),
        Checksum=checksum or b64sha(data),
        ChecksumAlgorithm="SHA256",
    )


def test_ebs_direct_rules(moto: Moto) -> None:
    ebs, ec2 = moto.raw_client("ebs"), moto.client("ec2")
    started = ebs.start_snapshot(VolumeSize=1, ClientToken="tok")
    snap = started["SnapshotId"]
    assert started["BlockSize"] == BLOCK
    assert ebs.start_snapshot(VolumeSize=1, ClientToken="tok")["SnapshotId"] == snap
    assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "pending"
    block = b"\1" * BLOCK
    for bad in (
        lambda: put(ebs, snap, 0, block, checksum=b64sha(b"other")),
        lambda: put(ebs, snap, 0, b"\1" * 4096),
        lambda: put(ebs, snap, 2048, block),
    ):
        with pytest.raises(ClientError) as info:
            bad()
        assert info.value.response["Error"]["Code"] == "ValidationException"
    put(ebs, snap, 5, block)
    with pytest.raises(ClientError, match="ChangedBlocksCount"):
        ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=2)
    with pytest.raises(ClientError, match="aggregated checksum"):
        ebs.complete_snapshot(
            SnapshotId=snap,
            ChangedBlocksCount=1,
            Checksum=b64sha(block),
            ChecksumAlgorithm="SHA256",
            ChecksumAggregationMethod="LINEAR",
        )
    linear = base64.b64encode(hashlib.sha256(hashlib.sha256(block).digest()).digest()).decode()
    ebs.complete_snapshot(
        SnapshotId=snap,
        ChangedBlocksCount=1,
        Checksum=linear,
        ChecksumAlgorithm="SHA256",
        ChecksumAggregationMethod="LINEAR",
    )
    assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed"
    with pytest.raises(ClientError, match="not pending"):
        put(ebs, snap, 6, block)
    with pytest.raises(ClientError, match="is completed, not pending"):  # a second CompleteSnapshot
        ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=1)


def test_register_image_rules(moto: Moto) -> None:
    ebs, ec2 = moto.client("ebs"), moto.raw_client("ec2")
    snap = ebs.start_snapshot(VolumeSize=2)["SnapshotId"]
    bdm = [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}]
    with pytest.raises(ClientError, match="IncorrectState"):
        ec2.register_image(Name="img", RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm)
    ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
    with pytest.raises(ClientError, match="TpmSupport needs BootMode uefi"):
        ec2.register_image(
            Name="img",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=bdm,
            BootMode="legacy-bios",
            TpmSupport="v2.0",
        )
    small = [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, "VolumeSize": 1}}]
    with pytest.raises(ClientError, match="smaller than snapshot"):
        ec2.register_image(Name="img", RootDeviceName="/dev/xvda", BlockDeviceMappings=small)
    image_id = ec2.register_image(Name="img", RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm)["ImageId"]
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["Architecture"] == "i386", "AWS's default when Architecture is left out"
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snap
    with pytest.raises(ClientError, match=r"InvalidSnapshot\.InUse"):
        ec2.delete_snapshot(SnapshotId=snap)
    with pytest.raises(ClientError, match=r"InvalidAMIName\.Duplicate"):
        ec2.register_image(Name="img", RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm)


def test_describe_images_filters_by_the_snapshots_an_ami_uses(moto: Moto) -> None:
    ebs, ec2 = moto.client("ebs"), moto.client("ec2")
    used, free = (ebs.start_snapshot(VolumeSize=1)["SnapshotId"] for _ in range(2))
    for snap in (used, free):
        ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
    bdm = [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": used}}]
    image = ec2.register_image(Name="img", RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm)["ImageId"]
    for ids, want in (([used], [image]), ([free], []), ([used, free], [image])):
        filters = [{"Name": "block-device-mapping.snapshot-id", "Values": ids}]
        found = ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
        assert [i["ImageId"] for i in found] == want, ids


def registered(moto: Moto, name: str, snap: str | None = None) -> tuple[str, str]:
    """An AMI `name` from a new (or the given) completed snapshot: (image id, snapshot id)."""
    ebs, ec2 = moto.client("ebs"), moto.client("ec2")
    if snap is None:
        snap = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
        ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
    bdm = [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}]
    image = ec2.register_image(
        Name=name, Architecture="x86_64", BootMode="uefi", RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm
    )["ImageId"]
    return image, snap


def test_describe_images_leaves_out_disabled_amis_and_scopes_executable_users(moto: Moto) -> None:
    ec2 = moto.client("ec2")
    disabled, _ = registered(moto, "disabled")
    public, _ = registered(moto, "public")
    shared, _ = registered(moto, "shared")
    ec2.disable_image(ImageId=disabled)
    ec2.modify_image_attribute(ImageId=public, LaunchPermission={"Add": [{"Group": "all"}]})
    ec2.modify_image_attribute(ImageId=shared, LaunchPermission={"Add": [{"UserId": "210987654321"}]})

    def ids(**kw: object) -> set[str]:
        return {i["ImageId"] for i in ec2.describe_images(Owners=["self"], **kw)["Images"]}

    assert ids() == {public, shared}, "EC2 lists disabled AMIs only with IncludeDisabled"
    assert ids(IncludeDisabled=True) == {disabled, public, shared}
    assert ids(ExecutableUsers=["210987654321"]) == {shared}, "explicit launch permissions only"
    assert ids(ExecutableUsers=["all"]) == {public}


def test_a_snapshot_is_in_use_while_any_ami_uses_it_and_a_while_after(moto: Moto) -> None:
    ec2 = moto.client("ec2")
    first, snap = registered(moto, "first")
    second, _ = registered(moto, "second", snap)  # registered by hand from the same snapshot
    ec2.deregister_image(ImageId=second)
    with pytest.raises(ClientError, match=rf"InvalidSnapshot\.InUse.*{first}"):
        ec2.delete_snapshot(SnapshotId=snap)
    moto.in_use_after_deregister(2)
    ec2.deregister_image(ImageId=first)
    for _ in range(2):
        with pytest.raises(ClientError, match="deregistered a moment ago"):
            ec2.delete_snapshot(SnapshotId=snap)
    ec2.delete_snapshot(SnapshotId=snap)
    assert not ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]


def test_enable_image_deprecation_rounds_to_the_minute_and_refuses_what_ec2_refuses(moto: Moto) -> None:
    ec2 = moto.raw_client("ec2")
    image, _ = registered(moto, "deprecated")
    base = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    for sent, kept in (
        (base + timedelta(seconds=40), base + timedelta(minutes=1)),
        (base + timedelta(seconds=20), base),
    ):
        ec2.enable_image_deprecation(ImageId=image, DeprecateAt=sent)
        (found,) = ec2.describe_images(ImageIds=[image])["Images"]
        assert found["DeprecationTime"] == f"{kept:%Y-%m-%dT%H:%M}:00.000Z", "the nearest minute"
    ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"Group": "all"}]})
    with pytest.raises(ClientError, match="public AMI at most 2 years"):
        ec2.enable_image_deprecation(ImageId=image, DeprecateAt=base + timedelta(days=800))


def test_deprecate_at_seconds_that_round_into_the_past_are_refused() -> None:
    now = datetime(2026, 11, 29, 12, 0, 10, tzinfo=UTC)
    assert deprecate_at_problem(now + timedelta(seconds=15), now), "12:00:25 rounds to 12:00, the past"
    assert deprecate_at_problem(now + timedelta(seconds=25), now) is None, "12:00:35 rounds to 12:01"
    assert deprecate_at_problem(now + timedelta(days=3654), now)
    assert deprecate_at_problem(now + timedelta(days=3650), now) is None
