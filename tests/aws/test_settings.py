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
        ("region", "Mars"),
        ("share_organizations", ["o-1"]),
        ("upload", "ftp"),
        ("deprecate_after", "5h"),
        ("concurrency", 0),
        ("role_arn", "admin"),
    ],
)
def test_bad_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        AwsSettings.model_validate({"name": "t", "region": "us-east-1", field: value})
    assert field in str(info.value)


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
    uefi = tmp_path / "vars"
    uefi.write_bytes(b"one")
    first = AwsSettings(name="t", region="us-east-1", uefi_data=uefi).identity()
    uefi.write_bytes(b"two")
    assert AwsSettings(name="t", region="us-east-1", uefi_data=uefi).identity() != first


def test_all_regions_home_first_unique() -> None:
    s = AwsSettings(name="t", region="us-east-1", regions=["eu-west-1"], optional_regions=["ap-south-1"])
    assert s.all_regions == ["us-east-1", "eu-west-1", "ap-south-1"]
