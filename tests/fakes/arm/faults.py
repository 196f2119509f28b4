"""Failure modes of the fake ARM beyond failed operations and throttling: replies lost after the
server acted, writes refused while an operation runs, and sources that vanish under an operation."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fakes.arm.rules import ArmError

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["BUSY", "IN_PROGRESS", "Losses", "source_problem"]

BUSY = "AnotherOperationInProgress"
"""ARM's code for a write to a resource whose own operation has not finished (409)."""
IN_PROGRESS = ("Creating", "Updating", "Deleting")


@dataclass
class _Loss:
    method: str
    pattern: re.Pattern[str]
    times: int
    skip: int


class Losses:
    """Which replies to lose: matched on method and a path regex, after `skip`, `times` times."""

    def __init__(self) -> None:
        self._rules: list[_Loss] = []
        self._lock = threading.Lock()
        self.lost: list[tuple[str, str]] = []
        """(method, path) of every request whose reply was lost."""

    def add(self, method: str, pattern: str, times: int, skip: int) -> None:
        with self._lock:
            self._rules.append(_Loss(method, re.compile(pattern), times, skip))

    def take(self, method: str, path: str) -> bool:
        """Whether this request's reply is to be lost (counts it)."""
        with self._lock:
            for rule in self._rules:
                if rule.times <= 0 or rule.method != method or not rule.pattern.search(path):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    return False
                rule.times -= 1
                self.lost.append((method, path))
                return True
        return False


def source_problem(arm: FakeArm, res: dict[str, Any]) -> str | None:
    """Why an image or version can no longer be made from its source (deleted meanwhile), or None.
    Azure reads the source while the operation runs: one removed before the end fails it."""
    props = res["properties"]
    storage = props.get("storageProfile") or {}
    os_disk = storage.get("osDisk") or (storage.get("osDiskImage") or {}).get("source") or {}
    uri = os_disk.get("blobUri") or os_disk.get("uri")
    disk_id = (os_disk.get("managedDisk") or {}).get("id") or os_disk.get("id")
    image_id = (storage.get("source") or {}).get("id")
    try:
        if uri:
            arm.rules.vhd_blob(uri)
        for source in (disk_id, image_id):
            if source and arm.get(source.split("/providers/Microsoft.Compute/", 1)[1]) is None:
                return f"The source '{source}' was deleted while the operation ran."
    except ArmError as exc:
        return f"{exc.message} (read while the operation ran)"
    return None
