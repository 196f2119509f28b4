"""Everything the fake GCE remembers, and the failures a test has asked it to inject."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass
class Fault:
    """The next `times` requests matching method and path substring answer `status` with `reason`."""

    status: int
    times: int
    method: str | None = None
    path: str | None = None
    reason: str | None = None
    message: str = "injected failure"
    retry_after: str | None = None
    lose_reply: bool = False
    """Do the request, then answer the error anyway (a reply lost after GCE acted on it)."""


@dataclass
class RequestId:
    """An operation-returning call's requestId: GCE answers a reuse with this operation while retained."""

    project: str
    operation: str
    at: datetime


@dataclass(frozen=True)
class Request:
    """One request as the fake received it: the compute v1 method it names (`images.insert`,
    `globalOperations.wait`...; None when no method has that verb and path), with its query and JSON
    body. What tests/gcp/test_permissions.py maps to IAM permissions."""

    method: str | None
    verb: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class State:
    images: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pending: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    request_ids: dict[str, RequestId] = field(default_factory=dict)
    request_id_retention: timedelta = timedelta(hours=1)
    faults: list[Fault] = field(default_factory=list)
    operation_errors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(operationType, error) for the next operation of that type."""
    lag_after_insert: int = 0
    """Reads (get, or a list that would include it) for which a new image stays invisible once READY."""
    invisible: dict[tuple[str, str], int] = field(default_factory=dict)
    list_page_size: int = 500
    """At most this many images per images.list page, whatever maxResults asks (GCE may send fewer)."""
    log: list[tuple[str, str]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    """Every request, failed ones included, with the method it names (recorded before any fault)."""
    crashes: list[str] = field(default_factory=list)
