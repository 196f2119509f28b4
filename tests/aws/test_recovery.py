"""A failed AMI or an error snapshot is never published: plan shows it going, status reports it,
publish removes it and makes it again (the strict moto server produces both states on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub_aws import AwsProvider


def amis(moto: Moto, region: str = "us-east-1") -> list[dict[str, Any]]:
    return list(moto.client("ec2", region).describe_images(Owners=["self"])["Images"])


def test_a_failed_home_ami_is_reported_and_made_again_from_the_same_snapshot(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    first = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    home = next(a for a in first.artifacts if a.region == "us-east-1")
    moto.set_state("us-east-1", home.id, "failed", "the image failed to register")

    status = AwsProvider().status(image_info(disk), settings, context(tmp_path))
    assert f"us-east-1: {home.id} is failed (the image failed to register); not published" in status.drift[0]
    assert "us-east-1: missing (region)" in status.drift
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path))
    assert [(a.kind, a.resource) for a in plan.actions[:2]] == [("delete", home.id), ("create", "ami")]
    assert not [a for a in plan.actions if a.kind == "upload"], "the snapshot is reused"

    again = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (image,) = amis(moto)
    assert image["State"] == "available" and image["ImageId"] != home.id
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == home.extra["snapshots"][0]
    assert again.changed and len(moto.requests("StartSnapshot")) == 1
    assert AwsProvider().status(image_info(disk), settings, context(tmp_path)).drift == []


def test_a_copy_that_failed_is_removed_and_copied_again(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """The second CopyImage needs a new ClientToken: EC2 answers a reused one with the failed copy."""
    settings = settings_for(regions=["eu-west-1"])
    moto.outcome("CopyImage", "failed", region="eu-west-1", message="snapshot copy failed")
    with pytest.raises(CloudError, match=r"is failed snapshot copy failed"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (failed,) = amis(moto, "eu-west-1")
    failed_snaps = [m["Ebs"]["SnapshotId"] for m in failed["BlockDeviceMappings"]]
    assert failed["State"] == "failed"

    AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (copy,) = amis(moto, "eu-west-1")
    assert copy["State"] == "available" and copy["ImageId"] != failed["ImageId"]
    tokens = [r["params"]["ClientToken"] for r in moto.requests("CopyImage")]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    left = {
        s["SnapshotId"]
        for s in moto.client("ec2", "eu-west-1").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }
    assert not left & set(failed_snaps), "the failed copy's snapshots are deleted with it"


def test_an_error_snapshot_is_deleted_and_the_disk_uploaded_again(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    moto.fault("RegisterImage", status=400, code="InvalidParameterValue", message="stop here")
    with pytest.raises(CloudError, match="stop here"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (snap,) = moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    moto.set_state("us-east-1", snap["SnapshotId"], "error", "the snapshot could not be stored")

    status = AwsProvider().status(image_info(disk), settings, context(tmp_path))
    assert (
        f"us-east-1: snapshot {snap['SnapshotId']} is error (the snapshot could not be stored)"
        in status.drift[0]
    )
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path))
    assert [(a.kind, a.resource) for a in plan.actions] == [
        ("delete", snap["SnapshotId"]),
        ("upload", "snapshot"),
        ("create", "ami"),
    ]

    AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (image,) = amis(moto)
    left = [s["SnapshotId"] for s in moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]]
    assert left == [image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]] and snap["SnapshotId"] not in left
    assert len(moto.requests("StartSnapshot")) == 2


def test_a_snapshot_that_ends_in_error_fails_the_upload_and_is_removed(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.outcome("CompleteSnapshot", "error", message="checksum verification failed")
    with pytest.raises(CloudError, match=r"CompleteSnapshot in us-east-1 failed: snapshot snap-\w+ is error"):
        AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    assert moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    assert [i["State"] for i in amis(moto)] == ["available"]
