"""429 and 5xx answers whose body botocore cannot read: a proxy's or load balancer's HTML page, plain
text, truncated XML or JSON, nothing at all. They are transient whatever the body (botocore raises
ResponseParserError for some, a ClientError without an AWS code for others), for EC2 (query/XML),
EBS (rest-json) and S3 (rest-xml); when retries run out, the error names the HTTP status and never
quotes the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.retry import FAST, RetryPolicy
from imgpub_aws import AwsProvider
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller
from imgpub_aws.ledger import NONCE_KEY, Ledger
from imgpub_aws.s3_import import S3Importer

NGINX = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
BODIES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "text/plain"),
    "html": (NGINX, "text/html"),
    "text": (
        b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
        "text/plain",
    ),
    "truncated-xml": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>Req',
        "text/xml",
    ),
    "truncated-json": (b'{"__type": "ThrottlingExcep', "application/x-amz-json-1.1"),
}
STATUSES = [429, 500, 502, 503, 504]


def cases(shift: int) -> list[tuple[str, int]]:
    """Every body once, every status once."""
    return [(kind, STATUSES[(i + shift) % 5]) for i, kind in enumerate(BODIES)]


def fault(moto: Moto, action: str, kind: str, status: int, count: int = 2) -> None:
    body, ctype = BODIES[kind]
    moto.fault(action, status=status, body=body, content_type=ctype, count=count)


@pytest.mark.parametrize(("kind", "status"), cases(0))
def test_ec2_answers_botocore_cannot_read_are_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kind: str, status: int
) -> None:
    fault(moto, "DescribeImages", kind, status)
    plan = AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path))
    assert [a.kind for a in plan.actions] == ["upload", "create"]
    assert len(moto.requests("DescribeImages")) == 3


@pytest.mark.parametrize(("kind", "status"), cases(1))
def test_ebs_answers_botocore_cannot_read_are_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kind: str, status: int
) -> None:
    fault(moto, "StartSnapshot", kind, status, count=1)
    fault(moto, "PutSnapshotBlock", kind, status)
    fault(moto, "CompleteSnapshot", kind, status, count=1)
    published = AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    assert published.artifacts and len(moto.requests("StartSnapshot")) == 2
    assert len(moto.requests("CompleteSnapshot")) == 2


@pytest.mark.parametrize(("kind", "status"), cases(2))
def test_s3_answers_botocore_cannot_read_are_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, kind: str, status: int
) -> None:
    moto.client("s3").create_bucket(Bucket="images-bucket")
    moto.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument="{}")
    journal = Journal(tmp_path / "journal.json")
    journal.update({NONCE_KEY: "0123456789abcdef"})
    key = f"/images-bucket/up/{'d' * 24}-0123456789ab.raw"
    fault(moto, f"PUT {key}", kind, status)
    fault(moto, f"DELETE {key}", kind, status, count=1)
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket", s3_prefix="up/")
    importer = S3Importer(
        AwsClients(settings),
        Caller("aws-main", FAST),
        "us-east-1",
        RecordingProgress(),
        journal,
        Ledger(),
        bucket="images-bucket",
        prefix="up/",
        digest="d" * 24,
        tags={"imgpub:digest": "d" * 24},
        sleep=lambda _: None,
    )
    assert importer.upload(disk).startswith("snap-")
    assert len(moto.requests(f"DELETE {key}")) == 2
    assert moto.client("s3").list_objects_v2(Bucket="images-bucket").get("KeyCount") == 0


@pytest.mark.parametrize(
    ("action", "status", "kind"),
    [("DescribeImages", 429, "html"), ("DescribeImages", 502, "text"), ("StartSnapshot", 503, "html")],
)
def test_when_retries_run_out_the_error_names_the_status_not_the_body(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, action: str, status: int, kind: str
) -> None:
    fault(moto, action, kind, status, count=100)
    with pytest.raises(CloudError) as caught:
        AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    text = str(caught.value)
    assert f"{action} in us-east-1 failed [{status}]: HTTP {status} " in text, text
    assert f"with a body that is not an AWS response ({BODIES[kind][1]}" in text, text
    assert "nginx" not in text and "upstream" not in text and "\n" not in text
    assert caught.value.retryable


def test_an_unreadable_429_honours_retry_after(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """botocore's ResponseParserError carries no headers: the Retry-After is read off the reply itself."""
    waits: list[float] = []
    slow = RetryPolicy(attempts=4, budget_seconds=3600, initial_wait=20.0, max_wait=60.0, sleep=waits.append)
    moto.fault("DescribeImages", status=429, body=b"", headers={"Retry-After": "7"}, count=2)
    AwsProvider().plan(image_info(disk), settings_for(), context(tmp_path, retry=slow))
    assert waits == [7.0, 7.0]
