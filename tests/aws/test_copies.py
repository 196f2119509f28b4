"""Copies in other regions: tagged as they are made (AMI and snapshots), image labels everywhere,
encrypted with the key of their own region."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub_aws import AwsProvider

OTHER = "210987654321"
KEY = "arn:aws:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def described(moto: Moto, region: str, image_id: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The AMI's tags and its snapshots."""
    ec2 = moto.client("ec2", region)
    (ami,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    ids = [m["Ebs"]["SnapshotId"] for m in ami["BlockDeviceMappings"]]
    snaps = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    return {t["Key"]: t["Value"] for t in ami.get("Tags", [])}, snaps


def test_every_ami_and_snapshot_carries_the_identity_tags_the_target_tags_and_the_labels(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1", "ap-southeast-2"], tags={"team": "os"})
    image = image_info(disk, labels={"app": "web", "tier": "gold"})
    published = AwsProvider().publish(image, settings, disk, context(tmp_path))

    want = {
        "imgpub:name": "golden",
        "imgpub:version": "1.2.3",
        "imgpub:digest": "d" * 24,
        "imgpub:managed-by": "imgpub",
        "team": "os",
        "app": "web",
        "tier": "gold",
    }
    assert len(published.artifacts) == 3
    for art in published.artifacts:
        tags, snaps = described(moto, art.region or "", art.id)
        assert tags == want, art.region
        assert snaps and all({t["Key"]: t["Value"] for t in s["Tags"]} == want for s in snaps), art.region
    for copy in moto.requests("CopyImage"):
        p = copy["params"]
        assert (p["TagSpecification.1.ResourceType"], p["TagSpecification.2.ResourceType"]) == (
            "image",
            "snapshot",
        )
    assert moto.requests("CreateTags") == [], "everything is tagged as it is made, not afterwards"


def test_a_label_change_retags_amis_and_snapshots_without_a_new_upload(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    AwsProvider().publish(image_info(disk, labels={"app": "web"}), settings, disk, context(tmp_path))
    relabelled = image_info(disk, labels={"app": "api"})
    drift = AwsProvider().status(relabelled, settings, context(tmp_path)).drift
    assert len([d for d in drift if "lacks tag app=api" in d]) == 2, drift
    assert len([d for d in drift if "snapshot snap-" in d and "lacks tags app=api" in d]) == 2, drift
    before = len(moto.requests())

    again = AwsProvider().publish(relabelled, settings, disk, context(tmp_path))
    actions = [r["action"] for r in moto.requests()[before:]]
    assert again.changed and not {"StartSnapshot", "RegisterImage", "CopyImage"} & set(actions)
    assert actions.count("CreateTags") == 4, "two AMIs and their two snapshots"
    for art in again.artifacts:
        tags, snaps = described(moto, art.region or "", art.id)
        assert tags["app"] == "api" and {t["Key"]: t["Value"] for t in snaps[0]["Tags"]}["app"] == "api"
    assert AwsProvider().status(relabelled, settings, context(tmp_path)).drift == []


def test_encrypted_copies_use_the_key_of_their_region_and_can_be_shared(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    keys = {"eu-west-1": KEY.format(region="eu-west-1"), "ap-south-1": "alias/images"}
    settings = settings_for(
        regions=["eu-west-1", "ap-south-1"],
        encrypted=True,
        kms_key_id=KEY.format(region="us-east-1"),
        kms_key_ids=keys,
        share_accounts=[OTHER],
    )
    assert AwsProvider().check(image_info(disk), settings) == []
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))

    sent = {c["region"]: c["params"] for c in moto.requests("CopyImage")}
    for region, key in keys.items():
        assert sent[region]["Encrypted"] == "true" and sent[region]["KmsKeyId"] == key
    for art in published.artifacts:
        ec2 = moto.client("ec2", art.region or "")
        (ami,) = ec2.describe_images(ImageIds=[art.id])["Images"]
        ebs = ami["BlockDeviceMappings"][0]["Ebs"]
        assert ebs["Encrypted"] and ebs["KmsKeyId"] == (
            keys.get(art.region or "") or KEY.format(region="us-east-1")
        )
        perms = ec2.describe_image_attribute(ImageId=art.id, Attribute="launchPermission")[
            "LaunchPermissions"
        ]
        assert perms == [{"UserId": OTHER}]


def test_sharing_copies_encrypted_with_the_default_key_is_refused(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """What the check prevents (exit 2 before anything is sent) is what AWS refuses: the stand-in does
    too, so a publish that skipped the check fails at ModifyImageAttribute."""
    settings = settings_for(
        regions=["eu-west-1"],
        encrypted=True,
        kms_key_id=KEY.format(region="us-east-1"),
        share_accounts=[OTHER],
    )
    (problem,) = AwsProvider().check(image_info(disk), settings)
    assert (
        problem.field == "share_accounts" and "no such key for eu-west-1: set kms_key_ids" in problem.message
    )
    with pytest.raises(CloudError, match=r"ModifyImageAttribute in eu-west-1 failed \[InvalidParameter\]"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
