"""AWS's name forms: regions (botocore's lists per partition), buckets, role ARNs."""

from __future__ import annotations

import boto3
import pytest

from imgpub_aws.names import bucket_problem, known_regions, partition_of, role_arn_problem


def test_the_known_regions_are_boto3_s_for_ec2_in_every_partition() -> None:
    session = boto3.session.Session()
    every = {r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", p)}
    assert known_regions() == every
    assert {"us-east-1", "cn-north-1", "us-gov-west-1", "eusc-de-east-1"} <= every


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("eu-west-1", "aws"),
        ("eu-west-9", "aws"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-east-1", "aws-us-gov"),
        ("us-gov-north-7", "aws-us-gov"),
        ("us-isob-east-1", "aws-iso-b"),
    ],
)
def test_partition_of_a_region(region: str, partition: str) -> None:
    assert partition_of(region) == partition


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Uploads", "under_score", "-dash", "dot.", "my..bucket", "a.-b", "10.1.2.3",
     "xn--bucket", "sthree-x", "images-s3alias", "images--ol-s3", "images.mrap"],
)  # fmt: skip
def test_bucket_names_s3_refuses(name: str) -> None:
    assert bucket_problem(name) is not None


@pytest.mark.parametrize("name", ["abc", "a" * 63, "imgpub-uploads", "images.example.com", "1bucket2"])
def test_bucket_names_s3_takes(name: str) -> None:
    assert bucket_problem(name) is None


def test_role_arns() -> None:
    assert role_arn_problem("arn:aws:iam::123456789012:role/publisher") is None
    assert role_arn_problem("arn:aws-cn:iam::123456789012:role/ci/team/publisher") is None
    assert "not a role ARN" in (role_arn_problem("arn:aws:iam::123456789012:user/alice") or "")
    assert "1-64" in (role_arn_problem("arn:aws:iam::123456789012:role/" + "r" * 65) or "")
