"""Failure modes of the fake ARM beyond failed operations and throttling: replies lost after the
server acted, writes refused while an operation runs, and sources that vanish under an operation."""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fakes.arm.rules import ArmError

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["BUSY", "IN_PROGRESS", "Hold", "Holds", "Losses", "Races", "source_problem"]

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


class Races:
    """Make requests of two runs meet: the first `parties` requests matching a rule wait for each
    other, then go on together (the fake then serialises them in arrival order)."""

    def __init__(self) -> None:
        self._rules: list[tuple[str, re.Pattern[str], threading.Barrier, list[int]]] = []
        self._lock = threading.Lock()

    def add(self, method: str, pattern: str, parties: int, timeout: float) -> None:
        with self._lock:
            self._rules.append(
                (method, re.compile(pattern), threading.Barrier(parties, timeout=timeout), [0])
            )

    def meet(self, method: str, path: str) -> None:
        with self._lock:
            for m, pattern, barrier, arrived in self._rules:
                if m == method and pattern.search(path) and arrived[0] < barrier.parties:
                    arrived[0] += 1
                    break
            else:
                return
        with contextlib.suppress(threading.BrokenBarrierError):  # a party that never came: go on
            barrier.wait()


@dataclass
class Hold:
    """One request held before the fake acts on it: `arrived` is set when it comes; then `go()` lets
    it be carried out, or `drop()` lets it go unanswered and undone (its client was killed meanwhile:
    a process that dies before its request reaches Azure)."""

    method: str
    pattern: re.Pattern[str]
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False
    used: bool = False

    def go(self) -> None:
        self.released.set()

    def drop(self) -> None:
        self.dropped = True
        self.released.set()


class Holds:
    """Requests to hold (`FakeArm.hold()`): the first request matching each rule waits there."""

    def __init__(self) -> None:
        self._rules: list[Hold] = []
        self._lock = threading.Lock()

    def add(self, method: str, pattern: str) -> Hold:
        hold = Hold(method, re.compile(pattern))
        with self._lock:
            self._rules.append(hold)
        return hold

    def meet(self, method: str, path: str, timeout: float = 120.0) -> bool:
        """Wait while a rule holds this request; True when it is to be dropped, not carried out."""
        with self._lock:
            hold = next(
                (h for h in self._rules if not h.used and h.method == method and h.pattern.search(path)),
                None,
            )
            if hold is None:
                return False
            hold.used = True
        hold.arrived.set()
        hold.released.wait(timeout)
        return hold.dropped


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
