"""The one retry policy: exponential backoff with full jitter, an attempt cap and a time budget.

Providers supply the classifier (which errors are transient: throttling, 5xx, timeouts); everything
else fails at once.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import tenacity

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    budget_seconds: float = 600.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    """How a wait is waited (tests record the waits instead)."""

    def retrying(
        self,
        is_transient: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None] | None = None,
    ) -> tenacity.Retrying:
        """A tenacity.Retrying that retries only `is_transient` errors, honouring `retry_after`."""
        jitter = tenacity.wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = retry_after(exc) if (retry_after and exc is not None) else None
            return min(hinted, self.max_wait) if hinted is not None else jitter(state)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(self.budget_seconds),
            wait=wait,
            sleep=self.sleep,
            reraise=True,
        )

    def call(
        self,
        fn: Callable[[], T],
        is_transient: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None] | None = None,
    ) -> T:
        return self.retrying(is_transient, retry_after)(fn)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header's wait: delay-seconds or an HTTP date (RFC 9110), or None when absent
    or unreadable (the policy's own back-off applies then)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


FAST = RetryPolicy(attempts=5, budget_seconds=30.0, initial_wait=0.01, max_wait=0.05)
"""For tests: the same logic with millisecond waits."""
