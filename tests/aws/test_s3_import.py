"""The S3 + ImportSnapshot fallback against the patched moto server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub_aws import AwsProvider
from imgpub_aws.ebs_upload import BLOCK_SIZE
from imgpub_aws.s3_import import MIN_PART, part_size

TRUST = {
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
}


def setup_account(moto: Moto, role: bool = True) -> None:
    moto.client("s3").create_bucket(Bucket="images-bucket")
    if role:
        moto.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(TRUST))


def guest_blocks(disk: DiskImage) -> dict[int, bytes]:
    out = {}
    for index in range(-(-disk.virtual_size // BLOCK_SIZE)):
        data = disk.read(index * BLOCK_SIZE, BLOCK_SIZE).ljust(BLOCK_SIZE, b"\0")
        if data.count(0) != BLOCK_SIZE:
            out[index] = data
    return out


def test_s3_import_publishes_and_removes_the_object(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    setup_account(moto)
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket", s3_prefix="up/")
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (art,) = published.artifacts
    (snap,) = art.extra["snapshots"]
    assert moto.blocks(snap) == guest_blocks(disk)
    (imp,) = moto.requests("ImportSnapshot")
    key = imp["params"]["DiskContainer.UserBucket.S3Key"]
    assert re.fullmatch("up/" + "d" * 24 + "-[0-9a-f]{12}.raw", key), "the machine nonce names the object"
    parts = moto.requests(f"PUT /images-bucket/{key}")
    assert sum(r["body_length"] for r in parts) >= disk.virtual_size, "RAW sends every byte, holes included"
    assert moto.client("s3").list_objects_v2(Bucket="images-bucket").get("KeyCount") == 0
    assert imp["params"]["DiskContainer.Format"] == "RAW"
    assert imp["params"]["RoleName"] == "vmimport"
    assert not moto.requests("StartSnapshot")
    tags = moto.client("ec2").describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["Tags"]
    assert {"Key": "imgpub:digest", "Value": "d" * 24} in tags


def test_missing_vmimport_role_is_explained(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    setup_account(moto, role=False)
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket")
    with pytest.raises(CloudError, match="IAM service role 'vmimport' that VM Import needs does not exist"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert not moto.requests("CreateMultipartUpload") and not moto.requests("ImportSnapshot")


def test_failed_import_still_deletes_the_object(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    setup_account(moto)
    moto.fault("ImportSnapshot", status=400, code="InvalidParameter", message="bad disk")
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket")
    with pytest.raises(
        CloudError, match=r"ImportSnapshot in us-east-1 failed \[InvalidParameter\]: bad disk"
    ):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert moto.client("s3").list_objects_v2(Bucket="images-bucket").get("KeyCount") == 0


def test_part_size_respects_the_part_limit() -> None:
    assert part_size(1 << 30) == MIN_PART
    assert part_size(5 << 40) * 10000 >= 5 << 40
