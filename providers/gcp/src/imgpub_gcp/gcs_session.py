"""One GCS resumable upload session: start it, ask GCS where it stands, send a chunk.

What a session's answers mean (https://cloud.google.com/storage/docs/performing-resumable-uploads):
an empty PUT with `Content-Range: bytes */<total or *>` answers 308 with `Range: bytes=0-N` while it
is open (N+1 bytes persisted, none without the header), 200/201 once it finished the object, and
404/410 once GCS forgot it (sessions expire after a week). A 400 means GCS refuses the session as we
use it (an upload_id it does not know, a total other than the one declared): it is no more usable
than a forgotten one. Either way `SessionGone` is raised and the upload starts a new session.

A session starts with `ifGenerationMatch` (0: the object must not exist yet; or the generation of
a stale object it replaces), checked again when it finishes the object: when another run wrote the
object first, the finishing PUT answers 412 and `Preempted` is raised (that object is then used,
never overwritten or deleted).

The session URL carries `upload_id`, a bearer credential for the upload: it is journalled (the
state dir is private to the machine) but never put into a message (errors.redact).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imgpub.errors import CloudError
from imgpub.retry import RetryPolicy
from imgpub_gcp.clients import REQUEST_TIMEOUT, GcpClients
from imgpub_gcp.errors import call, raise_for_response

CONTENT_TYPE = "application/gzip"
GONE_STATUS = frozenset({400, 404, 410})
"""Answers on a session that mean it cannot be used any more: start a new one."""
PRECONDITION_FAILED = 412
_RANGE = re.compile(r"bytes=0-(\d+)")


class SessionGone(Exception):
    """The session expired, GCS does not know it, or it holds what this stream cannot continue."""


class Preempted(Exception):
    """The object's precondition failed: another run wrote the object first."""


@dataclass(frozen=True)
class SessionState:
    finished: bool
    persisted: int
    """Bytes GCS holds for an open session."""


def start_session(
    clients: GcpClients,
    target: str,
    retry: RetryPolicy,
    where: tuple[str, str],
    metadata: dict[str, str],
    kms_key: str | None,
    if_generation_match: int,
) -> str:
    """A new session URL; the key goes in the kmsKeyName parameter (storage v1 objects.insert).

    A 412 is a CloudError here: it may be the generation precondition (the caller looks at the object
    to tell) or an organization policy (a CMEK-only bucket answers 412 conditionNotMet too)."""
    bucket, name = where
    blob = clients.storage.bucket(bucket).blob(name, kms_key_name=kms_key)
    blob.metadata = metadata

    def start() -> str:
        url: str = blob.create_resumable_upload_session(
            content_type=CONTENT_TYPE,
            timeout=REQUEST_TIMEOUT,
            retry=None,
            if_generation_match=if_generation_match,
        )
        return url

    return call(target, f"start upload of gs://{bucket}/{name}", retry, start)


@dataclass
class Session:
    clients: GcpClients
    target: str
    retry: RetryPolicy
    url: str

    def query(self, total: int | None = None) -> SessionState:
        """Where the session stands (an empty PUT with `bytes */<total or *>`); SessionGone when it is
        gone or refused."""

        def query() -> SessionState:
            response = self._put(b"", f"bytes */{total if total is not None else '*'}")
            if response.status_code in GONE_STATUS:
                raise SessionGone(f"GCS answered {response.status_code} for the upload session")
            if response.status_code in (200, 201):
                return SessionState(True, 0)
            raise_for_response(response)
            return SessionState(False, _persisted(response.headers.get("Range")))

        return call(self.target, "query upload status", self.retry, query)

    def put(self, start: int, data: bytes, final: bool) -> tuple[int, int]:
        """PUT data at `start`; after a failed attempt, ask GCS where it stands and send only the rest.

        Returns (bytes GCS now holds, bytes sent by all attempts)."""
        first, sent, end = True, 0, start + len(data)

        def attempt() -> int:
            nonlocal first, sent
            at, retried, first = start, not first, False
            if retried:
                try:
                    state = self.query()
                except SessionGone:
                    if not final:
                        raise
                    state = SessionState(True, 0)  # some servers forget a finished session: verify decides
                if state.finished:  # an earlier attempt finished the object; only its reply was lost
                    if final:
                        return end
                    raise CloudError(self.target, "upload", "GCS finished the object before the last chunk")
                at = max(start, state.persisted)
                if at >= end and not final:
                    return at
            body = data[at - start :]
            span = f"{at}-{end - 1}" if body else "*"
            sent += len(body)
            response = self._put(body, f"bytes {span}/{end if final else '*'}")
            return self._answered(response, end, final)

        persisted = call(self.target, "upload chunk", self.retry, attempt)
        return persisted, sent

    def _answered(self, response: Any, end: int, final: bool) -> int:
        status = response.status_code
        if status in GONE_STATUS:
            raise SessionGone(f"GCS answered {status} to a chunk")
        if status == PRECONDITION_FAILED:
            raise Preempted("the object was written by someone else while this upload ran")
        raise_for_response(response)
        if status in (200, 201):
            if not final:
                raise CloudError(self.target, "upload", "GCS finished the object before the last chunk")
            return end
        if final:
            raise CloudError(self.target, "upload", f"GCS did not finish the object (HTTP {status})")
        return _persisted(response.headers.get("Range"))

    def _put(self, body: bytes, content_range: str) -> Any:
        return self.clients.session.put(
            self.url, data=body, headers={"Content-Range": content_range}, timeout=REQUEST_TIMEOUT
        )


def _persisted(header: str | None) -> int:
    if not header:
        return 0
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise ValueError(f"unexpected Range header from GCS: {header!r}")
    return int(match.group(1)) + 1
