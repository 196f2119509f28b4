"""The one error boundary: each Google/HTTP failure family becomes an imgpub error; transient ones retry."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from imgpub.errors import CloudError, CredentialsError
from imgpub.retry import FAST
from imgpub_gcp.errors import call, gcp_errors, handled, is_transient

CASES: list[tuple[BaseException, type[Exception], str, bool]] = [
    (
        auth_exc.DefaultCredentialsError("nothing found"),
        CredentialsError,
        "no usable Google credentials",
        False,
    ),
    (auth_exc.RefreshError("invalid_grant"), CredentialsError, "were refused: invalid_grant", False),
    (gexc.Unauthenticated("bad token"), CredentialsError, "get image x: not authenticated: bad token", False),
    (gexc.NotFound("no image"), CloudError, "get image x failed [404]: no image", False),
    (
        gexc.Forbidden("denied", errors=[{"reason": "forbidden"}]),
        CloudError,
        "[403 forbidden]: denied",
        False,
    ),
    (
        gexc.Forbidden("slow", errors=[{"reason": "rateLimitExceeded"}]),
        CloudError,
        "[403 rateLimitExceeded]",
        True,
    ),
    (gexc.TooManyRequests("slow down"), CloudError, "[429]: slow down", True),
    (gexc.ServiceUnavailable("later"), CloudError, "[503]: later", True),
    (gexc.InternalServerError("oops"), CloudError, "[500]: oops", True),
    (gexc.RetryError("deadline", cause=TimeoutError("t")), CloudError, "gave up retrying: t", True),
    (auth_exc.TransportError("reset"), CloudError, "TransportError: reset", True),
    (requests.ConnectionError("refused"), CloudError, "ConnectionError: refused", True),
    (requests.Timeout("slow"), CloudError, "Timeout: slow", True),
    (ConnectionResetError("peer"), CloudError, "ConnectionResetError: peer", True),
    (TimeoutError("read"), CloudError, "TimeoutError: read", True),
]


@pytest.mark.parametrize(("raised", "mapped", "text", "transient"), CASES)
def test_each_family_maps_to_one_clear_error(
    raised: BaseException, mapped: type[Exception], text: str, transient: bool
) -> None:
    with pytest.raises(mapped) as caught, gcp_errors("gce", "get image x"):
        raise raised
    assert caught.value.__cause__ is raised
    assert str(caught.value).startswith("target gce: ") and text in str(caught.value)
    assert "\n" not in str(caught.value)
    assert is_transient(raised) is transient
    if isinstance(caught.value, CloudError):
        assert caught.value.retryable is transient


def test_every_handled_family_has_a_case() -> None:
    for family in handled():
        assert any(isinstance(raised, family) for raised, *_ in CASES), family


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), gcp_errors("gce", "x"):
        raise KeyError("not ours")


def test_only_transient_errors_are_retried() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise gexc.ServiceUnavailable("later")
        return "ok"

    assert call("gce", "op", FAST, flaky) == "ok" and len(attempts) == 3

    def denied() -> str:
        attempts.append(1)
        raise gexc.Forbidden("no")

    attempts.clear()
    with pytest.raises(CloudError):
        call("gce", "op", FAST, denied)
    assert len(attempts) == 1
