"""A forwarding HTTP(S) proxy that breaks chosen requests: put it between an SDK and any stand-in.

    proxy = ChaosProxy("http://127.0.0.1:5000").start()      # point the SDK at proxy.url
    proxy.add(Fault("status", match="POST /snapshots", status=503, body="empty", times=2))
    proxy.randomly(rate=0.2, seed=7, kinds=("status", "reset", "lose-reply"))

Fault kinds, as proxies, load balancers and networks break real calls:
* "status": answer `status` with `body` ("empty", "html", or bytes) and `headers`, never forwarding;
* "reset": close the connection without an answer (an RST, as a dropped connection);
* "slow": forward after `delay` seconds;
* "lose-reply": forward (the stand-in acts), then answer `status`/`body` instead of its reply, or
  reset the connection when `status` is 0: the server did the work, the client never heard.

`match` is a substring of "METHOD /path?query" ("" matches every request); `skip` lets that many
matching requests through first; `times` is how many it breaks. `log` records every request as
(method, path, status answered, fault kind or None). With `tls` (a trustme LeafCert) the proxy
speaks HTTPS; an https upstream is reached without verifying its (test) certificate.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["status", "reset", "slow", "lose-reply"]
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
HTML = b"<html><head><title>503 Service Unavailable</title></head><body>upstream unavailable</body></html>"


@dataclass
class Fault:
    kind: Kind
    match: str = ""
    status: int = 503
    body: Literal["empty", "html"] | bytes = "empty"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    skip: int = 0

    def payload(self) -> tuple[bytes, str | None]:
        if self.body == "empty":
            return b"", None
        if self.body == "html":
            return HTML, "text/html"
        return bytes(self.body), None


@dataclass
class _Random:
    rate: float
    rng: random.Random
    kinds: tuple[Kind, ...]
    match: str


class ChaosProxy:
    def __init__(self, upstream: str, *, tls: Any | None = None) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.tls = tls
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int, Kind | None]] = []
        self._random: _Random | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------------
    def start(self) -> ChaosProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out apart: no 40 ms delayed-ACK stalls

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        server = _QuietServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.configure_cert(context)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="chaos-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def randomly(
        self,
        rate: float,
        seed: int,
        kinds: Iterable[Kind] = ("status", "reset", "lose-reply"),
        match: str = "",
    ) -> None:
        """Break a `rate` share of the matching requests, each with a kind drawn from `kinds`."""
        with self._lock:
            self._random = _Random(rate, random.Random(seed), tuple(kinds), match)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()
            self._random = None

    def broken(self) -> list[tuple[str, str, int, Kind | None]]:
        """The requests a fault hit."""
        with self._lock:
            return [entry for entry in self.log if entry[3] is not None]

    # -- one request --------------------------------------------------------------------------
    def _pick(self, request_line: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times <= 0 or fault.match not in request_line:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                return fault
            chance = self._random
            if chance is not None and chance.match in request_line and chance.rng.random() < chance.rate:
                kind = chance.rng.choice(chance.kinds)
                status = chance.rng.choice([429, 500, 502, 503, 504]) if kind != "slow" else 0
                body = chance.rng.choice(["empty", "html"]) if kind == "status" else "empty"
                return Fault(kind, status=status, body=body, delay=chance.rng.uniform(0.05, 0.5))  # type: ignore[arg-type]
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        request_line = f"{handler.command} {handler.path}"
        fault = self._pick(request_line)
        kind = fault.kind if fault is not None else None
        if fault is not None and fault.kind == "status":
            self._record(handler, fault.status, kind)
            self._answer_fault(handler, fault)
            return
        if fault is not None and fault.kind == "reset":
            self._record(handler, 0, kind)
            _reset(handler)
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        try:
            status, headers, payload = self._forward(handler, body)
        except OSError:
            self._record(handler, 0, kind)
            _reset(handler)
            return
        if fault is not None and fault.kind == "lose-reply":
            self._record(handler, fault.status, kind)
            if fault.status == 0:
                _reset(handler)
            else:
                self._answer_fault(handler, fault)
            return
        self._record(handler, status, kind)
        _answer(handler, status, headers, payload)

    def _record(self, handler: BaseHTTPRequestHandler, status: int, kind: Kind | None) -> None:
        with self._lock:
            self.log.append((handler.command, handler.path, status, kind))

    def _answer_fault(self, handler: BaseHTTPRequestHandler, fault: Fault) -> None:
        payload, content_type = fault.payload()
        headers = [(k, v) for k, v in fault.headers.items()]
        if content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", content_type))
        _answer(handler, fault.status, headers, payload)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.upstream.hostname or "127.0.0.1", self.upstream.port
        conn: http.client.HTTPConnection
        if self.upstream.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=120, context=ssl._create_unverified_context()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=120)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [
                (k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}
            ]
            return response.status, kept, payload
        finally:
            conn.close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the proxy reset on purpose (or the client dropped) is not news."""


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _answer(
    handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes
) -> None:
    handler.send_response(status)
    for key, value in headers:
        if key.lower() != "content-length":
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Drop the connection with an RST: SO_LINGER with a zero timeout, then close."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        handler.connection.close()
