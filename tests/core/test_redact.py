"""Credentials in the shapes logs, errors and reports carry them never get through."""

from __future__ import annotations

import logging

import pytest

from imgpub.redact import MASK, RedactingFilter, redact, redact_data

SAS = "sv=2023-11-03&ss=b&srt=o&sp=rw&se=2026-12-01T00:00:00Z&sig=AbCd%2Bef%3D"

CASES = [
    # (text, the secret that must vanish, what must stay)
    (f"https://acct.blob.core.windows.net/c/disk.vhd?{SAS}", "AbCd%2Bef%3D", "sp=rw"),
    (
        "https://md-abc.z1.blob.storage.azure.net/xyz/abcd?sv=2018-03-28&sr=b&si=1&sig=Q29vbA%3D%3D",
        "Q29vbA%3D%3D",
        "md-abc.z1.blob.storage.azure.net",
    ),
    (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAX%2F2026"
        "&X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Signature=0123abcd",
        "IQoJb3JpZ2lu",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    ),
    (
        "https://storage.googleapis.com/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=ADPycdt-xyz_1",
        "ADPycdt-xyz_1",
        "uploadType=resumable",
    ),
    (
        "{'x-amz-security-token': b'FwoGZXIvYXdzEBa', 'Authorization': b'AWS4-HMAC-SHA256 "
        "Credential=AKIA/20261129/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=deadbeef00'}",
        "FwoGZXIvYXdzEBa",
        "'x-amz-security-token'",
    ),
    (
        "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGc.eyJhdWQ.sig-part",
        "eyJ0eXAiOiJKV1QiLCJhbGc",
        "Authorization",
    ),
    ("send: b'Authorization: SharedKey acct:c2VjcmV0a2V5\\r\\nHost: x'", "c2VjcmV0a2V5", "Host: x"),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=bm90LWEta2V5==;EndpointSuffix=core.windows.net",
        "bm90LWEta2V5==",
        "AccountName=acct",
    ),
    ('{"access_token": "ya29.a0Af", "expires_in": 3599}', "ya29.a0Af", '"expires_in": 3599'),
    ("client_secret=s3cr3t-value&grant_type=client_credentials", "s3cr3t-value", "grant_type"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
        "MIIEvQIBADANBg",
        "PRIVATE KEY",
    ),
    ("Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "Signature="),
]


@pytest.mark.parametrize(("text", "secret", "kept"), CASES, ids=[c[1][:12] for c in CASES])
def test_secrets_go_and_context_stays(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out and MASK in out and kept in out


def test_plain_text_is_untouched() -> None:
    text = "target ami: RegisterImage in eu-west-1 failed [InvalidAMIName.Malformed]: bad name (code 400)"
    assert redact(text) == text


def test_report_data_is_redacted_everywhere() -> None:
    report = {"targets": [{"error": f"upload failed: https://a/b?{SAS}", "n": 3, "ok": False}]}
    assert redact_data(report) == {
        "targets": [
            {"error": f"upload failed: https://a/b?{SAS.replace('AbCd%2Bef%3D', MASK)}", "n": 3, "ok": False}
        ]
    }


def test_the_logging_filter_redacts_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.DEBUG, logger="test.redact"):
            logger.debug("PUT %s", f"https://x/blob?{SAS}")
            try:
                raise RuntimeError("bad key AccountKey=c2VjcmV0;")
            except RuntimeError:
                logger.exception("failed")
        text = caplog.text
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "AbCd%2Bef%3D" not in text and "c2VjcmV0" not in text
    assert "PUT https://x/blob?" in text and "RuntimeError" in text
