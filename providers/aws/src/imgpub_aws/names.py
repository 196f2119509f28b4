"""The forms AWS gives its names: regions and partitions, S3 buckets, IAM roles, AMI names.

Regions are checked against the regions botocore ships for EC2 in every partition (its
`endpoints.json`, read offline); a well-formed region botocore does not know yet is a warning, so a
new region works before the SDK lists it. Every other rule here is AWS's documented form, quoted
next to the constant.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from imgpub.names import region_problem
from imgpub.provider import Problem

__all__ = [
    "AMI_CHARS",
    "AMI_NAME",
    "REGION_FORM",
    "REGION_PATTERN",
    "bucket_problem",
    "external_id_problem",
    "known_regions",
    "partition_of",
    "region_problems",
    "role_arn_problem",
]

REGION_PATTERN = r"[a-z]{2,4}(-[a-z]+)+-\d{1,2}"
"""Every partition's region names: `us-east-1`, `cn-north-1`, `us-gov-west-1`, `eusc-de-east-1`."""
REGION_FORM = "lowercase words and a number joined by '-', like 'eu-west-1'"
REGION_SOURCE = "the regions botocore lists for EC2"

AMI_CHARS = r"A-Za-z0-9()\[\] ./\-'@_"
AMI_NAME = re.compile(rf"^[{AMI_CHARS}]{{3,128}}$")
"""RegisterImage Name (botocore's EC2 model): 3-128 alphanumerics, ( ) [ ] space . / - ' @ _."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3 general purpose bucket names: 3-63 lowercase letters, digits, '.' and '-', starting and
ending with a letter or digit (S3 User Guide, "General purpose bucket naming rules")."""
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
"""Reserved for access point aliases, Object Lambda, Multi-Region Access Points, directory and
table buckets: a general purpose bucket may not use them."""

_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role(/.*)$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
"""IAM role names: 1-64 of letters, digits and + = , . @ _ - (IAM API reference, CreateRole)."""
_ROLE_PATH = re.compile(r"^/([\x21-\x7e]*/)?$")
"""IAM paths: '/' alone, or '/'-delimited printable ASCII starting and ending with '/', at most 512."""
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
"""STS AssumeRole ExternalId: 2-1224 of letters, digits and + = , . @ : / - (botocore's STS model)."""


@functools.cache
def _partitions() -> dict[str, tuple[str, ...]]:
    """Partition name -> the EC2 regions botocore knows in it (botocore is imported on first use)."""
    import botocore.session  # type: ignore[import-untyped]

    session = botocore.session.get_session()
    return {p: tuple(session.get_available_regions("ec2", p)) for p in session.get_available_partitions()}


@functools.cache
def _partition_patterns() -> dict[str, str]:
    import botocore.loaders  # type: ignore[import-untyped]

    endpoints = botocore.loaders.create_loader().load_data("endpoints")
    return {p["partition"]: p["regionRegex"] for p in endpoints["partitions"] if p.get("regionRegex")}


def known_regions() -> frozenset[str]:
    return frozenset(r for regions in _partitions().values() for r in regions)


def partition_of(region: str) -> str:
    """`aws`, `aws-cn`, `aws-us-gov`, ...: from botocore's lists, then its per-partition patterns."""
    for partition, regions in _partitions().items():
        if region in regions:
            return partition
    matches = (p for p, rx in _partition_patterns().items() if re.match(rx, region))
    return next(matches, "aws")


def region_problems(field: str, regions: list[str]) -> list[Problem]:
    """One Problem per region that is malformed, misspelt (error) or unknown to botocore (warning)."""
    known = known_regions()
    out = []
    for i, region in enumerate(regions):
        where = field if field == "region" else f"{field}[{i}]"
        problem = region_problem(
            where, region, known, pattern=REGION_PATTERN, form=REGION_FORM, source=REGION_SOURCE
        )
        if problem is not None:
            out.append(problem)
    return out


def bucket_problem(name: str) -> str | None:
    """Why `name` is not a valid S3 general purpose bucket name, or None."""
    if not 3 <= len(name) <= 63:
        return "bucket names are 3-63 characters"
    if not _BUCKET.match(name):
        return "bucket names are lowercase letters, digits, '.' and '-', and start and end alphanumeric"
    if ".." in name or ".-" in name or "-." in name:
        return "a bucket name may not have '..', '.-' or '-.'"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return "a bucket name may not look like an IP address"
    if name.startswith(_BUCKET_PREFIXES) or name.endswith(_BUCKET_SUFFIXES):
        return f"S3 reserves the prefixes {_BUCKET_PREFIXES} and the suffixes {_BUCKET_SUFFIXES}"
    return None


def role_arn_problem(arn: str) -> str | None:
    """Why `arn` is not an IAM role ARN (`arn:aws:iam::<account>:role/[path/]name`), or None."""
    match = _ROLE_ARN.match(arn)
    if not match:
        return "not a role ARN: arn:aws:iam::<12-digit account>:role/<name>"
    path, _, name = match.group(3).rpartition("/")
    if not _ROLE_NAME.match(name):
        return "role names are 1-64 of letters, digits and + = , . @ _ -"
    if len(path) + 1 > 512 or not _ROLE_PATH.match(path + "/"):
        return "the role path must be printable ASCII between '/' (at most 512)"
    return None


def external_id_problem(value: str) -> str | None:
    if not _EXTERNAL_ID.match(value):
        return "an ExternalId is 2-1224 of letters, digits and + = , . @ : / -"
    return None
