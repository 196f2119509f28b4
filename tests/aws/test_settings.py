"""AwsSettings validation, deprecation parsing and identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from imgpub_aws import AwsSettings


def test_defaults() -> None:
    s = AwsSettings(name="t", region="us-east-1")
    assert (s.upload, s.root_device_name, s.imds_support, s.concurrency) == (
        "ebs-direct",
        "/dev/xvda",
        "v2.0",
        32,
    )


@pytest.mark.parametrize(("text", "days"), [("365d", 365), ("2w", 14), ("12m", 360), (30, 30), ("7", 7)])
def test_deprecate_after_durations(text: object, days: int) -> None:
    assert AwsSettings(name="t", region="us-east-1", deprecate_after=text).deprecate_after == timedelta(
        days=days
    )


def test_deprecate_after_datetime() -> None:
    s = AwsSettings(name="t", region="us-east-1", deprecate_after="2030-01-01T00:00:00Z")
    assert s.deprecate_after == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("share_accounts", ["12345"]),
        ("share_organizations", ["o-1"]),
        ("upload", "ftp"),
        ("deprecate_after", "5h"),
        ("concurrency", 0),
        ("role_arn", "admin"),
        ("role_arn", "arn:aws:iam::123456789012:role/has space"),
        ("role_arn", "arn:aws:iam::123456789012:user/alice"),
        ("external_id", "x"),
        ("s3_bucket", "Bad_Bucket!"),
        ("s3_bucket", "192.168.1.10"),
        ("s3_bucket", "my..bucket"),
        ("s3_bucket", "images-s3alias"),
        ("kms_key_id", "arn:aws:kms:us-east-1:123456789012:key/x"),
        ("kms_key_id", "my-key"),
        ("kms_key_ids", {"eu-west-1": "alias with space"}),
        ("volume_type", "gp9"),
        ("iops", 0),
    ],
)
def test_bad_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        AwsSettings.model_validate({"name": "t", "region": "us-east-1", field: value})
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kms_key_id", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("kms_key_id", "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-" + "a" * 32),
        ("kms_key_id", "arn:aws:kms:us-east-1:123456789012:alias/images"),
        ("kms_key_id", "alias/images/prod"),
        ("kms_key_id", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("s3_bucket", "imgpub-uploads.example"),
        ("role_arn", "arn:aws:iam::123456789012:role/ci/publisher"),
        ("external_id", "ext-id:1/2"),
    ],
)
def test_good_values_are_accepted(field: str, value: object) -> None:
    s = AwsSettings.model_validate({"name": "t", "region": "us-east-1", field: value})
    assert getattr(s, field) == value


def test_region_names_are_checked_by_the_provider_not_the_model() -> None:
    """A malformed or misspelt region gets a suggestion from AwsProvider.check (test_checks.py)."""
    assert AwsSettings(name="t", region="Mars").region == "Mars"
    schema = AwsSettings.model_json_schema()
    assert schema["properties"]["region"]["pattern"].startswith("^[a-z]")


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="regoin"):
        AwsSettings.model_validate({"name": "t", "region": "us-east-1", "regoin": "x"})


def test_identity_leaves_out_placement_and_sharing(tmp_path: Path) -> None:
    a = AwsSettings(name="t", region="us-east-1")
    b = AwsSettings(
        name="u",
        region="eu-west-1",
        regions=["us-west-2"],
        share_accounts=["123456789012"],
        public=True,
        tags={"x": "y"},
        deprecate_after="30d",
        concurrency=4,
    )
    assert a.identity() == b.identity()
    assert AwsSettings(name="t", region="us-east-1", encrypted=True).identity() != a.identity()
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    copies_only = AwsSettings(name="t", region="us-east-1", kms_key_ids={"eu-west-1": key})
    assert copies_only.identity() == a.identity(), "copy keys do not change the uploaded snapshot"
    home_key = AwsSettings(name="t", region="eu-west-1", kms_key_ids={"eu-west-1": key})
    assert (
        home_key.identity()["kms_key_id"]
        == key
        == AwsSettings(name="t", region="eu-west-1", kms_key_id=key).identity()["kms_key_id"]
    )
    assert "iops" not in a.identity() and "throughput" not in a.identity(), "unset: digests as before"
    assert AwsSettings(name="t", region="us-east-1", iops=4000).identity()["iops"] == 4000
    uefi = tmp_path / "vars"
    uefi.write_bytes(b"one")
    first = AwsSettings(name="t", region="us-east-1", uefi_data=uefi).identity()
    uefi.write_bytes(b"two")
    assert AwsSettings(name="t", region="us-east-1", uefi_data=uefi).identity() != first


def test_all_regions_home_first_unique() -> None:
    s = AwsSettings(name="t", region="us-east-1", regions=["eu-west-1"], optional_regions=["ap-south-1"])
    assert s.all_regions == ["us-east-1", "eu-west-1", "ap-south-1"]
