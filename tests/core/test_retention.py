"""The retention policy as a table: versions x ages x keep x protect -> what happens to each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from imgpub.retention import Retention, decide, parse_duration, version_key

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def verdicts(
    policy: dict[str, object], versions: list[tuple[str, float, bool]], current: str = "9.9.9"
) -> dict[str, str]:
    found = decide(
        [(v, days(age), dep) for v, age, dep in versions],
        Retention.model_validate(policy),
        current=current,
        now=NOW,
    )
    return {d.version: d.verdict for d in found}


AGED = [
    ("1.0.0", 400, True),
    ("1.1.0", 200, True),
    ("2.0.0", 100, False),
    ("2.1.0", 40, False),
    ("2.2.0", 10, False),
    ("3.0.0", 1, False),
]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {},
            {
                "1.0.0": "leave",
                "1.1.0": "leave",
                "2.0.0": "leave",
                "2.1.0": "leave",
                "2.2.0": "leave",
                "3.0.0": "leave",
            },
        ),
        (
            {"keep": 2},
            {
                "3.0.0": "keep",
                "2.2.0": "keep",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "leave",
                "1.0.0": "leave",
            },
        ),
        (
            {"keep": 2, "deprecate_after": "30d"},
            {
                "3.0.0": "keep",
                "2.2.0": "keep",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "leave",
                "1.0.0": "leave",
            },
        ),
        (
            {"keep": 1, "deprecate_after": "30d"},
            {
                "3.0.0": "keep",
                "2.2.0": "leave",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "leave",
                "1.0.0": "leave",
            },
        ),
        (
            {"keep": 1, "deprecate_after": "30d", "delete_after": "180d"},
            {
                "3.0.0": "keep",
                "2.2.0": "leave",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "delete",
                "1.0.0": "delete",
            },
        ),
        (
            {"keep": 1, "deprecate_after": "30d", "delete_after": "300d"},
            {
                "3.0.0": "keep",
                "2.2.0": "leave",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "leave",
                "1.0.0": "delete",
            },
        ),
        (
            {"keep": 1, "deprecate_after": "30d", "delete_after": "180d", "protect": ["1.*", "2.1.0"]},
            {
                "3.0.0": "keep",
                "2.2.0": "leave",
                "2.1.0": "protect",
                "2.0.0": "deprecate",
                "1.1.0": "protect",
                "1.0.0": "protect",
            },
        ),
        (
            {"keep": 0, "deprecate_after": "5d"},
            {
                "3.0.0": "leave",
                "2.2.0": "deprecate",
                "2.1.0": "deprecate",
                "2.0.0": "deprecate",
                "1.1.0": "leave",
                "1.0.0": "leave",
            },
        ),
    ],
    ids=[
        "no-policy",
        "keep-only",
        "keep-and-age",
        "keep-1",
        "delete-deprecated",
        "delete-older",
        "protect",
        "keep-0",
    ],
)
def test_policy_table(policy: dict[str, object], expected: dict[str, str]) -> None:
    assert verdicts(policy, AGED) == expected


def test_the_version_being_published_is_never_touched() -> None:
    found = verdicts(
        {"keep": 0, "deprecate_after": "1d", "delete_after": "2d"}, [("1.0.0", 900, True)], current="1.0.0"
    )
    assert found == {"1.0.0": "current"}


def test_never_deleted_in_the_run_that_deprecates_it() -> None:
    assert verdicts({"deprecate_after": "1d", "delete_after": "2d"}, [("1.0.0", 900, False)]) == {
        "1.0.0": "deprecate"
    }
    assert verdicts({"deprecate_after": "1d", "delete_after": "2d"}, [("1.0.0", 900, True)]) == {
        "1.0.0": "delete"
    }


def test_keep_counts_by_version_not_by_date() -> None:
    """A hotfix 1.4.1 made after 2.0.0 is still older as a version."""
    found = verdicts({"keep": 1}, [("2.0.0", 10, False), ("1.4.1", 1, False)])
    assert found == {"2.0.0": "keep", "1.4.1": "deprecate"}


def test_an_unknown_creation_time_never_ages() -> None:
    found = decide(
        [("1.0.0", None, False)], Retention(deprecate_after=parse_duration("1d")), current="x", now=NOW
    )
    assert [(d.verdict, d.reason) for d in found] == [("leave", "its creation time is unknown")]


@pytest.mark.parametrize(
    "ordered",
    [
        [
            "0.9.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "v2.0.0",
        ],
        ["build-2", "build-10", "nightly", "0.0.1"],
        ["2024.01.5", "2024.1.10", "2024.12.1"],
    ],
)
def test_version_order(ordered: list[str]) -> None:
    assert sorted(reversed(ordered), key=version_key) == ordered


@pytest.mark.parametrize(
    ("value", "hours"), [("30d", 720), ("12h", 12), ("2w", 336), ("6m", 4320), ("1y", 8760), (3, 72)]
)
def test_durations(value: object, hours: int) -> None:
    assert Retention.model_validate({"deprecate_after": value}).deprecate_after == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"deprecate_after": "soon"}, "give a duration such as 30d"),
        (
            {"deprecate_after": "30d", "delete_after": "10d"},
            "delete_after must be longer than deprecate_after",
        ),
        ({"keep": -1}, "greater than or equal to 0"),
        ({"kepe": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_policies(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Retention.model_validate(policy)
