"""An HTTP proxy in front of the GCS emulator that fails chosen requests, for upload retry tests.

A rule hits the next `times` requests whose method and path match: "refuse" answers 503 without
forwarding; "lose-reply" forwards (the emulator stores the bytes) and answers 503 anyway, as when
a connection drops after the server committed.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    method: str
    path: str
    action: Literal["refuse", "lose-reply"]
    times: int = 1
    skip: int = 0
    """Let this many matching requests through first."""


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)
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
        rule = self._rule(handler.command, handler.path)
        self.seen.append((handler.command, handler.path, handler.headers.get("Content-Range", "")))
        if rule is None or rule.action == "lose-reply":
            status, headers, payload = self._forward(handler, body)
        if rule is not None:
            status, headers, payload = (
                503,
                [("Content-Type", "application/json")],
                (b'{"error": {"code": 503, "message": "injected by fault_proxy", "errors": []}}'),
            )
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
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
