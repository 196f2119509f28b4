"""An HTTP proxy in front of gcp-storage-emulator that holds the provider to Cloud Storage's contract
and fails chosen requests, for upload tests.

Every request is checked first (gcp/gcs_contract.py: the storage v1 discovery document); a bad one gets
the 400 real GCS would give and never reaches the emulator (`rejected` lists them). Buckets in
`cmek_buckets` (name -> the bucket's location) act as buckets under a CMEK-only policy: an object
written without `kmsKeyName` is refused with 412 conditionNotMet "Request violates constraint
'constraints/gcp.restrictNonCmekServices'" (what GCS answers under that organization policy), and
a key from another location than the bucket's with 400 (GCS needs the key in the bucket's location).
`object_keys` records the kmsKeyName each created object was written with.

A rule hits the next `times` requests whose method and path match: "refuse" answers `status`
(503 unless set, with `reason` and a Retry-After header when given) without forwarding;
"lose-reply" forwards (the emulator stores the bytes) and answers 503 anyway, as when a connection
drops after the server committed.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
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
    action: Literal["refuse", "lose-reply"]
    times: int = 1
    skip: int = 0
    """Let this many matching requests through first."""
    status: int = 503
    reason: str = "backendError"
    retry_after: str | None = None


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    cmek_buckets: dict[str, str] = field(default_factory=dict)
    object_keys: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def _rule(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
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
        self.seen.append((handler.command, handler.path, handler.headers.get("Content-Range", "")))
        try:
            call = self._check(handler.command, handler.path, body)
        except ApiError as exc:
            self.rejected.append(f"{handler.command} {handler.path}: {exc.code} {exc.reason}: {exc.message}")
            self._answer(handler, _error(exc.code, exc.reason, exc.message))
            return
        rule = self._rule(handler.command, handler.path)
        answer: Answer | None = None
        if rule is None or rule.action == "lose-reply":
            answer = self._forward(handler, body)
            if call.creates_object and answer[0] < 400:
                self.object_keys[(call.args["bucket"], call.object_name)] = call.query.get("kmsKeyName")
        if rule is not None:
            status = 503 if rule.action == "lose-reply" else rule.status
            answer = _error(status, rule.reason, "injected by fault_proxy", rule.retry_after)
        assert answer is not None
        self._answer(handler, answer)

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

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
        target = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = urllib.parse.urlsplit(self.url).netloc  # the emulator builds URLs from it
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, kept, payload
        finally:
            conn.close()


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
