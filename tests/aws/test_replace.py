"""--replace: the new snapshot first, the old AMIs only when the new ones can take their place, and a
way back when that fails (fault injection on the strict moto server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.provider import Published
from imgpub_aws import AwsProvider
from imgpub_aws.replace import JOURNAL_KEY

OTHER = "210987654321"
OLD, NEW = "a" * 24, "b" * 24


def amis(moto: Moto, region: str) -> dict[str, dict[str, Any]]:
    return {i["ImageId"]: i for i in moto.client("ec2", region).describe_images(Owners=["self"])["Images"]}


def snapshots(moto: Moto, region: str) -> set[str]:
    return {
        s["SnapshotId"] for s in moto.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }


def digest_of(image: dict[str, Any]) -> str:
    return {t["Key"]: t["Value"] for t in image["Tags"]}["imgpub:digest"]


def publish_old(moto: Moto, settings: Any, disk: DiskImage, tmp_path: Path) -> Published:
    published = AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest=OLD))
    assert len(published.artifacts) == len(settings.all_regions)
    return published


def test_a_failed_upload_leaves_the_old_amis_and_snapshots_untouched(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    publish_old(moto, settings, disk, tmp_path)
    before = {r: (set(amis(moto, r)), snapshots(moto, r)) for r in ("us-east-1", "eu-west-1")}
    moto.fault("PutSnapshotBlock", status=403, code="AccessDeniedException", count=10000, message="denied")

    with pytest.raises(CloudError, match="denied"):
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True))
    assert moto.requests("DeregisterImage") == [] and moto.requests("DeleteSnapshot")[-1:] != []
    after = {r: (set(amis(moto, r)), snapshots(moto, r)) for r in ("us-east-1", "eu-west-1")}
    assert after == before, "the old AMIs and their snapshots are as they were (the pending one is gone)"


def test_the_old_ami_makes_way_right_before_the_new_one_and_its_snapshots_go_last(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"], share_accounts=[OTHER])
    old = publish_old(moto, settings, disk, tmp_path)
    old_snaps = {s for a in old.artifacts for s in a.extra["snapshots"]}
    journal = Journal(tmp_path / "journal.json")
    new = AwsProvider().publish(
        image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True, journal=journal)
    )

    log = [(r["action"], r["region"], r["params"]) for r in moto.requests()]
    actions = [a for a, _, _ in log]
    completed = actions.index("CompleteSnapshot")
    dereg_home = next(i for i, (a, r, _) in enumerate(log) if a == "DeregisterImage" and r == "us-east-1")
    assert completed < dereg_home, "the upload is done before anything old goes"
    assert actions[dereg_home + 1] == "RegisterImage", "the name is free only for the moment it takes"
    dereg_copy = next(i for i, (a, r, _) in enumerate(log) if a == "DeregisterImage" and r == "eu-west-1")
    assert actions[dereg_copy + 1] == "CopyImage"
    deletes = [i for i, (a, _, _) in enumerate(log) if a == "DeleteSnapshot"]
    last_wait = max(i for i, (a, r, _) in enumerate(log) if a == "DescribeImages" and r == "eu-west-1")
    assert len(deletes) == 2 and min(deletes) > last_wait, "old snapshots go once every new AMI is available"
    assert {p["SnapshotId"] for a, _, p in log if a == "DeleteSnapshot"} == old_snaps

    for art in new.artifacts:
        (image,) = amis(moto, art.region or "").values()
        assert image["ImageId"] == art.id and digest_of(image) == NEW
    assert journal.get(JOURNAL_KEY) is None


def test_a_failed_register_after_the_deregister_brings_the_old_ami_back(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(share_accounts=[OTHER], deprecate_after="365d")
    (old,) = publish_old(moto, settings, disk, tmp_path).artifacts
    moto.fault("RegisterImage", status=400, code="InvalidParameterValue", message="register boom", count=1)

    with pytest.raises(CloudError) as caught:
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True))
    (back,) = amis(moto, "us-east-1").values()
    assert str(caught.value).startswith(
        "target aws-main: RegisterImage in us-east-1 failed [InvalidParameterValue]"
    )
    assert f"register boom; the replaced AMI {old.id} is registered again as {back['ImageId']}" in str(
        caught.value
    )
    assert digest_of(back) == OLD and back["Name"] == "golden-1.2.3" and back["BootMode"] == "uefi"
    assert [m["Ebs"]["SnapshotId"] for m in back["BlockDeviceMappings"]] == old.extra["snapshots"]
    ec2 = moto.client("ec2")
    perms = ec2.describe_image_attribute(ImageId=back["ImageId"], Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"UserId": OTHER}] and back.get("DeprecationTime")

    again = AwsProvider().publish(
        image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True)
    )
    (image,) = amis(moto, "us-east-1").values()
    assert digest_of(image) == NEW and again.artifacts[0].id == image["ImageId"]
    assert len(moto.requests("StartSnapshot")) == 2, (
        "the second try reuses the snapshot uploaded by the first"
    )
    assert set(old.extra["snapshots"]).isdisjoint(snapshots(moto, "us-east-1"))


def test_when_the_old_ami_cannot_come_back_the_error_says_what_is_kept(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    old = publish_old(moto, settings, disk, tmp_path)
    (home_snap,) = next(a for a in old.artifacts if a.region == "us-east-1").extra["snapshots"]
    moto.fault("RegisterImage", status=400, code="InvalidParameterValue", message="register boom", count=2)
    journal = Journal(tmp_path / "journal.json")

    with pytest.raises(CloudError) as caught:
        AwsProvider().publish(
            image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True, journal=journal)
        )
    text = str(caught.value)
    assert "could not be registered again" in text and f"its snapshots {home_snap} are kept" in text
    assert "aws ec2 register-image --region us-east-1 --name 'golden-1.2.3'" in text and "\n" not in text
    assert amis(moto, "us-east-1") == {} and home_snap in snapshots(moto, "us-east-1")
    (record,) = [r for r in journal.get(JOURNAL_KEY) if r["region"] == "us-east-1"]
    assert (
        record["deregistered"]
        and record["params"]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == home_snap
    )

    AwsProvider().publish(
        image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True, journal=journal)
    )
    assert home_snap not in snapshots(moto, "us-east-1"), "the next run deletes what the journal kept"
    for region in ("us-east-1", "eu-west-1"):
        (image,) = amis(moto, region).values()
        assert digest_of(image) == NEW
    assert journal.get(JOURNAL_KEY) is None


def test_an_optional_region_whose_copy_fails_keeps_its_old_ami(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """The old AMI there has another name (no clash), so it would go after the new copy: there is none."""
    old = publish_old(
        moto, settings_for(optional_regions=["ap-south-1"], ami_name="golden (old)"), disk, tmp_path
    )
    kept = next(a for a in old.artifacts if a.region == "ap-south-1")
    moto.fault("CopyImage", status=403, code="UnauthorizedOperation", region="ap-south-1", count=10)
    journal = Journal(tmp_path / "journal.json")

    new = AwsProvider().publish(
        image_info(disk),
        settings_for(optional_regions=["ap-south-1"]),
        disk,
        context(tmp_path, digest=NEW, replace=True, journal=journal),
    )
    assert "optional region ap-south-1 skipped" in new.warnings[0]
    assert list(amis(moto, "ap-south-1")) == [kept.id] and set(kept.extra["snapshots"]) <= snapshots(
        moto, "ap-south-1"
    )
    (home,) = amis(moto, "us-east-1").values()
    assert digest_of(home) == NEW
    assert [r["region"] for r in journal.get(JOURNAL_KEY)] == ["ap-south-1"], "still to replace there"


def test_a_copy_that_fails_after_the_deregister_brings_the_old_copy_back(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for(regions=["eu-west-1"])
    old = publish_old(moto, settings, disk, tmp_path)
    old_copy = next(a for a in old.artifacts if a.region == "eu-west-1")
    moto.outcome("CopyImage", "failed", region="eu-west-1", message="copy went wrong")

    with pytest.raises(CloudError, match="copy went wrong") as caught:
        AwsProvider().publish(image_info(disk), settings, disk, context(tmp_path, digest=NEW, replace=True))
    (back,) = amis(moto, "eu-west-1").values()
    assert f"the replaced AMI {old_copy.id} is registered again as {back['ImageId']}" in str(caught.value)
    assert digest_of(back) == OLD and back["State"] == "available"
    (home,) = amis(moto, "us-east-1").values()
    assert digest_of(home) == NEW, "the home region has its new AMI"
