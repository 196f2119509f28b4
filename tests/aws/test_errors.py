"""The botocore -> imgpub error boundary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, ReadTimeoutError

from imgpub.errors import CloudError, CredentialsError
from imgpub_aws import errors
from imgpub_aws.errors import CODES, aws_errors, is_transient

SRC = Path(errors.__file__).parent


def client_error(code: str, status: int = 400, message: str = "msg") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


def test_every_code_the_provider_handles_is_in_the_table() -> None:
    """Codes compared anywhere in the sources (exc.code == "X", in ("X", ...)) must be in CODES."""
    used: set[str] = set()
    for path in SRC.glob("*.py"):
        if path.name == "errors.py":
            continue
        text = path.read_text()
        for match in re.finditer(
            r"code(?:\([^)]*\))?\s*(?:==|!=|in|not in)\s*(\([^)]*\)|\{[^}]*\}|\"[^\"]+\")", text
        ):
            used |= set(re.findall(r"\"([A-Za-z.]+)\"", match.group(1)))
    assert {"ResourceNotFoundException", "OperationNotPermitted", "NoSuchEntity"} <= used, (
        "the scan is broken"
    )
    for path in SRC.glob("*.py"):  # dotted EC2 codes kept in constants (_GONE = ("X.NotFound", ...))
        used |= set(re.findall(r"\"([A-Z][A-Za-z]+\.[A-Z][A-Za-z]+)\"", path.read_text()))
    assert {"InvalidSnapshot.InUse", "InvalidAMIID.NotFound"} <= used, "the constant scan is broken"
    assert used <= set(CODES), f"codes missing from errors.CODES: {sorted(used - set(CODES))}"


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottledException",
        "ServiceUnavailable",
        "InternalError",
    ],
)
def test_throttling_and_server_errors_are_transient(code: str) -> None:
    assert is_transient(client_error(code, 503))


def test_unknown_5xx_and_429_are_transient_but_4xx_are_not() -> None:
    assert is_transient(client_error("Whatever", 502)) and is_transient(client_error("Whatever", 429))
    assert not is_transient(client_error("Whatever", 400))
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(client_error("ValidationException", 400))
    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))


def test_a_reply_botocore_cannot_parse_is_transient_and_named_by_its_status() -> None:
    from botocore.parsers import ResponseParserError

    from imgpub_aws.errors import remember_reply

    remember_reply({"status_code": 429, "headers": {"Content-Type": "text/html"}, "body": b"<html>x"})
    exc = ResponseParserError("Unable to parse response (mismatched tag), invalid XML received:\n<html>x")
    assert is_transient(exc)
    with pytest.raises(CloudError) as info, aws_errors("t", "DescribeImages", "us-east-1"):
        raise exc
    assert str(info.value) == (
        "target t: DescribeImages in us-east-1 failed [429]: HTTP 429 Too Many Requests with a body that "
        "is not an AWS response (text/html, 7 bytes): the service, or a proxy or load balancer in "
        "between, is in trouble"
    )
    assert info.value.retryable


def test_access_denied_names_the_permission() -> None:
    with pytest.raises(CloudError) as info, aws_errors("t", "RegisterImage", "eu-west-1"):
        raise client_error("UnauthorizedOperation", 403, "You are not authorized to perform this operation.")
    assert str(info.value) == (
        "target t: RegisterImage in eu-west-1 failed [UnauthorizedOperation]: You are not authorized to "
        "perform this operation.; the caller lacks the IAM permission for RegisterImage (check the policy of "
        "the role or user)"
    )
    assert isinstance(info.value.__cause__, ClientError)


def test_no_credentials_points_at_the_standard_chain() -> None:
    with (
        pytest.raises(CredentialsError, match=r"AWS_PROFILE .* instance role"),
        aws_errors("t", "StartSnapshot", None),
    ):
        raise NoCredentialsError()


def test_expired_token_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError, match="expired"), aws_errors("t", "DescribeImages", "us-east-1"):
        raise client_error("ExpiredToken", 400)


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), aws_errors("t", "X", None):
        raise KeyError("not botocore")
