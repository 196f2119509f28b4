"""The test server is as strict as AWS where imgpub relies on it (a selftest of moto_patches.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

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
