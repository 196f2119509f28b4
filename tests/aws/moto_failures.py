"""The failure modes of EC2 and EBS that moto never shows, on demand (used by moto_patches.py).

* outcomes: the next AMI made by RegisterImage/CopyImage ends `failed` (with a StateReason), or the
  next snapshot completed by CompleteSnapshot ends `error` (with a StateMessage), as when AWS fails
  an operation after accepting it;
* set_state: put an existing AMI or snapshot into such a state;
* visibility: a new AMI stays unknown to the next N DescribeImages calls naming it
  (InvalidAMIID.NotFound), EC2's eventual consistency right after a create;
* in-use lag: a deregistered AMI's snapshots answer InvalidSnapshot.InUse to the next N
  DeleteSnapshot calls, as EC2 may for a while after DeregisterImage;
* backdate: an AMI made to look older, or deprecated since a past time (tests of ages and policies).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from moto.ec2.models import ec2_backends

ACCOUNT = "123456789012"

_lock = threading.Lock()
_outcomes: list[dict[str, Any]] = []
_hidden: dict[str, int] = {}
visibility_delay = 0
"""DescribeImages calls that do not see a new AMI yet (set through the test API)."""
_lagging: dict[str, int] = {}
in_use_lag = 0
"""DeleteSnapshot calls that still find a snapshot in use after its AMI was deregistered (as EC2 may
for a while); set through the test API."""


def add_outcomes(rules: list[dict[str, Any]]) -> None:
    with _lock:
        _outcomes.extend(rules)


def take_outcome(action: str, region: str) -> dict[str, Any] | None:
    """The outcome rule that applies to this action now (and count it), or None."""
    with _lock:
        for rule in _outcomes:
            if rule["action"] == action and rule.get("region") in (None, region) and rule.get("count", 1) > 0:
                rule["count"] = rule.get("count", 1) - 1
                return rule
    return None


def fail_image(ami: Any, state: str, message: str) -> None:
    ami.state = state
    ami.state_reason = {"Code": "Server.InternalError", "Message": message}


def fail_snapshot(snap: Any, state: str, message: str) -> None:
    snap.status = state
    snap.state_message = message


def set_state(region: str, resource_id: str, state: str, message: str) -> None:
    backend = ec2_backends[ACCOUNT][region]
    if resource_id.startswith("ami-"):
        fail_image(backend.amis[resource_id], state, message)
    else:
        fail_snapshot(backend.snapshots[resource_id], state, message)


def made(ami_id: str) -> None:
    """A new AMI: hide it from the next `visibility_delay` DescribeImages calls naming it."""
    if visibility_delay:
        with _lock:
            _hidden[ami_id] = visibility_delay


def hidden(ami_ids: list[str]) -> list[str]:
    """The ids DescribeImages does not know yet (counting this call)."""
    with _lock:
        out = [i for i in ami_ids if _hidden.get(i, 0) > 0]
        for i in out:
            _hidden[i] -= 1
        return out


def deregistered(snapshot_ids: list[str]) -> None:
    """An AMI was deregistered: EC2 may count its snapshots in use for `in_use_lag` DeleteSnapshots."""
    if in_use_lag:
        with _lock:
            for snap in snapshot_ids:
                _lagging[snap] = in_use_lag


def still_in_use(snapshot_id: str) -> bool:
    """Does EC2 still count this snapshot in use by an AMI deregistered a moment ago (this call counts)?"""
    with _lock:
        if _lagging.get(snapshot_id, 0) <= 0:
            return False
        _lagging[snapshot_id] -= 1
        return True


def backdate(region: str, ami_id: str, created: str | None, deprecated: str | None) -> None:
    """Make an AMI look older (its CreationDate) or deprecated since a past time: what weeks of real
    time would do, which no EC2 call can."""
    ami = ec2_backends[ACCOUNT][region].amis[ami_id]
    if created:
        when = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
        ami.creation_date = when.replace(tzinfo=None)  # moto keeps naive UTC times
    if deprecated:
        when = datetime.fromisoformat(deprecated.replace("Z", "+00:00")).astimezone(UTC)
        ami.deprecation_time = when.strftime("%Y-%m-%dT%H:%M:00.000Z")


def reset() -> None:
    global visibility_delay, in_use_lag
    with _lock:
        _outcomes.clear()
        _hidden.clear()
        _lagging.clear()
        visibility_delay = 0
        in_use_lag = 0
