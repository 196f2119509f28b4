"""Failure modes a real subscription shows, reproduced by the fake ARM: eventual consistency (a
resource not yet readable right after its create finished) and throttling (429 with Retry-After,
which the provider honours)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tenacity

from imgpub.retry import RetryPolicy


@dataclass(frozen=True)
class RecordingRetry(RetryPolicy):
    """The real retry logic; its waits are recorded instead of slept (the tests stay fast)."""

    sleeps: list[float] = field(default_factory=list, compare=False)

    def retrying(self, is_transient: Any, retry_after: Any = None) -> tenacity.Retrying:
        return super().retrying(is_transient, retry_after).copy(sleep=self.sleeps.append)


def test_a_resource_not_yet_visible_after_its_creation_is_waited_for(stack, disk, info):
    stack.arm.lag = 2  # each new resource answers 404 to the next two reads after its create finished
    settings = stack.settings(gallery={"name": "g1"})
    image = info()
    ctx = stack.context(settings, image)

    published = stack.provider().publish(image, settings, disk, ctx)

    assert [a.kind for a in published.artifacts] == ["image", "gallery-image-version"]
    assert (
        stack.arm.get("galleries/g1/images/golden/versions/1.2.3")["properties"]["provisioningState"]
        == "Succeeded"
    )
    not_found = [r for r in stack.arm.refusals if r[2] in ("ResourceNotFound", "ParentResourceNotFound")]
    assert not_found, "the lag was felt"
    assert stack.provider().plan(image, settings, stack.context(settings, image)).up_to_date


def test_throttling_is_retried_after_the_time_azure_asks(stack, disk, info):
    stack.arm.throttle("PUT", r"/images/golden", retry_after=3)
    stack.arm.throttle("GET", r"/galleries/g1$", retry_after=2, times=2)
    settings = stack.settings(gallery={"name": "g1"})
    image = info()
    retry = RecordingRetry(attempts=5, budget_seconds=60, initial_wait=0.01, max_wait=10)
    ctx = stack.context(settings, image)
    ctx.retry = retry

    stack.provider().publish(image, settings, disk, ctx)

    assert retry.sleeps == [2.0, 2.0, 3.0]
    assert stack.arm.get("images/golden-1.2.3")["properties"]["provisioningState"] == "Succeeded"
    assert stack.arm.count("PUT", r"/images/golden-1\.2\.3$") == 2


def test_a_throttling_answer_carries_arms_rate_limit_headers(arm):
    arm.throttle("GET", r"/images/x", retry_after=7)
    status, headers, body = arm.handle(
        "GET",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x?api-version=2026-04-01",
        {"authorization": "Bearer t"},
        b"",
    )
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert headers == {"Retry-After": "7", "x-ms-ratelimit-remaining-subscription-reads": "0"}
