"""An HTTP proxy in front of gcp-storage-emulator that holds the provider to Cloud Storage's contract
and fails chosen requests, for upload tests.

Every request is checked first (gcp/gcs_contract.py: the storage v1 discovery document); a bad one gets
the 400 real GCS would give and never reaches the emulator (`rejected` lists them). Buckets in
`cmek_buckets` (name -> the bucket's location) act as buckets under a CMEK-only policy: an object
written without `kmsKeyName` is refused with 412 conditionNotMet "Request violates constraint
'constraints/gcp.restrictNonCmekServices'" (what GCS answers under that organization policy), and
a key from another location than the bucket's with 400 (GCS needs the key in the bucket's location).
`object_keys` records the kmsKeyName each created object was written with.

What the emulator does not enforce and Cloud Storage does, the proxy does:
* preconditions: `ifGenerationMatch` on a resumable upload is checked when the session starts and when
  it finishes the object (a PUT whose Content-Range completes the declared total), and on
  objects.delete: 412 conditionNotMet when the object's generation differs (0: it must not exist);
* a resumable session's total, once a PUT declared it, cannot change: another total is a 400.
`forget(upload_id)` makes the stand-in lose a session (every later request on it answers 404 or 410),
as GCS does when a session expired.

A rule hits the next `times` requests whose method and path match: "refuse" answers `status`
(503 unless set, with `reason` and a Retry-After header when given) without forwarding;
"lose-reply" forwards (the emulator stores the bytes) and answers 503 anyway, as when a connection
drops after the server committed; "partial" forwards only the first `keep` bytes of a PUT's body (as
if the connection dropped mid-body after GCS stored them) and answers 503. `on_request(method, path)`
is called before each request is handled (a test can stop the client there). `calls` records every
request with the storage v1 method it makes (`objects.insert` for a resumable session's start and
its PUTs; None for a request the contract refused), for the permissions test; `forbidden` (method id
-> permission) answers those methods 403 as Cloud Storage answers a caller without the permission.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from fakes.gce.contract import ApiError
from gcp.gcs_contract import Call, check, key_location

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
Answer = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class Rule:
    method: str
    path: str
    action: Literal["refuse", "lose-reply", "partial"]
    times: int = 1
    skip: int = 0
    """Let this many matching requests through first."""
    status: int = 503
    reason: str = "backendError"
    retry_after: str | None = None
    keep: int = 0
    """"partial": how many bytes of the body reach the emulator."""
    finishing: bool = False
    """Match only PUTs whose Content-Range declares the total (the one that finishes the object)."""


RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class Session:
    """What the proxy knows of one resumable session: its object, precondition and declared total."""

    bucket: str
    name: str
    if_generation_match: int | None
    total: int | None = None


@dataclass(frozen=True)
class Recorded:
    """One request through the proxy: the storage v1 method it makes (None: refused by the contract)."""

    method_id: str | None
    verb: str
    path: str
    query: dict[str, str]


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    cmek_buckets: dict[str, str] = field(default_factory=dict)
    object_keys: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    calls: list[Recorded] = field(default_factory=list)
    forbidden: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    forgotten: dict[str, int] = field(default_factory=dict)
    on_request: Callable[[str, str], None] | None = None
    _server: ThreadingHTTPServer | None = None
    _commit: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        self.rules.clear()
        self.seen.clear()
        self.cmek_buckets.clear()
        self.object_keys.clear()
        self.rejected.clear()
        self.calls.clear()
        self.forbidden.clear()
        self.sessions.clear()
        self.forgotten.clear()
        self.on_request = None

    def forget(self, upload_id: str, status: int = 404) -> None:
        """Lose this session, as GCS does once it expired: every request on it answers `status`."""
        self.forgotten[upload_id] = status

    def upload_ids(self) -> list[str]:
        """The sessions started through the proxy, oldest first."""
        return list(self.sessions)

    def put_bytes(self, upload_id: str | None = None) -> int:
        """Bytes the client PUT into resumable sessions (one of them, or all)."""
        total = 0
        for method, path, content_range in self.seen:
            match = RANGE.fullmatch(content_range)
            if method == "PUT" and match and match.group(1) and (upload_id is None or upload_id in path):
                total += int(match.group(2)) - int(match.group(1)) + 1
        return total

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def _rule(self, method: str, path: str, content_range: str) -> Rule | None:
        declares = bool(re.fullmatch(r"bytes \S+/\d+", content_range.strip()))
        for rule in self.rules:
            if rule.finishing and not declares:
                continue
            if rule.times > 0 and rule.method == method and rule.path in path:
                if rule.skip:
                    rule.skip -= 1
                    return None
                rule.times -= 1
                return rule
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        content_range = handler.headers.get("Content-Range", "")
        self.seen.append((handler.command, handler.path, content_range))
        if self.on_request is not None:
            self.on_request(handler.command, handler.path)
        url = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            call = self._check(handler.command, handler.path, body)
        except ApiError as exc:
            self.calls.append(Recorded(None, handler.command, url.path, query))
            self.rejected.append(f"{handler.command} {handler.path}: {exc.code} {exc.reason}: {exc.message}")
            self._answer(handler, _error(exc.code, exc.reason, exc.message))
            return
        self.calls.append(Recorded(call.method_id, handler.command, url.path, query))
        permission = self.forbidden.get(call.method_id)
        if permission is not None:
            message = (
                f"The caller does not have {permission} access to the Google Cloud Storage resource. "
                f"Permission '{permission}' denied on resource (or it may not exist)."
            )
            self._answer(handler, _error(403, "forbidden", message))
            return
        upload_id = call.query.get("upload_id")
        if upload_id is not None and upload_id in self.forgotten:
            status = self.forgotten[upload_id]
            self._answer(
                handler, _error(status, "notFound", "No such upload session (fault_proxy forgot it).")
            )
            return
        rule = self._rule(handler.command, handler.path, content_range)
        if rule is not None and rule.action == "refuse":
            self._answer(
                handler, _error(rule.status, rule.reason, "injected by fault_proxy", rule.retry_after)
            )
            return
        headers: dict[str, str] = {}
        if rule is not None and rule.action == "partial":
            body, headers = _cut(body, content_range, rule.keep)
        writes = call.method_id == "objects.delete" or call.creates_object or "upload_id" in call.query
        with self._commit if writes else contextlib.nullcontext():  # check and write as one step
            try:
                self._preconditions(call, headers.get("Content-Range", content_range))
            except ApiError as exc:
                self._answer(handler, _error(exc.code, exc.reason, exc.message))
                return
            answer = self._forward(handler, body, headers)
        self._record(call, answer)
        if rule is not None:
            answer = _error(503, rule.reason, "injected by fault_proxy", rule.retry_after)
        self._answer(handler, answer)

    def _record(self, call: Call, answer: Answer) -> None:
        if answer[0] >= 400:
            return
        if call.creates_object:
            self.object_keys[(call.args["bucket"], call.object_name)] = call.query.get("kmsKeyName")
        location = next((v for k, v in answer[1] if k.lower() == "location"), "")
        upload_id = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("upload_id")
        if call.creates_object and upload_id and call.query.get("uploadType") == "resumable":
            match = call.query.get("ifGenerationMatch")
            self.sessions[upload_id[0]] = Session(
                call.args["bucket"], call.object_name, int(match) if match is not None else None
            )

    def _preconditions(self, call: Call, content_range: str) -> None:
        """ifGenerationMatch (resumable start and finish, delete) and a session's declared total."""
        if call.method_id == "objects.delete" and "ifGenerationMatch" in call.query:
            self._generation_is(
                call.args["bucket"], call.args["object"], int(call.query["ifGenerationMatch"])
            )
            return
        if call.creates_object and "ifGenerationMatch" in call.query:
            self._generation_is(call.args["bucket"], call.object_name, int(call.query["ifGenerationMatch"]))
            return
        session = self.sessions.get(call.query.get("upload_id", ""))
        match = RANGE.fullmatch(content_range.strip())
        if session is None or match is None or match.group(3) == "*":
            return
        total = int(match.group(3))
        if session.total is not None and session.total != total:
            raise ApiError(
                400,
                f"Invalid request. The total object size in Content-Range ({total}) differs from the "
                f"size declared earlier in this upload ({session.total}).",
                "invalid",
            )
        session.total = total
        finishes = match.group(2) is None or int(match.group(2)) + 1 == total
        if finishes and session.if_generation_match is not None:
            self._generation_is(session.bucket, session.name, session.if_generation_match)

    def _generation_is(self, bucket: str, name: str, expected: int) -> None:
        target = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
        try:
            conn.request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        generation = int(json.loads(payload).get("generation", 0)) if response.status == 200 else 0
        if generation != expected:
            raise ApiError(
                412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet"
            )

    def _check(self, verb: str, path: str, body: bytes) -> Call:
        url = urllib.parse.urlsplit(path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        call = check(verb, url.path, query, body)
        location = self.cmek_buckets.get(call.args.get("bucket", ""))
        if call.creates_object and location is not None:
            key = query.get("kmsKeyName")
            if key is None:
                raise ApiError(412, "Request violates constraint 'constraints/gcp.restrictNonCmekServices'")
            if key_location(key).lower() != location.lower():
                raise ApiError(
                    400,
                    f"The Cloud KMS key {key} is in location {key_location(key)}, but bucket "
                    f"{call.args['bucket']} is in {location}; the key must be in the bucket's location.",
                )
        return call

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        status, headers, payload = answer
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes, replace: dict[str, str]) -> Answer:
        target = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update(replace)
        # The emulator builds session URLs from Host: the address the client used (this proxy, or a
        # chaos proxy in front of it), so every request of the session passes the same way.
        headers["Host"] = handler.headers.get("Host") or urllib.parse.urlsplit(self.url).netloc
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, kept, payload
        finally:
            conn.close()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed by a test, or reset by a proxy) is not news; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _cut(body: bytes, content_range: str, keep: int) -> tuple[bytes, dict[str, str]]:
    """The first `keep` bytes of a chunk PUT, with its Content-Range to match (same total)."""
    match = RANGE.fullmatch(content_range.strip())
    assert match is not None and match.group(1) is not None, f"partial needs a chunk PUT: {content_range!r}"
    start, kept = int(match.group(1)), body[:keep]
    return kept, {"Content-Range": f"bytes {start}-{start + len(kept) - 1}/{match.group(3)}"}


def _error(status: int, reason: str, message: str, retry_after: str | None = None) -> Answer:
    """An answer in the JSON error format of the Cloud Storage JSON API."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
    headers = [("Content-Type", "application/json; charset=UTF-8")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    return status, headers, json.dumps(body).encode()
