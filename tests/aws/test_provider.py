"""AwsProvider end to end against the strict moto server: publish, re-run, resume, conflicts, regions."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError, CredentialsError, ImageConflictError
from imgpub_aws import AwsProvider

ORG = "arn:aws:organizations::123456789012:organization/o-abcdefghij"
OU = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-abcdefgh"
OTHER = "210987654321"


def images(moto: Moto, region: str = "us-east-1") -> list[dict[str, Any]]:
    return list(moto.client("ec2", region).describe_images(Owners=["self"])["Images"])


def test_publish_registers_with_every_field(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    uefi = tmp_path / "vars.bin"
    uefi.write_bytes(b"\x01uefi-store")
    settings = settings_for(uefi_data=str(uefi), volume_size=8, tags={"team": "os"})
    image = image_info(disk, tpm=True)
    published = AwsProvider().publish(image, settings, disk, context(tmp_path))

    assert published.changed and not published.warnings
    (art,) = published.artifacts
    (reg,) = moto.requests("RegisterImage")
    p = reg["params"]
    assert p["Name"] == "golden-1.2.3"
    assert p["Architecture"] == "x86_64" and p["BootMode"] == "uefi" and p["TpmSupport"] == "v2.0"
    assert p["ImdsSupport"] == "v2.0" and p["EnaSupport"] == "true" and p["VirtualizationType"] == "hvm"
    assert (
        p["RootDeviceName"] == "/dev/xvda" and p["UefiData"] == base64.b64encode(b"\x01uefi-store").decode()
    )
    assert p["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda"
    assert p["BlockDeviceMapping.1.Ebs.VolumeSize"] == "8"
    assert p["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp3"
    assert p["BlockDeviceMapping.1.Ebs.DeleteOnTermination"] == "true"
    assert p["TagSpecification.1.ResourceType"] == "image"
    assert "TagSpecification.2.ResourceType" not in p, "RegisterImage tags the image only"

    (ami,) = images(moto)
    assert ami["ImageId"] == art.id and ami["Architecture"] == "x86_64" and ami["BootMode"] == "uefi"
    tags = {t["Key"]: t["Value"] for t in ami["Tags"]}
    assert tags["imgpub:name"] == "golden" and tags["imgpub:version"] == "1.2.3" and tags["team"] == "os"
    snap_id = ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert art.extra["snapshots"] == [snap_id]
    assert moto.blocks(snap_id), "the AMI uses the uploaded snapshot"
    (snap,) = moto.client("ec2").describe_snapshots(SnapshotIds=[snap_id])["Snapshots"]
    assert {t["Key"]: t["Value"] for t in snap["Tags"]} == tags, "the snapshot carries the AMI's tags"


def test_rerun_of_a_finished_publish_changes_nothing(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"], share_accounts=[OTHER], tags={"team": "os"})
    first = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    before = len(moto.requests())
    again = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    later = moto.requests()[before:]
    assert not again.changed
    assert {a.id for a in again.artifacts} == {a.id for a in first.artifacts}
    writes = {
        "StartSnapshot",
        "PutSnapshotBlock",
        "RegisterImage",
        "CopyImage",
        "CreateTags",
        "ModifyImageAttribute",
    }
    assert not [r["action"] for r in later if r["action"] in writes]
    assert AwsProvider().plan(image_info(disk), settings, context(tmp_path)).up_to_date


def test_failure_between_steps_resumes_without_uploading_again(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    moto.fault("RegisterImage", status=400, code="InvalidParameterValue", message="boom")
    with pytest.raises(
        CloudError, match=r"RegisterImage in us-east-1 failed \[InvalidParameterValue\]: boom"
    ):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    puts = len(moto.requests("PutSnapshotBlock"))
    assert puts > 0
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path))
    assert [a.kind for a in plan.actions] == ["create", "copy"], "the snapshot is found, not re-uploaded"

    moto.fault("CopyImage", status=400, code="InvalidParameterValue", message="copy boom")
    with pytest.raises(CloudError, match="copy boom"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    done = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert done.changed
    assert len(moto.requests("PutSnapshotBlock")) == puts
    assert len(moto.requests("StartSnapshot")) == 1
    assert len(images(moto)) == 1 and len(images(moto, "eu-west-1")) == 1


def test_same_version_other_content_conflicts_unless_replace(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    old = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest="a" * 24))
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path, digest="b" * 24))
    assert plan.conflict and old.artifacts[0].id in plan.conflict and "--replace" not in plan.conflict
    assert not [a for a in plan.actions if "--replace" in a.detail], "the core says how to go on, once"
    with pytest.raises(ImageConflictError, match="--replace") as refused:
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest="b" * 24))
    assert str(refused.value).count("--replace") == 1
    new = AwsProvider().publish(
        image_info(disk), settings, disk, context(tmp_path, digest="b" * 24, replace=True)
    )
    (ami,) = images(moto)
    assert ami["ImageId"] == new.artifacts[0].id != old.artifacts[0].id
    assert {t["Key"]: t["Value"] for t in ami["Tags"]}["imgpub:digest"] == "b" * 24
    snaps = moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert [x["SnapshotId"] for x in snaps] == new.artifacts[0].extra["snapshots"], (
        "the old snapshot is deleted"
    )


def test_copies_and_shares_in_every_region(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(
        regions=["eu-west-1", "ap-southeast-2"],
        share_accounts=[OTHER],
        share_organizations=[ORG],
        share_ous=[OU],
        share_snapshots=True,
        deprecate_after="365d",
        tags={"team": "os"},
    )
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert sorted(a.region or "" for a in published.artifacts) == ["ap-southeast-2", "eu-west-1", "us-east-1"]
    for copy in moto.requests("CopyImage"):
        assert copy["params"]["SourceRegion"] == "us-east-1" and copy["params"]["CopyImageTags"] == "true"
        assert len(copy["params"]["ClientToken"]) == 64
    deprecations = set()
    for art in published.artifacts:
        ec2 = moto.client("ec2", art.region or "")
        (ami,) = ec2.describe_images(ImageIds=[art.id])["Images"]
        tags = {t["Key"]: t["Value"] for t in ami["Tags"]}
        assert tags["team"] == "os" and tags["imgpub:digest"] == "d" * 24
        perms = ec2.describe_image_attribute(ImageId=art.id, Attribute="launchPermission")[
            "LaunchPermissions"
        ]
        assert {"UserId": OTHER} in perms and {"OrganizationArn": ORG} in perms
        assert {"OrganizationalUnitArn": OU} in perms and {"Group": "all"} not in perms
        snap = ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        vol = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
        assert vol["CreateVolumePermissions"] == [{"UserId": OTHER}]
        created = datetime.fromisoformat(ami["CreationDate"].replace("Z", "+00:00"))
        deprecated = datetime.fromisoformat(ami["DeprecationTime"].replace("Z", "+00:00"))
        assert (deprecated - created).days in (364, 365)
        deprecations.add(ami["DeprecationTime"])
    assert len(deprecations) == 1, "every region deprecates at the same minute (from the home AMI)"
    status = AwsProvider().status(image_info(disk), settings, context(tmp_path))
    assert status.drift == [] and len(status.artifacts) == 3


def test_status_reports_drift(moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path) -> None:
    AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    wider = settings_for(regions=["eu-west-1"], share_accounts=[OTHER], tags={"team": "os"})
    status = AwsProvider().status(image_info(disk), wider, context(tmp_path))
    text = "\n".join(status.drift)
    assert "eu-west-1: missing" in text and f"launch permission {{'UserId': '{OTHER}'}}" in text
    assert "lacks tag team=os" in text
    plan = AwsProvider().plan(image_info(disk), wider, context(tmp_path))
    assert {a.kind for a in plan.actions} == {"copy", "share", "tag"}
    moto.client("ec2").modify_image_attribute(
        ImageId=status.artifacts[0].id, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    status = AwsProvider().status(image_info(disk), settings_for(), context(tmp_path))
    assert status.drift == [
        f"us-east-1: {status.artifacts[0].id} is public, but the manifest says public: false"
    ]


def test_optional_region_failure_is_a_warning(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault(
        "CopyImage",
        status=403,
        code="UnauthorizedOperation",
        region="ap-south-1",
        count=10,
        message="region disabled",
    )
    settings = settings_for(regions=["eu-west-1"], optional_regions=["ap-south-1"])
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert sorted(a.region or "" for a in published.artifacts) == ["eu-west-1", "us-east-1"]
    (warning,) = published.warnings
    assert "ap-south-1" in warning and "region disabled" in warning
    assert len(moto.requests("CopyImage")) == 2, "a permission error is not retried"


def test_required_region_failure_fails(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("CopyImage", status=403, code="UnauthorizedOperation", region="eu-west-1", message="nope")
    with pytest.raises(CloudError, match=r"CopyImage in eu-west-1 failed \[UnauthorizedOperation\]: nope"):
        AwsProvider().publish(image_info(disk), settings_for(regions=["eu-west-1"]), disk, context(tmp_path))


def test_public_blocked_by_account_has_a_clear_message(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault(
        "ModifyImageAttribute",
        status=400,
        code="OperationNotPermitted",
        message="public sharing is blocked by block public access",
    )
    with pytest.raises(CloudError, match="disable-image-block-public-access --region us-east-1"):
        AwsProvider().publish(image_info(disk), settings_for(public=True), disk, context(tmp_path))


def test_public_when_asked(moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path) -> None:
    published = AwsProvider().publish(image_info(disk), settings_for(public=True), disk, context(tmp_path))
    ec2 = moto.client("ec2")
    perms = ec2.describe_image_attribute(ImageId=published.artifacts[0].id, Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"Group": "all"}]


def test_missing_credentials(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError, match=r"no usable AWS credentials.*AWS_PROFILE"):
        AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path))


def test_endpoint_from_the_standard_environment_variable(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    settings = settings_for(endpoint_url=None)
    assert AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path)).changed
    assert images(moto)


def test_check_rules(disk: DiskImage, tmp_path: Path) -> None:
    from imgpub_aws import AwsSettings

    s = AwsSettings(
        name="t",
        region="us-east-1",
        regions=["eu-west-1", "us-east-1"],
        volume_size=1,
        kms_key_id="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        upload="s3-import",
    )
    problems = {p.field: p.message for p in AwsProvider().check(image_info(disk, boot="bios", tpm=True), s)}
    assert "uefi" in problems["image.tpm"]
    assert "us-east-1" in problems["regions"]
    assert "needs encrypted" in problems["kms_key_id"] and "s3_bucket" in problems
    arm = {p.field for p in AwsProvider().check(image_info(disk, arch="arm64", boot="bios"), s)}
    assert "image.boot" in arm
    ok = AwsSettings(name="t", region="us-east-1")
    assert AwsProvider().check(image_info(disk), ok) == []
    tagged = AwsSettings(name="t", region="us-east-1", tags={"aws:x": "1", "k" * 128: "v", "ok": "v"})
    fields = {p.field for p in AwsProvider().check(image_info(disk), tagged)}
    assert fields == {"tags.aws:x", "tags." + "k" * 128}
    past = AwsSettings(name="t", region="us-east-1", deprecate_after="2001-01-01T00:00:00Z")
    assert [p.field for p in AwsProvider().check(image_info(disk), past)] == ["deprecate_after"]
    bad_name = AwsSettings(name="t", region="us-east-1", ami_name="x!")
    assert [p.field for p in AwsProvider().check(image_info(disk), bad_name)] == ["ami_name"]
    huge = image_info(disk, virtual_size=3 << 30)
    assert any("smaller than the image (3 GiB)" in p.message for p in AwsProvider().check(huge, s))


def test_optional_region_that_cannot_be_read_is_a_warning(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault(
        "DescribeImages",
        status=401,
        code="AuthFailure",
        region="me-south-1",
        count=10,
        message="region not enabled",
    )
    settings = settings_for(optional_regions=["me-south-1"])
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert [a.region for a in published.artifacts] == ["us-east-1"]
    assert "me-south-1" in published.warnings[0] and "region not enabled" in published.warnings[0]


def test_role_is_assumed_per_target(moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/publisher"
    settings = settings_for(role_arn=role, external_id="ext-1")
    AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (assume,) = moto.requests("AssumeRole")
    assert assume["params"]["RoleArn"] == role and assume["params"]["ExternalId"] == "ext-1"
    signed = {
        r["headers"]["authorization"].split("Credential=")[1].split("/")[0]
        for r in moto.requests("RegisterImage")
    }
    assert signed and "testing" not in signed, "calls after AssumeRole use the role's keys"


def test_encryption_reaches_the_api(moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings = settings_for(encrypted=True, kms_key_id=key, regions=["eu-west-1"])
    AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    (start,) = moto.requests("StartSnapshot")
    assert start["params"]["Encrypted"] is True and start["params"]["KmsKeyArn"] == key
    (copy,) = moto.requests("CopyImage")
    assert copy["params"]["Encrypted"] == "true"
    (reg,) = moto.requests("RegisterImage")
    assert not [k for k in reg["params"] if "Encrypted" in k], "no encryption flag next to a SnapshotId"


def test_name_taken_by_an_image_imgpub_did_not_make(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    ebs, ec2 = moto.client("ebs"), moto.client("ec2")
    snap = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
    ec2.register_image(
        Name="golden-1.2.3",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )
    with pytest.raises(
        CloudError,
        match=r"\[InvalidAMIName\.Duplicate\].*set ami_name or deregister it; ami-\w+ has no imgpub tags",
    ):
        AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    settings = settings_for(ami_name="golden 1.2.3 (imgpub)")
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path))
    assert published.artifacts[0].extra["name"] == "golden 1.2.3 (imgpub)"
    assert len(moto.requests("StartSnapshot")) == 2, "the second run reuses the snapshot the first uploaded"
