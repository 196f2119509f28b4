"""Long-running operations as ARM runs them: polled a few times, then Succeeded, Failed or Canceled.

A PUT answers with `Azure-AsyncOperation` (polled until a terminal status; the client then GETs the
resource); POST and DELETE answer 202 with `Location` (polled while it answers 202). An operation
that fails leaves its resource in provisioningState Failed, and its status document carries ARM's
error body: {"status": "Failed", "error": {"code", "message", "details": []}}.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Failure", "Operation", "Operations"]


@dataclass
class Failure:
    """Make the next `times` operations of `kind` on paths matching `pattern` fail."""

    pattern: re.Pattern[str]
    code: str
    message: str
    kind: str = "put"
    times: int = 1_000_000


@dataclass
class Operation:
    id: str
    path: str | None
    polls: int
    kind: str  # "put" | "delete" | "grant" | "revoke"
    output: dict[str, Any] | None = None
    done: bool = False
    error: dict[str, Any] | None = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    ended: str | None = None

    def status_document(self) -> dict[str, Any]:
        """The Azure-AsyncOperation document, as ARM gives it."""
        doc: dict[str, Any] = {"id": self.id, "name": self.id, "startTime": self.started}
        if not self.done:
            return {**doc, "status": "InProgress"}
        doc["endTime"] = self.ended
        if self.error is not None:
            return {**doc, "status": "Failed", "error": self.error}
        return {**doc, "status": "Succeeded"}


class Operations:
    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.all: dict[str, Operation] = {}
        self.failures: list[Failure] = []

    def start(self, path: str | None, kind: str, output: dict[str, Any] | None = None) -> Operation:
        op = Operation(uuid.uuid4().hex, path, self.polls, kind, output)
        self.all[op.id] = op
        return op

    def failure_for(self, op: Operation) -> Failure | None:
        for failure in self.failures:
            if failure.times > 0 and failure.kind == op.kind and failure.pattern.search(op.path or ""):
                failure.times -= 1
                return failure
        return None

    def poll(self, op_id: str) -> tuple[Operation, bool]:
        """The operation after one more poll, and whether this poll finished it."""
        op = self.all[op_id]
        if op.done:
            return op, False
        op.polls -= 1
        if op.polls > 0:
            return op, False
        op.done = True
        op.ended = datetime.now(UTC).isoformat()
        failure = self.failure_for(op)
        if failure is not None:
            op.error = {"code": failure.code, "message": failure.message, "details": []}
        return op, True
