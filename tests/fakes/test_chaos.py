"""The chaos proxy breaks exactly what it is told to, and forwards everything else untouched."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from fakes.chaos import HTML, ChaosProxy, Fault


class Upstream:
    """A tiny server that counts what reaches it and echoes the body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.seen.append((self.command, self.path, body))
                payload = b"echo:" + body
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Upstream", "yes")
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[ChaosProxy]:
    with ChaosProxy(upstream.url) as p:
        yield p


def request(url: str, method: str = "PUT", path: str = "/x", body: bytes = b"data", **kw: Any) -> Any:
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=10, **kw)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_forwards_untouched(proxy: ChaosProxy, upstream: Upstream) -> None:
    status, headers, payload = request(proxy.url, path="/a?b=1")
    assert (status, payload, headers["X-Upstream"]) == (200, b"echo:data", "yes")
    assert upstream.seen == [("PUT", "/a?b=1", b"data")]
    assert proxy.log == [("PUT", "/a?b=1", 200, None)]


def test_status_answers_without_forwarding(proxy: ChaosProxy, upstream: Upstream) -> None:
    proxy.add(Fault("status", match="PUT /x", status=503, body="html", headers={"Retry-After": "2"}, times=2))
    assert request(proxy.url)[0] == 503
    status, headers, payload = request(proxy.url)
    assert (status, payload, headers["Retry-After"]) == (503, HTML, "2")
    assert request(proxy.url)[0] == 200
    assert len(upstream.seen) == 1


def test_match_and_skip(proxy: ChaosProxy, upstream: Upstream) -> None:
    proxy.add(Fault("status", match="GET /only", status=429, skip=1))
    assert request(proxy.url, "PUT", "/only")[0] == 200
    assert request(proxy.url, "GET", "/only", b"")[0] == 200
    assert request(proxy.url, "GET", "/only", b"")[0] == 429
    assert [entry[3] for entry in proxy.log] == [None, None, "status"]


def test_reset_drops_the_connection(proxy: ChaosProxy, upstream: Upstream) -> None:
    proxy.add(Fault("reset"))
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        request(proxy.url)
    assert upstream.seen == []


def test_lose_reply_acts_then_fails(proxy: ChaosProxy, upstream: Upstream) -> None:
    proxy.add(Fault("lose-reply", status=502), Fault("lose-reply", status=0))
    assert request(proxy.url)[0] == 502
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        request(proxy.url)
    assert len(upstream.seen) == 2, "the server acted both times"


def test_slow_forwards_late(proxy: ChaosProxy, upstream: Upstream) -> None:
    proxy.add(Fault("slow", delay=0.3))
    started = time.monotonic()
    assert request(proxy.url)[0] == 200
    assert time.monotonic() - started >= 0.3


def test_random_faults_are_reproducible(upstream: Upstream) -> None:
    outcomes = []
    for _ in range(2):
        with ChaosProxy(upstream.url) as proxy:
            proxy.randomly(rate=0.5, seed=11, kinds=("status",))
            outcomes.append([request(proxy.url)[0] for _ in range(20)])
    assert outcomes[0] == outcomes[1]
    assert 200 in outcomes[0] and set(outcomes[0]) - {200}


def test_tls_in_front(upstream: Upstream) -> None:
    ca = trustme.CA()
    with ChaosProxy(upstream.url, tls=ca.issue_cert("127.0.0.1")) as proxy:
        assert proxy.url.startswith("https://")
        client = ssl.create_default_context()
        ca.configure_trust(client)
        assert request(proxy.url, context=client)[:1] == (200,)
