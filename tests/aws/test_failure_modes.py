"""The failures AWS produces and moto does not, reproduced by the strict moto server: lost replies
(reused ClientTokens answer the earlier result), eventual consistency, throttling with Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.retry import RetryPolicy
from imgpub_aws import AwsProvider


def amis(moto: Moto, region: str = "us-east-1") -> list[dict[str, Any]]:
    return list(moto.client("ec2", region).describe_images(Owners=["self"])["Images"])


# ---------------------------------------------------------------- lost replies and ClientTokens
def test_a_lost_copy_reply_is_retried_with_its_token_and_gets_the_same_copy(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("CopyImage", status=503, code="ServiceUnavailable", lost_reply=True)
    published = AwsProvider().publish(
        image_info(disk), settings_for(regions=["eu-west-1"]), disk, context(tmp_path)
    )
    first, retry = moto.requests("CopyImage")
    assert first["params"]["ClientToken"] == retry["params"]["ClientToken"]
    (copy,) = amis(moto, "eu-west-1")
    assert copy["ImageId"] == next(a.id for a in published.artifacts if a.region == "eu-west-1")


def test_a_lost_start_snapshot_reply_is_retried_with_its_token_and_gets_the_same_snapshot(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("StartSnapshot", status=500, code="InternalServerException", lost_reply=True)
    AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    first, retry = moto.requests("StartSnapshot")
    assert first["params"]["ClientToken"] == retry["params"]["ClientToken"]
    assert len(moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 1


def test_a_lost_register_reply_adopts_the_ami_it_made(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """RegisterImage has no ClientToken: the retry answers InvalidAMIName.Duplicate, and the AMI of that
    name carrying this digest is ours."""
    moto.fault("RegisterImage", status=503, code="Unavailable", lost_reply=True)
    published = AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    assert len(moto.requests("RegisterImage")) == 2
    (image,) = amis(moto)
    assert published.artifacts[0].id == image["ImageId"]


def test_a_reused_token_with_other_parameters_is_refused(moto: Moto) -> None:
    ebs = moto.client("ebs")
    ebs.start_snapshot(VolumeSize=1, ClientToken="same")
    with pytest.raises(ebs.exceptions.ConflictException):
        ebs.start_snapshot(VolumeSize=2, ClientToken="same")


# ---------------------------------------------------------------- eventual consistency
def test_new_amis_not_yet_visible_are_waited_for(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.invisible_for(2)
    published = AwsProvider().publish(
        image_info(disk), settings_for(regions=["eu-west-1"]), disk, context(tmp_path)
    )
    assert {a.region for a in published.artifacts} == {"us-east-1", "eu-west-1"}
    by_id = [r for r in moto.requests("DescribeImages") if "ImageId.1" in r["params"]]
    assert len(by_id) >= 6, "two misses and a success for each new AMI"


# ---------------------------------------------------------------- throttling and Retry-After
@pytest.fixture
def sleeps() -> list[float]:
    """The back-off waits of the SLOW policy, recorded, not slept."""
    return []


@pytest.fixture
def slow(sleeps: list[float]) -> RetryPolicy:
    """Back-off long enough that a Retry-After of a few seconds can only come from the header."""
    return RetryPolicy(attempts=4, budget_seconds=3600, initial_wait=20.0, max_wait=60.0, sleep=sleeps.append)


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        ("DescribeImages", 503, "RequestLimitExceeded"),
        ("StartSnapshot", 400, "ThrottlingException"),
        ("RegisterImage", 503, "RequestLimitExceeded"),
    ],
)
def test_throttling_is_retried_after_the_seconds_the_service_asks(
    moto: Moto,
    settings_for: Any,
    disk: DiskImage,
    tmp_path: Path,
    sleeps: list[float],
    slow: RetryPolicy,
    action: str,
    status: int,
    code: str,
) -> None:
    moto.fault(action, status=status, code=code, count=2, headers={"Retry-After": "3"})
    AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path, retry=slow))
    assert sleeps == [3.0, 3.0]
    assert [i["State"] for i in amis(moto)] == ["available"]


def test_a_retry_after_date_is_honoured(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, sleeps: list[float], slow: RetryPolicy
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    moto.fault("DescribeImages", status=503, code="RequestLimitExceeded", headers={"Retry-After": when})
    AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path, retry=slow))
    (waited,) = sleeps
    assert 25 <= waited <= 30


def test_without_retry_after_the_back_off_is_the_policy_s(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, sleeps: list[float], slow: RetryPolicy
) -> None:
    moto.fault("DescribeImages", status=503, code="RequestLimitExceeded", count=2)
    AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path, retry=slow))
    assert len(sleeps) == 2 and all(0 <= s <= slow.max_wait for s in sleeps)
    assert 3.0 not in sleeps


def test_a_throttle_with_an_empty_body_is_still_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """Proxies answer 503 with no error document at all; the status alone says it is transient."""
    moto.fault("DescribeImages", status=503, body="", count=2)
    plan = AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path))
    assert [a.kind for a in plan.actions] == ["upload", "create"]
    assert len(moto.requests("DescribeImages")) == 3
