"""The one boundary where botocore errors become imgpub errors, and what is worth retrying.

`CODES` is the only table of AWS error codes: every code the provider reacts to is in it (a test
checks the sources against it). Nothing above `aws_errors` catches botocore exceptions.
"""

from __future__ import annotations

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
        "conflict", "an AMI with this name exists without imgpub tags; set ami_name or deregister it"
    ),
    "ConflictException": Rule("conflict"),
    "IdempotentParameterMismatch": Rule("conflict"),
    "ServiceQuotaExceededException": Rule("quota", "raise the quota in Service Quotas or wait"),
    "ConcurrentLimitExceededException": Rule("quota", "too many snapshots in progress; wait and re-run"),
    "ResourceLimitExceeded": Rule("quota", "raise the quota in Service Quotas or wait"),
    "SnapshotLimitExceeded": Rule("quota", "raise the quota in Service Quotas or wait"),
}

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def _bx() -> Any:
    """botocore.exceptions, imported when an error is first looked at (not when a manifest loads)."""
    from botocore import exceptions  # type: ignore[import-untyped]

    return exceptions


def _network(exc: BaseException) -> bool:
    bx = _bx()
    return isinstance(
        exc,
        bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError | bx.ConnectionClosedError,
    )


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, _bx().ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    if isinstance(exc, CloudError):
        return exc.code
    return None


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and network timeouts; everything else fails at once."""
    if _network(exc):
        return True
    if isinstance(exc, _bx().ClientError):
        rule = CODES.get(error_code(exc) or "")
        if rule is not None:
            return rule.kind == "transient"
        return _status(exc) in _TRANSIENT_STATUS
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date), or None."""
    if not isinstance(exc, _bx().ClientError):
        return None
    return retry_after_seconds(
        exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
    )


def translate(exc: Exception, target: str, operation: str, region: str | None) -> ImgpubError | None:
    """The imgpub error for a botocore exception, or None when `exc` is not from botocore."""
    bx = _bx()
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return CredentialsError(
            target,
            f"no usable AWS credentials for {operation} ({exc}); set them the standard way: AWS_PROFILE "
            "or the target's profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, or an instance role",
        )
    if isinstance(exc, bx.ProfileNotFound):
        return CredentialsError(target, f"{exc}; check profile in the manifest or AWS_PROFILE")
    if isinstance(exc, bx.NoRegionError):
        return CredentialsError(target, "no AWS region configured; set region in the manifest")
    if _network(exc):
        return CloudError(target, operation, f"network error: {exc}", region=region, retryable=True)
    if isinstance(exc, bx.ClientError):
        code = error_code(exc) or str(_status(exc))
        message = str(exc.response.get("Error", {}).get("Message") or exc)
        rule = CODES.get(code)
        hint = rule.hint.format(op=operation) if rule and rule.hint else ""
        text = f"{message}; {hint}" if hint else message
        if rule is not None and rule.kind == "credentials":
            return CredentialsError(target, f"{operation} in {region}: [{code}] {text}")
        transient = is_transient(exc)
        return CloudError(target, operation, text, code=code, region=region, retryable=transient)
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(target, operation, str(exc), region=region)
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
