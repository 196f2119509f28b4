"""Every call whose reply may be lost after AWS acted: the retry must take what the first request did
as done (adopt what it made; "already gone" is success for a removal). The moto server carries each
request out, then answers 503 (`lost_reply`); the retry meets the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.progress import RecordingProgress
from imgpub.provider import Published
from imgpub_aws import AwsProvider

OTHER = "210987654321"
OLD, NEW = "a" * 24, "b" * 24


def amis(moto: Moto, region: str = "us-east-1") -> list[dict[str, Any]]:
    return list(moto.client("ec2", region).describe_images(Owners=["self"])["Images"])


def snapshots(moto: Moto, region: str = "us-east-1") -> set[str]:
    snaps = moto.client("ec2", region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return {s["SnapshotId"] for s in snaps}


def only_ami(moto: Moto, digest: str = "d" * 24) -> dict[str, Any]:
    (image,) = amis(moto)
    assert image["State"] == "available"
    assert {t["Key"]: t["Value"] for t in image["Tags"]}["imgpub:digest"] == digest
    assert snapshots(moto) == {m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]}
    return image


def publish(settings: Any, disk: DiskImage, tmp_path: Path, **kw: Any) -> Published:
    return AwsProvider().publish(
        image_info(disk, **kw.pop("info", {})), settings, disk, context(tmp_path, **kw)
    )


def lose(moto: Moto, action: str) -> None:
    moto.fault(action, status=503, code="ServiceUnavailable", lost_reply=True)


@pytest.mark.parametrize("action", ["StartSnapshot", "CompleteSnapshot", "RegisterImage"])
def test_a_lost_reply_while_publishing_is_taken_as_done(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, action: str
) -> None:
    """StartSnapshot: the token answers the same snapshot; CompleteSnapshot: the retry finds the
    snapshot completed; RegisterImage: the AMI of this name and digest is this run's (no warning)."""
    lose(moto, action)
    published = publish(settings_for(), disk, tmp_path)
    assert len(moto.requests(action)) == 2
    image = only_ami(moto)
    assert published.artifacts[0].id == image["ImageId"] and published.changed
    assert published.warnings == [], "our own AMI, not another run's"


def test_a_lost_copy_reply_gets_the_same_copy(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("CopyImage", status=503, code="ServiceUnavailable", region="eu-west-1", lost_reply=True)
    published = publish(settings_for(regions=["eu-west-1"]), disk, tmp_path)
    (copy,) = amis(moto, "eu-west-1")
    assert len(moto.requests("CopyImage")) == 2 and published.warnings == []
    assert {a.id for a in published.artifacts if a.region == "eu-west-1"} == {copy["ImageId"]}


def test_a_lost_create_tags_reply_is_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    publish(settings, disk, tmp_path, info={"labels": {"app": "web"}})
    lose(moto, "CreateTags")
    again = publish(settings, disk, tmp_path, info={"labels": {"app": "api"}})
    assert again.changed and len(moto.requests("CreateTags")) == 3, "AMI (lost, retried) and snapshot"
    image = only_ami(moto)
    assert {t["Key"]: t["Value"] for t in image["Tags"]}["app"] == "api"
    status = AwsProvider().status(image_info(disk, labels={"app": "api"}), settings, context(tmp_path))
    assert status.drift == []


def test_a_lost_modify_image_attribute_reply_is_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    lose(moto, "ModifyImageAttribute")
    publish(settings_for(share_accounts=[OTHER]), disk, tmp_path)
    image = only_ami(moto)
    perms = moto.client("ec2").describe_image_attribute(
        ImageId=image["ImageId"], Attribute="launchPermission"
    )
    assert perms["LaunchPermissions"] == [{"UserId": OTHER}]
    assert len(moto.requests("ModifyImageAttribute")) == 2


def test_lost_deregister_and_delete_replies_while_replacing_are_done(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    (old,) = publish(settings, disk, tmp_path, digest=OLD).artifacts
    lose(moto, "DeregisterImage")
    lose(moto, "DeleteSnapshot")
    publish(settings, disk, tmp_path, digest=NEW, replace=True)
    assert len(moto.requests("DeregisterImage")) == 2 and len(moto.requests("DeleteSnapshot")) == 2
    only_ami(moto, NEW)
    assert set(old.extra["snapshots"]).isdisjoint(snapshots(moto))


def test_lost_replies_while_removing_a_failed_ami_are_done(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """A failed copy is removed and copied again; the DeregisterImage and DeleteSnapshot retries find
    it gone."""
    settings = settings_for(regions=["eu-west-1"])
    published = publish(settings, disk, tmp_path)
    copy = next(a for a in published.artifacts if a.region == "eu-west-1")
    moto.set_state("eu-west-1", copy.id, "failed", "copy failed")
    moto.fault("DeregisterImage", status=503, region="eu-west-1", lost_reply=True)
    moto.fault("DeleteSnapshot", status=503, region="eu-west-1", lost_reply=True)

    again = publish(settings, disk, tmp_path)
    (new_copy,) = amis(moto, "eu-west-1")
    assert new_copy["ImageId"] != copy.id and new_copy["State"] == "available"
    assert snapshots(moto, "eu-west-1") == {m["Ebs"]["SnapshotId"] for m in new_copy["BlockDeviceMappings"]}
    assert {a.id for a in again.artifacts if a.region == "eu-west-1"} == {new_copy["ImageId"]}


def test_a_lost_delete_reply_for_an_abandoned_upload_is_not_reported_as_a_failure(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("PutSnapshotBlock", status=403, code="AccessDeniedException", count=1000, message="denied")
    lose(moto, "DeleteSnapshot")
    progress = RecordingProgress()
    with pytest.raises(CloudError, match="denied"):
        AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path, progress=progress))
    assert snapshots(moto) == set() and len(moto.requests("DeleteSnapshot")) == 2
    assert not [n for n in progress.notes if "could not delete" in n]
