"""The fake ARM's HTTP side: ARM's error document, and the request handler (with the rate-limit
headers ARM sends on every answer)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["RATE_LIMIT", "QuietServer", "error", "make_handler"]

RATE_LIMIT = "11999"


class QuietServer(ThreadingHTTPServer):
    """A client that went away (a killed `imgpub`, a reset on purpose) is not news; a fake's own bug is."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


def error(code: str, message: str, target: str | None = None) -> dict[str, Any]:
    """ARM's error document: {"error": {"code", "message", "target"?}}."""
    body: dict[str, Any] = {"code": code, "message": message}
    if target:
        body["target"] = target
    return {"error": body}


def make_handler(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms delayed-ACK stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, doc = arm.handle(self.command, self.path, headers, body)
            if arm.losses.take(self.command, unquote(urlsplit(self.path).path)):
                self._reset()
                return
            payload = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            kind = "reads" if self.command == "GET" else "writes"
            extra.setdefault(f"x-ms-ratelimit-remaining-subscription-{kind}", RATE_LIMIT)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", uuid.uuid4().hex)
            self.end_headers()
            self.wfile.write(payload)

        def _reset(self) -> None:
            """The server acted; the client gets a reset connection instead of the answer."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                self.connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
