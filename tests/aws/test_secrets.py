"""No AWS credential reaches an error line, a note or a warning of the AWS provider: not the session
token, the Authorization header's signature or the access key id, even when an error document (or a
proxy's page) echoes the request, and not an S3 multipart UploadId."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.exceptions import EndpointConnectionError

from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError, ImgpubError
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub_aws import AwsProvider
from imgpub_aws.errors import aws_errors, redact
from imgpub_aws.ledger import NONCE_KEY

KEY_ID = "ASIAQWERTYUIOPASDFGH"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQDtokenTOKENtoken" + "A" * 200


@pytest.fixture
def session(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    """Temporary credentials, as CI's OIDC role gives: key id, secret and session token."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    return moto


def assert_clean(text: str) -> None:
    assert TOKEN[:40] not in text and KEY_ID not in text and SECRET not in text, text
    assert "Signature=" not in text or "Signature=<redacted>" in text, text


def signature(moto: Moto) -> str:
    auth = moto.requests()[-1]["headers"]["authorization"]
    return str(auth.rsplit("Signature=", 1)[1])


@pytest.mark.parametrize(
    ("action", "status", "code", "body"),
    [
        ("DescribeImages", 400, "InvalidParameterValue", None),  # an EC2 error document
        ("StartSnapshot", 400, "ValidationException", None),  # an EBS (rest-json) error
        ("DescribeImages", 503, "ServiceUnavailable", b"<html><body>proxy error</body></html>"),
        ("StartSnapshot", 502, "BadGateway", b"Bad gateway. Request was:"),
    ],
)
def test_an_error_that_echoes_the_request_shows_no_credential(
    session: Moto,
    settings_for: Any,
    disk: DiskImage,
    tmp_path: Path,
    action: str,
    status: int,
    code: str,
    body: bytes | None,
) -> None:
    session.fault(action, status=status, code=code, body=body, echo=True, count=100, message="refused:")
    with pytest.raises(ImgpubError) as caught:
        AwsProvider().publish(image_info(disk), settings_for(), disk, context(tmp_path))
    text = str(caught.value)
    assert_clean(text)
    assert signature(session) not in text
    assert f"{action} in us-east-1 failed" in text


def test_a_failed_multipart_upload_names_no_upload_id(
    session: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    session.client("s3").create_bucket(Bucket="images-bucket")
    session.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument="{}")
    journal = Journal(tmp_path / "journal.json")
    journal.update({NONCE_KEY: "0123456789abcdef"})
    key = f"/images-bucket/up/{'d' * 24}-0123456789ab.raw"
    session.fault(f"PUT {key}", status=403, code="AccessDenied", message="denied", count=100)
    session.fault(f"DELETE {key}", status=403, code="AccessDenied", message="denied", count=100)
    progress = RecordingProgress()
    settings = settings_for(upload="s3-import", s3_bucket="images-bucket", s3_prefix="up/")
    with pytest.raises(CloudError) as caught:
        AwsProvider().publish(
            image_info(disk), settings, disk, context(tmp_path, journal=journal, progress=progress)
        )
    (abort,) = [r for r in session.requests(f"DELETE {key}") if "uploadId" in r["query"]]
    upload_id = parse_qs(abort["query"])["uploadId"][0]
    everything = " ".join([str(caught.value), *progress.notes])
    assert "could not abort the multipart upload" in everything
    assert upload_id not in everything
    assert_clean(everything)


@pytest.mark.parametrize(
    "raw",
    [
        "https://ebs.us-east-1.amazonaws.com/snapshots?X-Amz-Security-Token={t}&X-Amz-Signature=0a1b2c3d4e5f",
        "Authorization: AWS4-HMAC-SHA256 Credential={k}/20250101/us-east-1/ec2/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0a1b2c3d4e5f6a7b8c9d",
        "x-amz-security-token: {t}",
        '{{"SessionToken": "{t}", "SecretAccessKey": "{s}", "AccessKeyId": "{k}"}}',
        "UploadId=VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA",
    ],
)
def test_redact_removes_credentials_in_the_forms_they_take(raw: str) -> None:
    text = redact(raw.format(t=TOKEN, k=KEY_ID, s=SECRET))
    assert_clean(text)
    assert "0a1b2c3d4e5f" not in text and "VXBsb2Fk" not in text
    assert "<redacted" in text


def test_a_network_error_with_a_presigned_url_is_redacted() -> None:
    url = f"https://s3.amazonaws.com/b/k?X-Amz-Credential={KEY_ID}%2F20250101&X-Amz-Security-Token={TOKEN}"
    with pytest.raises(CloudError) as caught, aws_errors("t", "GetObject", "us-east-1"):
        raise EndpointConnectionError(endpoint_url=url)
    assert_clean(str(caught.value))
    assert "network error: Could not connect to the endpoint URL" in str(caught.value)
