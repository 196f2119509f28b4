"""The one boundary where Google SDK and HTTP errors become imgpub errors, and the retry classifier.

Nothing above this module catches a google.api_core, google.auth or requests exception. The SDK
modules are imported on first use, so importing the provider (to validate a manifest) stays cheap.

Every message made here is redacted: a resumable session's URL carries `upload_id`, a bearer
credential for that upload (anyone holding it can write the object), and the SDK and requests put
the URL in their messages. It never reaches an error line, the report or a CI summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from imgpub.errors import CloudError, CredentialsError, TargetError
from imgpub.retry import RetryPolicy, retry_after_seconds

if TYPE_CHECKING:
    import requests
    from google.api_core import exceptions as gexc

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED"}
)
"""403 reasons that mean 'slow down', not 'forbidden' (compute operations quota)."""

UPLOAD_ID = re.compile(r"(upload_id(?:=|%3D))[^&\s'\"<>):;,]+", re.IGNORECASE)
"""An upload_id in a URL (its value URL-encoded: it stops at the next separator)."""
REDACTED = "<redacted>"


def redact(text: str) -> str:
    """`text` with every resumable-session upload_id replaced by <redacted>."""
    return UPLOAD_ID.sub(r"\1" + REDACTED, text)


CREDENTIALS_HINT = (
    "run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
)


def _body_error(exc: gexc.GoogleAPICallError) -> dict[str, Any]:
    """The JSON `error` of the response, when the SDK did not parse it (the storage upload path)."""
    response = getattr(exc, "response", None)
    try:
        error = response.json().get("error") if response is not None else None
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def reasons(exc: gexc.GoogleAPICallError) -> list[str]:
    out: list[str] = []
    for err in exc.errors or _body_error(exc).get("errors") or []:
        if isinstance(err, dict) and err.get("reason"):
            out.append(str(err["reason"]))
    if exc.reason:
        out.append(exc.reason)
    return out


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx, timeouts and dropped connections; everything else fails at once."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        if exc.code in TRANSIENT_STATUS:
            return True
        return exc.code == 403 and any(r in THROTTLE_REASONS for r in reasons(exc))
    if isinstance(exc, auth_exc.TransportError | requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, gexc.RetryError | TimeoutError | ConnectionError)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date), or None."""
    response = getattr(exc, "response", None)
    return retry_after_seconds(
        getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    )


def _code(exc: gexc.GoogleAPICallError) -> str:
    found = reasons(exc)
    return f"{exc.code} {found[0]}" if found else str(exc.code)


def _message(exc: gexc.GoogleAPICallError) -> str:
    if not exc.errors and (message := _body_error(exc).get("message")):
        return " ".join(str(message).split())
    return " ".join(str(exc.message).split()) or type(exc).__name__


def translate(exc: BaseException, target: str, operation: str) -> TargetError | None:
    """The imgpub error for a Google/HTTP failure, or None when `exc` is not one of ours to map."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return CredentialsError(target, redact(f"no usable Google credentials: {exc} ({CREDENTIALS_HINT})"))
    if isinstance(exc, auth_exc.RefreshError):
        return CredentialsError(
            target, redact(f"Google credentials were refused: {exc} ({CREDENTIALS_HINT})")
        )
    if isinstance(exc, gexc.Unauthenticated):
        return CredentialsError(
            target, redact(f"{operation}: not authenticated: {_message(exc)} ({CREDENTIALS_HINT})")
        )
    if isinstance(exc, gexc.GoogleAPICallError):
        return CloudError(
            target, operation, redact(_message(exc)), code=_code(exc), retryable=is_transient(exc)
        )
    if isinstance(exc, gexc.RetryError):
        return CloudError(target, operation, redact(f"gave up retrying: {exc.cause or exc}"), retryable=True)
    if isinstance(exc, auth_exc.TransportError | requests.RequestException | ConnectionError | TimeoutError):
        return CloudError(target, operation, redact(f"{type(exc).__name__}: {exc}"), retryable=True)
    return None


@contextmanager
def gcp_errors(target: str, operation: str) -> Iterator[None]:
    """Map every Google/HTTP failure inside the block to CredentialsError or CloudError (`from exc`)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, target, operation)
        if mapped is None:
            raise
        raise mapped from exc


def call(target: str, operation: str, retry: RetryPolicy, fn: Callable[[], T]) -> T:
    """Run one API call with the shared retry policy, errors mapped at this boundary."""
    with gcp_errors(target, operation):
        return retry.call(fn, is_transient, retry_after)


def raise_for_response(response: requests.Response) -> None:
    """Turn a non-2xx/308 raw HTTP response into the matching google.api_core exception."""
    from google.api_core import exceptions as gexc

    if response.status_code >= 400:
        raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]


def handled() -> tuple[type[BaseException], ...]:
    """Every exception family `translate` maps (a test raises each one through it)."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    families: tuple[Any, ...] = (
        auth_exc.DefaultCredentialsError,
        auth_exc.RefreshError,
        gexc.Unauthenticated,
        gexc.GoogleAPICallError,
        gexc.RetryError,
        auth_exc.TransportError,
        requests.RequestException,
        ConnectionError,
        TimeoutError,
    )
    return families
