"""The failure modes of EC2 and EBS that moto never shows, on demand (used by moto_patches.py).

* outcomes: the next AMI made by RegisterImage/CopyImage ends `failed` (with a StateReason), or the
  next snapshot completed by CompleteSnapshot ends `error` (with a StateMessage), as when AWS fails
  an operation after accepting it;
* set_state: put an existing AMI or snapshot into such a state;
* visibility: a new AMI stays unknown to the next N DescribeImages calls naming it
  (InvalidAMIID.NotFound), EC2's eventual consistency right after a create.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.ec2.models import ec2_backends

ACCOUNT = "123456789012"

_lock = threading.Lock()
_outcomes: list[dict[str, Any]] = []
_hidden: dict[str, int] = {}
visibility_delay = 0
"""DescribeImages calls that do not see a new AMI yet (set through the test API)."""


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


def reset() -> None:
    global visibility_delay
    with _lock:
        _outcomes.clear()
        _hidden.clear()
        visibility_delay = 0
