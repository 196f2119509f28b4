"""One retention policy for every cloud: which published versions stay active, which are deprecated
and which are deleted, decided from the versions themselves, never from a cloud's own clock.

    retention:                 # top level, and per target (a target's own fields win)
      keep: 5                  # the newest versions of this image name that stay active
      deprecate_after: 30d     # older than this (and not among `keep`): deprecated
      delete_after: 180d       # older than this (and not among `keep`): deleted
      protect: ["1.*", "2.4.0"]
      on_publish: true         # `imgpub publish` prunes after a successful publish

"Newer" is by version, not by date: semantic versions (a leading `v` allowed) in semver order,
pre-releases before their release; other strings compare by natural order (numbers as numbers, so
`build-10` follows `build-9`) and come before every semantic version. A version's age is the time
since its oldest artifact on that target was created. The version being published and protected
versions are never touched. Two phases: a version is deleted only once it is deprecated (by an
earlier run, or by hand) and past `delete_after`, never in the run that deprecates it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = ["Decision", "Retention", "decide", "parse_duration", "version_key"]

_DURATION = re.compile(r"^\s*(\d+)\s*([hdwmy]?)\s*$")
_UNIT_HOURS = {"h": 1, "": 24, "d": 24, "w": 24 * 7, "m": 24 * 30, "y": 24 * 365}
_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def parse_duration(value: Any) -> Any:
    """'30d', '12h', '8w', '6m' (30 days), '1y' (365 days), or a bare number of days."""
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(days=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r}: give a duration such as 30d, 12h, 8w, 6m or 1y")
        return timedelta(hours=int(match.group(1)) * _UNIT_HOURS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Retention(BaseModel):
    """Which versions of this image stay, are deprecated, are deleted (see imgpub.retention)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: int | None = Field(default=None, ge=0, description="Newest versions that stay active.")
    deprecate_after: Duration | None = Field(
        default=None, description="Deprecate versions older than this that are not among `keep`."
    )
    delete_after: Duration | None = Field(
        default=None, description="Delete versions older than this that are not among `keep`."
    )
    protect: list[str] = Field(
        default_factory=list, description="Versions (globs such as '1.*') that are never touched."
    )
    on_publish: bool = Field(default=False, description="Prune after every successful publish.")

    @model_validator(mode="after")
    def _delete_after_deprecation(self) -> Retention:
        after, before = self.delete_after, self.deprecate_after
        if after is not None and before is not None and after <= before:
            raise ValueError("delete_after must be longer than deprecate_after (deprecate first)")
        return self

    @property
    def active(self) -> bool:
        """Does this policy ever change anything?"""
        return self.keep is not None or self.deprecate_after is not None or self.delete_after is not None

    def over(self, base: Retention | None) -> Retention:
        """This policy's own fields on top of `base` (the manifest's top-level policy)."""
        if base is None:
            return self
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key: semantic versions in semver order above every other string, which sort naturally."""
    match = _SEMVER.match(version)
    if match is None:
        parts = re.split(r"(\d+)", version)
        return (0, tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts if p))
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple[Any, ...] = (1,)  # a release follows its pre-releases
    else:
        pre_key = (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (1, int(major), int(minor), int(patch), pre_key)


Verdict = Literal["current", "protect", "keep", "deprecate", "delete", "leave"]


@dataclass(frozen=True)
class Decision:
    version: str
    verdict: Verdict
    reason: str
    age: timedelta | None


def decide(
    versions: Iterable[tuple[str, datetime | None, bool]],
    policy: Retention,
    *,
    current: str,
    now: datetime,
) -> list[Decision]:
    """What the policy does to each version, newest first. `versions` holds (version, created,
    deprecated already); `created` None means unknown (then age never counts)."""
    ordered: Sequence[tuple[str, datetime | None, bool]] = sorted(
        versions, key=lambda v: version_key(v[0]), reverse=True
    )
    out: list[Decision] = []
    kept = 0
    for version, created, deprecated in ordered:
        age = now - created if created is not None else None
        pattern = next((p for p in policy.protect if fnmatch.fnmatchcase(version, p)), None)
        if version == current:
            out.append(Decision(version, "current", "the version being published", age))
        elif pattern is not None:
            out.append(Decision(version, "protect", f"protected by {pattern!r}", age))
        elif policy.keep is not None and kept < policy.keep:
            kept += 1
            out.append(Decision(version, "keep", f"among the newest {policy.keep}", age))
        else:
            verdict, reason = _by_age(policy, age, deprecated)
            out.append(Decision(version, verdict, reason, age))
    return out


def _by_age(policy: Retention, age: timedelta | None, deprecated: bool) -> tuple[Verdict, str]:
    """A version outside `keep`: deleted once deprecated and past delete_after (two phases: a
    version is never deleted in the run that deprecates it), deprecated once past deprecate_after
    (at once when only `keep` is set)."""
    if deprecated:
        if policy.delete_after is not None and age is not None and age > policy.delete_after:
            return "delete", f"deprecated and {_days(age)} old (delete_after {_days(policy.delete_after)})"
        wait = "no delete_after" if policy.delete_after is None else "not old enough to delete"
        return "leave", f"deprecated already; {wait}"
    if policy.deprecate_after is None:
        if policy.keep is not None:
            return "deprecate", f"older than the newest {policy.keep}"
        return "leave", "no deprecate_after"
    if age is None:
        return "leave", "its creation time is unknown"
    if age > policy.deprecate_after:
        return "deprecate", f"{_days(age)} old (deprecate_after {_days(policy.deprecate_after)})"
    return "leave", "not old enough to deprecate"


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f}d" if days >= 1 else f"{delta.total_seconds() / 3600:.0f}h"
