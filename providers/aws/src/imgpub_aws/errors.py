"""The one boundary where botocore errors become imgpub errors, and what is worth retrying.

`CODES` is the only table of AWS error codes: every code the provider reacts to is in it (a test
checks the sources against it). Nothing above `aws_errors` catches botocore exceptions.

A reply botocore cannot read (an HTML page, plain text or truncated XML from a proxy or load
balancer, an empty 429) raises `ResponseParserError`, which carries neither the HTTP status nor the
headers: `remember_reply` (botocore's before-parse hook, on every client) keeps both for the thread
that parses, so such a reply is retried (honouring its Retry-After) and, when retries run out, named
by its status. Such a body is never quoted, and every text taken from the SDK is `redact`ed: a proxy's
error page may echo the request, signature and session token included.
"""

from __future__ import annotations

import http
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from imgpub.errors import CloudError, CredentialsError, ImgpubError, TargetError
from imgpub.retry import RetryPolicy, retry_after_seconds

T = TypeVar("T")
Kind = Literal["transient", "credentials", "denied", "invalid", "missing", "conflict", "quota"]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    hint: str = ""


_DENIED = "the caller lacks the IAM permission for {op} (check the policy of the role or user)"
_CREDS = "the credentials were rejected; check AWS_PROFILE/profile, role_arn and the clock"

CODES: dict[str, Rule] = {
    # throttling and server-side trouble: retried by imgpub.retry
    "ThrottlingException": Rule("transient"),
    "Throttling": Rule("transient"),
    "RequestLimitExceeded": Rule("transient"),
    "RequestThrottledException": Rule("transient"),
    "TooManyRequestsException": Rule("transient"),
    "SlowDown": Rule("transient"),
    "InternalServerException": Rule("transient"),
    "InternalError": Rule("transient"),
    "InternalFailure": Rule("transient"),
    "ServiceUnavailable": Rule("transient"),
    "Unavailable": Rule("transient"),
    "RequestTimeout": Rule("transient"),
    "RequestTimeoutException": Rule("transient"),
    # credentials
    "AuthFailure": Rule("credentials", _CREDS),
    "InvalidClientTokenId": Rule("credentials", _CREDS),
    "UnrecognizedClientException": Rule("credentials", _CREDS),
    "SignatureDoesNotMatch": Rule("credentials", _CREDS),
    "ExpiredToken": Rule("credentials", "the session token expired; refresh the credentials and re-run"),
    "ExpiredTokenException": Rule(
        "credentials", "the session token expired; refresh the credentials and re-run"
    ),
    "InvalidAccessKeyId": Rule("credentials", _CREDS),
    # permissions: fail at once
    "AccessDenied": Rule("denied", _DENIED),
    "AccessDeniedException": Rule("denied", _DENIED),
    "UnauthorizedOperation": Rule("denied", _DENIED),
    "OperationNotPermitted": Rule(
        "denied", "not allowed for this account (public sharing needs image block public access disabled)"
    ),
    # bad requests: the message names the field
    "ValidationException": Rule("invalid"),
    "InvalidParameter": Rule("invalid"),
    "InvalidParameterValue": Rule("invalid"),
    "InvalidParameterCombination": Rule("invalid"),
    "InvalidAMIName.Malformed": Rule("invalid", "fix ami_name"),
    "InvalidBlockDeviceMapping": Rule("invalid", "check volume_size and root_device_name"),
    "InvalidAMIAttributeItemValue": Rule("invalid", "check share_accounts/share_organizations/share_ous"),
    "IncorrectState": Rule("invalid"),
    "InvalidAMIID.Malformed": Rule("invalid"),
    "InvalidKMSKey.Id": Rule("invalid", "check kms_key_id / kms_key_ids: the key must exist in that region"),
    "InvalidParameterDependency": Rule("invalid", "a KMS key needs encrypted: true"),
    "InvalidSnapshotID.Malformed": Rule("invalid"),
    "TagLimitExceeded": Rule(
        "invalid", "AMIs and snapshots take at most 50 tags: fewer image.labels or tags"
    ),
    "InvalidBucketName": Rule("invalid", "fix s3_bucket"),
    "KeyTooLongError": Rule("invalid", "shorten s3_prefix"),
    "InvalidUserID.Malformed": Rule("invalid", "share_accounts must be 12-digit account ids"),
    # things that are not there
    "ResourceNotFoundException": Rule("missing"),
    "InvalidSnapshot.NotFound": Rule("missing"),
    "InvalidAMIID.NotFound": Rule("missing"),
    "InvalidAMIID.Unavailable": Rule("missing"),
    "NoSuchBucket": Rule("missing", "create the bucket named in s3_bucket, or fix the name"),
    "NoSuchEntity": Rule("missing"),
    "NoSuchUpload": Rule("missing"),
    "InvalidConversionTaskId.Malformed": Rule("missing"),
    "InvalidSnapshot.InUse": Rule("conflict"),
    "InvalidAMIName.Duplicate": Rule(
        "conflict", "another AMI holds this name; set ami_name or deregister it"
    ),
    "ConflictException": Rule("conflict"),
    "IdempotentParameterMismatch": Rule("conflict"),
    "ServiceQuotaExceededException": Rule("quota", "raise the quota in Service Quotas or wait"),
    "ConcurrentLimitExceededException": Rule("quota", "too many snapshots in progress; wait and re-run"),
    "ResourceLimitExceeded": Rule("quota", "raise the quota in Service Quotas or wait"),
    "SnapshotLimitExceeded": Rule("quota", "raise the quota in Service Quotas or wait"),
}

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_reply = threading.local()
"""The status, headers and body size of the reply this thread parsed last (see remember_reply)."""

_SECRETS = [
    (re.compile(r"(?i)(X-Amz-(?:Security-Token|Signature|Credential))=[^&\s\"'<>]+"), r"\1=<redacted>"),
    (re.compile(r"(?i)(x-amz-security-token|authorization)(\"?\s*[:=]\s*\"?)[^\n\"<>]+"), r"\1\2<redacted>"),
    (re.compile(r"(?i)(AWS4-HMAC-SHA256\s+)Credential=[^\n\"<>]+"), r"\1<redacted>"),
    (re.compile(r"(?i)\b(Signature|Credential)=[^,&\s\"'<>]+"), r"\1=<redacted>"),
    (re.compile(r"(?i)(upload_?id)([\"']?\s*[:=]\s*[\"']?)[^&\s\"'<>,]+"), r"\1\2<redacted>"),
    (
        re.compile(
            r"(?i)(aws_secret_access_key|aws_session_token|SecretAccessKey|SessionToken)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s\"'<>,]+"
        ),
        r"\1\2<redacted>",
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "<redacted-key-id>"),
]
"""Credentials as they may appear in a message: SigV4 query parameters (presigned URLs), the
Authorization and x-amz-security-token headers a proxy's page may echo, S3 multipart upload ids,
secret and session values, access key ids."""


def redact(text: str) -> str:
    """`text` without the credentials `_SECRETS` describes."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def remember_reply(response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's `before-parse` hook: keep the reply's status and headers for this thread."""
    _reply.status = int(response_dict.get("status_code") or 0)
    _reply.headers = {str(k).lower(): str(v) for k, v in (response_dict.get("headers") or {}).items()}
    body = response_dict.get("body")
    _reply.size = len(body) if isinstance(body, bytes | bytearray) else None


def _bx() -> Any:
    """botocore.exceptions, imported when an error is first looked at (not when a manifest loads)."""
    from botocore import exceptions  # type: ignore[import-untyped]

    return exceptions


def _unreadable(exc: BaseException) -> bool:
    """A reply botocore could not parse (ResponseParserError lives in botocore.parsers)."""
    from botocore.parsers import ResponseParserError  # type: ignore[import-untyped]

    return isinstance(exc, ResponseParserError)


def _network(exc: BaseException) -> bool:
    bx = _bx()
    # ConnectionError: refused, DNS, proxy, connect timeout; HTTPClientError: reset, closed, read timeout;
    # not a certificate that does not verify (SSLError): that fails the same way every time
    return isinstance(exc, bx.ConnectionError | bx.HTTPClientError) and not isinstance(exc, bx.SSLError)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, _bx().ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    if isinstance(exc, CloudError):
        return exc.code
    return None


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx, network timeouts and replies botocore cannot read (an error page from a proxy,
    a truncated reply: "further retries may succeed"); everything else fails at once."""
    if _network(exc) or _unreadable(exc):
        return True
    if isinstance(exc, _bx().ClientError):
        rule = CODES.get(error_code(exc) or "")
        if rule is not None:
            return rule.kind == "transient"
        return _status(exc) in _TRANSIENT_STATUS
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date), or None."""
    if _unreadable(exc):
        return retry_after_seconds(getattr(_reply, "headers", {}).get("retry-after"))
    if not isinstance(exc, _bx().ClientError):
        return None
    return retry_after_seconds(
        exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
    )


def _no_document(status: int, headers: dict[str, str], size: int | None) -> str:
    """What an error reply without an AWS error document was, never its body (it may echo secrets)."""
    try:
        reason = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        reason = ""
    kind = headers.get("content-type") or "no content type"
    length = f", {size} bytes" if size is not None else ""
    return (
        f"HTTP {status}{reason} with a body that is not an AWS response ({kind}{length}): "
        "the service, or a proxy or load balancer in between, is in trouble"
    )


def translate(exc: Exception, target: str, operation: str, region: str | None) -> ImgpubError | None:
    """The imgpub error for a botocore exception, or None when `exc` is not from botocore."""
    bx = _bx()
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return CredentialsError(
            target,
            f"no usable AWS credentials for {operation} ({redact(str(exc))}); set them the standard way: "
            "AWS_PROFILE or the target's profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, "
            "or an instance role",
        )
    if isinstance(exc, bx.ProfileNotFound):
        return CredentialsError(target, f"{exc}; check profile in the manifest or AWS_PROFILE")
    if isinstance(exc, bx.NoRegionError):
        return CredentialsError(target, "no AWS region configured; set region in the manifest")
    if _network(exc):
        return CloudError(
            target, operation, f"network error: {redact(str(exc))}", region=region, retryable=True
        )
    if _unreadable(exc):
        status = getattr(_reply, "status", 0)
        text = _no_document(status, getattr(_reply, "headers", {}), getattr(_reply, "size", None))
        return CloudError(target, operation, text, code=str(status), region=region, retryable=True)
    if isinstance(exc, bx.ClientError):
        code = error_code(exc) or str(_status(exc))
        message = redact(str(exc.response.get("Error", {}).get("Message") or exc))
        if code.isdigit():  # botocore found no AWS error code: the body is a proxy's page, or empty
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            message = _no_document(_status(exc), dict(headers), None)
        rule = CODES.get(code)
        hint = rule.hint.format(op=operation) if rule and rule.hint else ""
        text = f"{message}; {hint}" if hint else message
        if rule is not None and rule.kind == "credentials":
            return CredentialsError(target, f"{operation} in {region}: [{code}] {text}")
        transient = is_transient(exc)
        return CloudError(target, operation, text, code=code, region=region, retryable=transient)
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(target, operation, redact(str(exc)), region=region)
    return None


def with_note(exc: TargetError, note: str) -> TargetError:
    """The same failure, with `note` (what was done about it, what to do) after its message."""
    if isinstance(exc, CloudError):
        where = f" in {exc.region}" if exc.region else ""
        coded = f" [{exc.code}]" if exc.code else ""
        detail = exc.message.removeprefix(f"{exc.operation}{where} failed{coded}: ")
        return CloudError(
            exc.target,
            exc.operation,
            f"{detail}; {note}",
            code=exc.code,
            region=exc.region,
            retryable=exc.retryable,
        )
    return TargetError(exc.target, f"{exc.message}; {note}")


@contextmanager
def aws_errors(target: str, operation: str, region: str | None) -> Iterator[None]:
    """Map botocore exceptions raised inside to ImgpubError subclasses (`from exc`)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, target, operation, region)
        if mapped is None:
            raise
        raise mapped from exc


class Caller:
    """Runs one API call with imgpub's retry policy, then translates what is left."""

    def __init__(self, target: str, retry: RetryPolicy) -> None:
        self.target = target
        self.retry = retry

    def __call__(
        self,
        operation: str,
        region: str | None,
        fn: Callable[[], T],
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> T:
        with aws_errors(self.target, operation, region):
            return self.retry.call(fn, transient, retry_after)
