"""Azurite (Azure Storage emulator) on a port, and a recording, fault-injecting proxy in front of it.

The proxy breaks chosen requests (`fail()`: an error answer; `lose_reply()`: forwarded, so Azurite
acts, then the connection is reset instead of the answer). It is also strict where Azurite is lax
(emulators.md): a Put Page of more than 4 MiB is
refused with 413 RequestBodyTooLarge (Azurite takes 8 MiB), and a Put Page whose Content-MD5 does
not match its body with 400 Md5Mismatch (Azurite does not check). Used by the azure tests, the
end-to-end tests and the sandbox (examples/sandbox).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from fakes.arm.http import QuietServer
from fakes.process import free_port, stop, wait_until_ready

AZURITE_DEFAULT = str(Path(__file__).resolve().parents[2] / ".cache/azurite/node_modules/.bin/azurite-blob")
API_VERSION = "2025-11-05"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    range: str | None
    length: int
    md5: str | None = None


@dataclass
class Rule:
    method: str
    query: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    after: int = 0
    """Let this many matching requests through first."""
    lose: bool = False
    """Forward the request, then reset the connection instead of answering (a lost reply)."""
    gate: threading.Event | None = None
    """Hold the request until this is set, then forward it."""
    message: str | Callable[[str, str], str] = "injected"
    """The error's message, or a function of (path, query) making it (a gateway echoing the URL)."""


MAX_PUT_PAGE = 4 << 20
"""Put Page (update) writes at most 4 MiB per request on Azure Storage."""


def put_page_refusal(method: str, query: str, headers: Any, body: bytes) -> tuple[int, str, str] | None:
    """(status, code, message) when Azure Storage would refuse this Put Page and Azurite would not."""
    if method != "PUT" or "comp=page" not in query or headers.get("x-ms-page-write") != "update":
        return None
    if len(body) > MAX_PUT_PAGE:
        return (
            413,
            "RequestBodyTooLarge",
            "The request body is too large and exceeds the maximum permissible limit.",
        )
    md5 = headers.get("Content-MD5")
    if md5 and base64.b64decode(md5) != hashlib.md5(body).digest():
        return (
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated "
            "by the server.",
        )
    return None


@dataclass
class StorageProxy:
    upstream: str
    requests: list[Recorded] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)
    """(path, error code) of the requests the proxy refused as Azure Storage would."""
    lost: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, query) of the requests whose reply was lost after Azurite acted."""
    port: int = 0
    """Where the proxy listens (0: a free port)."""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = QuietServer(("127.0.0.1", self.port), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(
        self,
        method: str,
        query: str,
        status: int,
        *,
        times: int = 1,
        after: int = 0,
        retry_after: int | None = None,
        code: str = "ServerBusy",
        message: str | Callable[[str, str], str] = "injected",
    ) -> None:
        headers = {"x-ms-error-code": code}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.rules.append(Rule(method, re.compile(query), status, times, headers, after, message=message))

    def lose_reply(self, method: str, query: str, *, times: int = 1, after: int = 0) -> None:
        """Forward the next `times` matching requests (after `after`), then reset the connection:
        Azurite acted, the client never hears it. `query` is a regex on the query string."""
        self.rules.append(Rule(method, re.compile(query), 0, times, {}, after, lose=True))

    def hold(self, method: str, query: str, gate: threading.Event, *, times: int = 1, after: int = 0) -> None:
        """Hold the next `times` matching requests (after `after`) until `gate` is set (a run paused
        at that point, while another goes on)."""
        self.rules.append(Rule(method, re.compile(query), 0, times, {}, after, gate=gate))

    def pages(self) -> list[Recorded]:
        """Put Page requests that carried data."""
        return [r for r in self.requests if r.method == "PUT" and "comp=page" in r.query]

    def decide(self, method: str, query: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.method == method and rule.query.search(query) and rule.times > 0:
                    if rule.after > 0:
                        rule.after -= 1
                        return None
                    rule.times -= 1
                    return rule
        return None


def _handler(proxy: StorageProxy) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms delayed-ACK stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            rule = proxy.decide(self.command, parts.query)
            if rule is not None and rule.gate is not None:
                rule.gate.wait(60)
                rule = None
            if rule is not None and not rule.lose:
                message = rule.message(parts.path, parts.query) if callable(rule.message) else rule.message
                self._error(rule.status, rule.headers, message)
                return
            refusal = put_page_refusal(self.command, parts.query, self.headers, body)
            if refusal is not None:
                status, code, message = refusal
                with proxy.lock:
                    proxy.refusals.append((parts.path, code))
                self._error(status, {"x-ms-error-code": code}, message)
                return
            with proxy.lock:
                proxy.requests.append(
                    Recorded(
                        self.command,
                        parts.path,
                        parts.query,
                        self.headers.get("x-ms-range") or self.headers.get("Range"),
                        length,
                        self.headers.get("Content-MD5"),
                    )
                )
            conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
            headers: dict[str, Any] = {k: v for k, v in self.headers.items()}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            if rule is not None and rule.lose:
                with proxy.lock:
                    proxy.lost.append((self.command, parts.path, parts.query))
                self._reset()
                return
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            head_length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", head_length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _reset(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                self.connection.close()

        def _error(self, status: int, headers: dict[str, str], message: str) -> None:
            payload = (
                f"<?xml version='1.0'?><Error><Code>{headers['x-ms-error-code']}</Code>"
                f"<Message>{escape(message)}</Message></Error>".encode()
            )
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={blob_endpoint}/{ACCOUNT};"
    )


@contextmanager
def running_azurite(memory_mb: int, *extra: str, port: int = 0) -> Iterator[int]:
    """Azurite's blob service in memory on `port` (0: a free one); node directly, so the pid is Azurite's."""
    binary = os.environ.get("IMGPUB_AZURITE", AZURITE_DEFAULT)
    port = port or free_port()
    args = ["--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--extentMemoryLimit", str(memory_mb), "--disableTelemetry", "--silent", *extra]  # fmt: skip
    proc = subprocess.Popen(["node", binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(
            proc,
            lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close(),
            timeout=30,
            poll=0.05,
            failure=f"Azurite did not start ({binary} {' '.join(args)})",
        )
        yield port
    finally:
        stop(proc)
