"""Azure test stack: Azurite (in memory, a free port), a storage proxy for faults, and the fake ARM."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.storage.blob import BlobServiceClient

from fakes.arm import FakeArm
from imaging import MiB, pattern, sparse_raw
from imgpub.disk import DiskImage, open_image
from imgpub.identity import image_digest
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context, ImageInfo
from imgpub.retry import FAST
from imgpub_azure import AzureProvider, AzureSettings

AZURITE_DEFAULT = str(Path(__file__).resolve().parents[2] / ".cache/azurite/node_modules/.bin/azurite-blob")
API_VERSION = "2025-11-05"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


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


@dataclass
class StorageProxy:
    upstream: str
    requests: list[Recorded] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
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
    ) -> None:
        headers = {"x-ms-error-code": code}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.rules.append(Rule(method, re.compile(query), status, times, headers, after))

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

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            rule = proxy.decide(self.command, parts.query)
            if rule is not None:
                payload = (
                    f"<?xml version='1.0'?><Error><Code>{rule.headers['x-ms-error-code']}</Code>"
                    "<Message>injected</Message></Error>".encode()
                )
                self.send_response(rule.status)
                for k, v in rule.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
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
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            head_length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", head_length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={blob_endpoint}/{ACCOUNT};"
    )


@contextmanager
def running_azurite(memory_mb: int, *extra: str) -> Iterator[int]:
    """Azurite's blob service in memory on a free port (node directly, so the pid is Azurite's)."""
    binary = os.environ.get("IMGPUB_AZURITE", AZURITE_DEFAULT)
    port = _free_port()
    args = ["--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--extentMemoryLimit", str(memory_mb), "--disableTelemetry", "--silent", *extra]  # fmt: skip
    proc = subprocess.Popen(["node", binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Azurite did not start ({binary} {' '.join(args)})") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Base URL of an in-memory Azurite (blob service only)."""
    with running_azurite(1024) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def proxy(azurite: str) -> Iterator[StorageProxy]:
    p = StorageProxy(azurite)
    yield p
    p.close()


@pytest.fixture
def container(azurite: str) -> str:
    name = f"c{uuid.uuid4().hex[:20]}"
    service = BlobServiceClient.from_connection_string(connection_string(azurite), api_version=API_VERSION)
    service.create_container(name)
    return name


@pytest.fixture
def arm(proxy: StorageProxy, tmp_path: Path) -> Iterator[FakeArm]:
    """The fake ARM; its disk SAS URLs point at the storage proxy, so disk uploads are recorded too."""
    with FakeArm(connection_string(proxy.url), tmp_path / "ca", polls=2) as fake:
        yield fake


class StubCredential:
    """A TokenCredential that always has a token (the fake ARM accepts any bearer)."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("fake-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.extend(scopes)
        return AccessTokenInfo("fake-token", int(time.time()) + 3600)


@dataclass
class Stack:
    arm: FakeArm
    proxy: StorageProxy
    container: str
    tmp: Path
    credential: StubCredential

    def settings(self, **overrides: Any) -> AzureSettings:
        values: dict[str, Any] = {
            "name": "az",
            "subscription_id": SUBSCRIPTION,
            "resource_group": "rg",
            "location": "westeurope",
            "storage_account": ACCOUNT,
            "container": self.container,
            "blob_endpoint": f"{self.proxy.url}/{ACCOUNT}",
            "resource_manager_endpoint": self.arm.url,
            "storage_api_version": API_VERSION,
            "concurrency": 4,
        }
        values.update(overrides)
        return AzureSettings.model_validate(values)

    def context(self, settings: AzureSettings, info: ImageInfo, **kw: Any) -> Context:
        digest = image_digest(info.content_digest, settings.identity())
        journal = Journal(self.tmp / "state" / f"{settings.name}.json")
        return Context(settings.name, digest, journal, progress=RecordingProgress(), retry=FAST, **kw)

    def provider(self) -> AzureProvider:
        return AzureProvider(credential=self.credential)


@pytest.fixture
def stack(
    arm: FakeArm, proxy: StorageProxy, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.ca_path))
    monkeypatch.setenv("IMGPUB_AZURE_POLLING_INTERVAL", "0.01")
    return Stack(arm, proxy, container, tmp_path, StubCredential())


SIZE = 24 * MiB + 4096
"""Not a MiB multiple (the VHD rounds it up); above the 20 MiB managed-disk minimum."""
WRITES = [
    (0, pattern(MiB + 512, 1)),
    (5 * MiB, pattern(3 * MiB, 2)),
    (9 * MiB, bytes(MiB)),
    (17 * MiB + 4096, pattern(9 * MiB // 2, 3)),
    (SIZE - 4096, pattern(4096, 4)),
]


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    return sparse_raw(tmp_path / "disk.raw", SIZE, WRITES)


@pytest.fixture
def disk(raw_disk: Path) -> Iterator[DiskImage]:
    with open_image(raw_disk) as img:
        yield img


@pytest.fixture
def info(disk: DiskImage) -> Callable[..., ImageInfo]:
    """ImageInfo for `disk`, with overrides."""

    def make(**kw: Any) -> ImageInfo:
        values: dict[str, Any] = {
            "name": "golden",
            "version": "1.2.3",
            "arch": "x86_64",
            "boot": "uefi",
            "virtual_size": disk.virtual_size,
            "content_digest": "content-1",
        }
        values.update(kw)
        return ImageInfo(**values)

    return make


@dataclass
class OAuthAzurite:
    """Azurite over https with `--oauth basic`: the upload authenticates with a bearer token."""

    url: str
    ca_path: Path


@pytest.fixture(scope="session")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthAzurite]:
    import trustme

    folder = tmp_path_factory.mktemp("azurite-oauth")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    with running_azurite(256, "--oauth", "basic", "--cert", str(cert_path), "--key", str(key_path)) as port:
        yield OAuthAzurite(f"https://127.0.0.1:{port}", ca_path)


def storage_jwt() -> str:
    """An unsigned JWT that Azurite's `--oauth basic` accepts (audience and issuer checked only)."""
    import base64
    import json

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-0000000000aa/",
        "nbf": now - 60,
        "iat": now - 60,
        "exp": now + 3600,
        "oid": "imgpub-test",
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class ScopedCredential(StubCredential):
    """Gives a storage JWT for the storage scope and a dummy token for ARM."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        token = storage_jwt() if any("storage.azure.com" in s for s in scopes) else "fake-token"
        return AccessToken(token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.extend(scopes)
        token = storage_jwt() if any("storage.azure.com" in s for s in scopes) else "fake-token"
        return AccessTokenInfo(token, int(time.time()) + 3600)


@pytest.fixture
def scoped_credential() -> ScopedCredential:
    return ScopedCredential()
