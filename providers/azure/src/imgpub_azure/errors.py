"""The one boundary where azure-core exceptions become imgpub errors (house rule 9).

Nothing else in imgpub_azure catches an azure exception: calls go through `call()` (retries from
imgpub.retry, honouring Retry-After) or `azure_errors()`. Messages are one line, and anything that
looks like a secret (SAS signature, account key, connection string) is removed from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

from imgpub.errors import CloudError, CredentialsError, ImgpubError, TargetError
from imgpub.progress import NullProgress, Progress
from imgpub.retry import RetryPolicy, retry_after_seconds
from imgpub_azure.redaction import redact

__all__ = [
    "ERROR_CODES",
    "NOT_VISIBLE",
    "STATUS_RULES",
    "Caller",
    "azure_errors",
    "call",
    "error_code",
    "find",
    "is_transient",
    "redact",
    "retry_after",
    "translate",
]

if TYPE_CHECKING:
    from azure.core.exceptions import HttpResponseError

T = TypeVar("T")


def _sdk() -> ModuleType:
    """azure.core.exceptions, imported on first use (importing imgpub_azure stays cheap)."""
    import azure.core.exceptions

    return azure.core.exceptions


_MAX_MESSAGE = 300
_CREDENTIAL_HINT = (
    "run `az login`, set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, use a managed identity, "
    "or set AZURE_STORAGE_CONNECTION_STRING/AZURE_STORAGE_SAS_TOKEN/AZURE_STORAGE_KEY for the upload"
)


@dataclass(frozen=True)
class Rule:
    """How one Azure error code is reported: as which error, retried or not, with what advice."""

    kind: type[TargetError]
    retryable: bool = False
    hint: str = ""


_AUTH = Rule(CredentialsError, hint="check the identity's role assignments and the credentials in use")
_LEASE_LOST = "another run took the upload blob over after this one stalled; re-run to adopt its work"
ERROR_CODES: dict[str, Rule] = {
    # Identity and permissions (ARM and storage).
    "AuthenticationFailed": _AUTH,
    "AuthorizationFailure": _AUTH,
    "AuthorizationFailed": _AUTH,
    "AuthorizationPermissionMismatch": Rule(CredentialsError, hint="the SAS or role does not allow this"),
    "InvalidAuthenticationToken": _AUTH,
    "InvalidAuthenticationTokenTenant": Rule(CredentialsError, hint="the token is for another tenant"),
    "ExpiredAuthenticationToken": _AUTH,
    "NoAuthenticationInformation": _AUTH,
    "AuthenticationFailedMissingToken": _AUTH,
    # Throttling and transient service trouble.
    "TooManyRequests": Rule(CloudError, retryable=True),
    "ServerBusy": Rule(CloudError, retryable=True),
    "OperationTimedOut": Rule(CloudError, retryable=True),
    "InternalError": Rule(CloudError, retryable=True),
    "InternalServerError": Rule(CloudError, retryable=True),
    "RetryableError": Rule(CloudError, retryable=True),
    "OperationPreempted": Rule(CloudError, retryable=True),
    "AnotherOperationInProgress": Rule(CloudError, retryable=True),
    "ServiceUnavailable": Rule(CloudError, retryable=True),
    "GatewayTimeout": Rule(CloudError, retryable=True),
    # Things the user must fix.
    "SubscriptionNotFound": Rule(CloudError, hint="check subscription_id"),
    "ResourceGroupNotFound": Rule(CloudError, hint="create the resource group or fix resource_group"),
    "MissingSubscriptionRegistration": Rule(CloudError, hint="register the Microsoft.Compute provider"),
    "ParentResourceNotFound": Rule(CloudError, hint="the gallery or image definition is missing"),
    "InvalidResourceName": Rule(CloudError, hint="see the Azure naming rules for this resource"),
    "ContainerNotFound": Rule(CloudError, hint="create the container or fix container"),
    "ContainerAlreadyExists": Rule(CloudError),
    # The upload blob's lease (blob_lease.py): held by another run, or lost to one.
    "BlobNotFound": Rule(CloudError),
    "BlobAlreadyExists": Rule(CloudError),
    "LeaseAlreadyPresent": Rule(CloudError),
    "LeaseIdMissing": Rule(CloudError, hint=_LEASE_LOST),
    "LeaseIdMismatchWithBlobOperation": Rule(CloudError, hint=_LEASE_LOST),
    "LeaseIdMismatchWithLeaseOperation": Rule(CloudError, hint=_LEASE_LOST),
    "LeaseNotPresentWithBlobOperation": Rule(CloudError, hint=_LEASE_LOST),
    "LeaseLost": Rule(CloudError, hint=_LEASE_LOST),
    "CannotDeleteResource": Rule(CloudError, hint="it still holds nested resources"),
    "PropertyChangeNotAllowed": Rule(CloudError, hint="image definitions cannot change: use a new name"),
    "LinkedInvalidPropertyId": Rule(CloudError, hint="a resource ID in the settings is malformed"),
    "LocationNotAvailableForResourceType": Rule(CloudError, hint="check location and target_regions"),
    "InvalidTag": Rule(CloudError),
    "InvalidTagNameCharacters": Rule(CloudError),
    "InvalidHeaderValue": Rule(
        CloudError, hint="the storage service rejected a header; try storage_api_version"
    ),
    "InvalidApiVersionParameter": Rule(CloudError, hint="the endpoint does not support this API version"),
    "QuotaExceeded": Rule(CloudError, hint="raise the quota or free resources"),
    "OperationNotAllowed": Rule(CloudError),
    "InvalidParameter": Rule(CloudError),
    "InvalidRequestContent": Rule(CloudError),
    "BadRequest": Rule(CloudError),
    "Conflict": Rule(CloudError),
    "ResourceNotFound": Rule(CloudError),
    "NotFound": Rule(CloudError),
    "GalleryImageVersionReplicationFailed": Rule(CloudError),
    "ReplicationFailed": Rule(CloudError),
}
"""Every Azure error code imgpub treats specially; anything else falls back to STATUS_RULES."""

STATUS_RULES: dict[int, Rule] = {
    401: _AUTH,
    403: _AUTH,
    408: Rule(CloudError, retryable=True),
    429: Rule(CloudError, retryable=True),
    500: Rule(CloudError, retryable=True),
    502: Rule(CloudError, retryable=True),
    503: Rule(CloudError, retryable=True),
    504: Rule(CloudError, retryable=True),
}
_DEFAULT = Rule(CloudError)
NOT_VISIBLE = "NotVisibleYet"
"""Code of the (retried) error when a resource just created is not readable yet."""


def _one_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "no details")
    line = redact(line)
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def error_code(exc: BaseException) -> str | None:
    """The service's error code (`x-ms-error-code` for storage, `error.code` for ARM), if any."""
    if not isinstance(exc, _sdk().HttpResponseError):
        return None
    code: object = getattr(exc, "error_code", None)
    if not code and exc.error is not None:
        code = exc.error.code
    headers = getattr(exc.response, "headers", None)
    if not code and headers is not None:
        code = headers.get("x-ms-error-code")
    if isinstance(code, Enum):
        code = code.value
    return str(code) if code else None


def _rule(exc: HttpResponseError) -> Rule:
    code = error_code(exc)
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    return STATUS_RULES.get(exc.status_code or 0, _DEFAULT)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, 5xx, dropped connections."""
    if isinstance(exc, CloudError):
        return exc.retryable
    sdk = _sdk()
    if isinstance(exc, sdk.ClientAuthenticationError):
        return False
    if isinstance(exc, sdk.HttpResponseError):
        return _rule(exc).retryable
    if isinstance(exc, sdk.ServiceRequestError):
        return "non-TLS" not in str(exc)
    return isinstance(exc, sdk.ServiceResponseError)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the service asked us to wait (Retry-After, in seconds or as an HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        if headers.get(name):
            try:
                return float(headers[name]) / scale
            except ValueError:
                pass
    return retry_after_seconds(headers.get("Retry-After"))


def translate(exc: BaseException, target: str, operation: str, region: str | None = None) -> ImgpubError:
    """The imgpub error for one azure exception."""
    if isinstance(exc, ImgpubError):
        return exc
    sdk = _sdk()
    if isinstance(exc, sdk.ClientAuthenticationError) and exc.response is None:
        return CredentialsError(
            target, f"{operation}: no usable Azure credentials ({_one_line(str(exc))}); {_CREDENTIAL_HINT}"
        )
    if isinstance(exc, sdk.HttpResponseError):
        rule = _rule(exc)
        code = error_code(exc) or (str(exc.status_code) if exc.status_code else None)
        message = _one_line(exc.message or str(exc))
        if code and message.startswith(f"({code}) "):
            message = message[len(code) + 3 :]
        if rule.hint:
            message = f"{message} ({rule.hint})"
        if rule.kind is CredentialsError:
            return CredentialsError(
                target, f"{operation}{f' in {region}' if region else ''} [{code}]: {message}"
            )
        return CloudError(target, operation, message, code=code, region=region, retryable=rule.retryable)
    if isinstance(exc, sdk.ServiceRequestError | sdk.ServiceResponseError):
        return CloudError(
            target, operation, _one_line(str(exc)), code="Network", region=region, retryable=True
        )
    return CloudError(target, operation, _one_line(str(exc)), region=region)


@contextmanager
def azure_errors(target: str, operation: str, region: str | None = None) -> Iterator[None]:
    """Turn any azure-core exception raised inside into a one-line imgpub error (`from` the original)."""
    try:
        yield
    except ImgpubError:
        raise
    except Exception as exc:
        if not isinstance(exc, _sdk().AzureError):
            raise
        raise translate(exc, target, operation, region) from exc


def call(
    fn: Callable[[], T], *, target: str, operation: str, retry: RetryPolicy, region: str | None = None
) -> T:
    """Run one API call with imgpub's retry policy; errors come out translated."""
    with azure_errors(target, operation, region):
        return retry.call(fn, is_transient, retry_after)


def find(
    fn: Callable[[], T], *, target: str, operation: str, retry: RetryPolicy, region: str | None = None
) -> T | None:
    """Like `call`, but a resource that does not exist (404) gives None."""

    def attempt() -> T | None:
        try:
            return fn()
        except _sdk().HttpResponseError as exc:
            if isinstance(exc, _sdk().ResourceNotFoundError) or exc.status_code == 404:
                return None
            raise

    return call(attempt, target=target, operation=operation, retry=retry, region=region)


@dataclass(frozen=True)
class Caller:
    """`call` and `find` bound to one target and retry policy; what one run tells and adopts."""

    target: str
    retry: RetryPolicy
    progress: Progress = field(default_factory=NullProgress, compare=False)
    adopted: list[str] = field(default_factory=list, compare=False)
    """Resources this run found made as it wanted by another run (or an earlier, stopped one)."""

    def __call__(self, operation: str, fn: Callable[[], T], region: str | None = None) -> T:
        return call(fn, target=self.target, operation=operation, retry=self.retry, region=region)

    def find(self, operation: str, fn: Callable[[], T], region: str | None = None) -> T | None:
        return find(fn, target=self.target, operation=operation, retry=self.retry, region=region)

    def visible(self, operation: str, fn: Callable[[], T], region: str | None = None) -> T:
        """Read what was just created, waiting (with the retry policy) while ARM does not show it yet:
        Resource Manager is eventually consistent, a read right after a create may answer 404."""

        def attempt() -> T:
            found = find(fn, target=self.target, operation=operation, retry=self.retry, region=region)
            if found is None:
                raise CloudError(
                    self.target,
                    operation,
                    "not visible yet after it was created (Azure Resource Manager is eventually consistent)",
                    code=NOT_VISIBLE,
                    region=region,
                    retryable=True,
                )
            return found

        return self.retry.call(attempt, is_transient, retry_after)
