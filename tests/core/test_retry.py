"""The one retry policy: transient errors retried with back-off, Retry-After honoured, waits injectable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from imgpub.retry import RetryPolicy, retry_after_seconds


class Throttled(Exception):
    def __init__(self, after: str | None) -> None:
        self.after = after


def test_transient_errors_are_retried_and_retry_after_is_the_wait() -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, initial_wait=20.0, max_wait=60.0, sleep=waits.append)
    calls = iter([Throttled("2"), Throttled("7"), None])

    def flaky() -> str:
        exc = next(calls)
        if exc is not None:
            raise exc
        return "done"

    hint = lambda exc: retry_after_seconds(exc.after) if isinstance(exc, Throttled) else None  # noqa: E731
    assert policy.call(flaky, lambda exc: isinstance(exc, Throttled), hint) == "done"
    assert waits == [2.0, 7.0]


def test_a_non_transient_error_is_raised_at_once() -> None:
    waits: list[float] = []
    policy = RetryPolicy(sleep=waits.append)
    with pytest.raises(KeyError):
        policy.call(lambda: {}["x"], lambda exc: False)
    assert waits == []


def test_attempts_are_capped() -> None:
    waits: list[float] = []

    def always() -> None:
        raise Throttled(None)

    with pytest.raises(Throttled):
        RetryPolicy(attempts=4, sleep=waits.append).call(always, lambda exc: True)
    assert len(waits) == 3 and all(0 <= w <= 30.0 for w in waits)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("", None), (None, None), ("soon", None), ("Mon, 99 Foo", None)],
)
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    assert 35 <= (retry_after_seconds(when) or 0) <= 40
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=40), usegmt=True)
    assert retry_after_seconds(past) == 0.0
