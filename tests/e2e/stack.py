"""All four targets' back ends on this machine: what the end-to-end tests and examples/sandbox run against.

* AWS: the patched moto server (tests/aws/moto_server.py) with its fault and request-log API.
* GCP: gcp-storage-emulator for GCS (behind a recording proxy) and the fake Compute images API
  (tests/fakes/gce/).
* Azure: Azurite behind a recording proxy (tests/fakes/azurite.py), the fake ARM over HTTPS
  (tests/fakes/arm/) and a managed-identity token endpoint, so the CLI's DefaultAzureCredential
  gets a token the way it does on an Azure VM or App Service.
* local: a folder.

`running_clouds(ports, folder)` starts everything and stops it on exit; `Clouds.env()` is the
environment the `imgpub` CLI needs to reach them (endpoints go in via the manifest's ${VARS}).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aws.motoaws import Moto
from aws.stack import running_moto
from fakes.arm import FakeArm
from fakes.azurite import ACCOUNT, API_VERSION, StorageProxy, connection_string, running_azurite
from fakes.gce import FakeGce
from gcp.stack import running_gcs

PROJECT = "imgpub-sandbox"
BUCKET = "imgpub-sandbox"
CONTAINER = "vhds"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
IDENTITY_HEADER = "imgpub-sandbox"


@dataclass(frozen=True)
class Ports:
    """0 picks a free port. The sandbox's fixed ports are the defaults in examples/sandbox/imgpub.yaml.

    `gcs` and `azurite` are the recording proxies' ports (the CLI's endpoints); the emulators behind
    them listen on free ports.
    """

    moto: int = 0
    gcs: int = 0
    gce: int = 0
    azurite: int = 0
    arm: int = 0
    identity: int = 0


SANDBOX_PORTS = Ports(moto=4566, gcs=9023, gce=9080, azurite=10000, arm=9443, identity=9081)


class TokenServer:
    """An App Service style managed-identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER)."""

    def __init__(self, port: int = 0) -> None:
        self.resources: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                    status, doc = 401, {"error": "missing X-IDENTITY-HEADER"}
                else:
                    resource = query.get("resource", [""])[0]
                    server.resources.append(resource)
                    expires = int(time.time()) + 3600
                    status = 200
                    doc = {
                        "access_token": "sandbox-token",
                        "expires_on": str(expires),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": "00000000-0000-0000-0000-0000000000c1",
                    }
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class AzureSide:
    azurite_url: str
    storage: StorageProxy
    """Records the CLI's blob requests."""
    arm: FakeArm
    identity: TokenServer

    def container_client(self) -> Any:
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(
            connection_string(self.azurite_url), CONTAINER, api_version=API_VERSION
        )


@dataclass
class Clouds:
    moto: Moto
    gcs_url: str
    gcs: StorageProxy
    """Records the CLI's GCS requests (the emulator keeps no log)."""
    gce: FakeGce
    azure_side: AzureSide | None
    """None when started without Azure (the sandbox without Azurite)."""
    out: Path

    @property
    def azure(self) -> AzureSide:
        assert self.azure_side is not None, "started without Azure"
        return self.azure_side

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's environment: credentials for the emulators and the manifest's endpoint ${VARS}."""
        keep = ("PATH", "TMPDIR", "LANG", "LC_ALL", "IMGPUB_AZURITE", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOME": str(self.out.parent / "home"),
                "IMGPUB_STATE_DIR": str(self.out.parent / "state"),
                "NO_COLOR": "1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true",
                "IMGPUB_GCP_ANONYMOUS": "1",
                "IMGPUB_SANDBOX_AWS": self.moto.url,
                "IMGPUB_SANDBOX_GCS": self.gcs.url,
                "IMGPUB_SANDBOX_GCE": self.gce.url,
                "IMGPUB_SANDBOX_OUT": str(self.out),
            }
        )
        if self.azure_side is not None:
            side = self.azure_side
            env.update(
                {
                    "AZURE_STORAGE_CONNECTION_STRING": connection_string(side.storage.url),
                    "REQUESTS_CA_BUNDLE": str(side.arm.ca_path),
                    "IDENTITY_ENDPOINT": side.identity.url,
                    "IDENTITY_HEADER": IDENTITY_HEADER,
                    "IMGPUB_AZURE_POLLING_INTERVAL": "0.01",
                    "IMGPUB_SANDBOX_BLOB": f"{side.storage.url}/{ACCOUNT}",
                    "IMGPUB_SANDBOX_ARM": side.arm.url,
                }
            )
        env.update(extra)
        return env

    def storage_client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.gcs_url},
        )


@contextmanager
def running_clouds(
    folder: Path, ports: Ports = Ports(), *, azure: bool = True, log: Path | None = None
) -> Iterator[Clouds]:
    """Start every back end (moto first: it takes the longest), create the bucket and the container."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        moto_log = stack.enter_context((log or folder / "moto.log").open("wb"))
        moto_url = stack.enter_context(running_moto(ports.moto, moto_log))
        gcs_url = stack.enter_context(running_gcs())
        gcs = StorageProxy(gcs_url, port=ports.gcs)
        stack.callback(gcs.close)
        gce = FakeGce(gcs_url).start(ports.gce)
        stack.callback(gce.stop)
        side = stack.enter_context(_running_azure(folder, ports)) if azure else None
        clouds = Clouds(Moto(moto_url), gcs_url, gcs, gce, side, folder / "out")
        clouds.storage_client().create_bucket(BUCKET)
        if side is not None:
            side.container_client().create_container()
        yield clouds


@contextmanager
def _running_azure(folder: Path, ports: Ports) -> Iterator[AzureSide]:
    with ExitStack() as stack:
        azurite_port = stack.enter_context(running_azurite(512))
        azurite_url = f"http://127.0.0.1:{azurite_port}"
        storage = StorageProxy(azurite_url, port=ports.azurite)
        stack.callback(storage.close)
        arm = stack.enter_context(
            FakeArm(connection_string(azurite_url), folder / "arm-ca", polls=1, port=ports.arm)
        )
        identity = TokenServer(ports.identity)
        stack.callback(identity.close)
        yield AzureSide(azurite_url, storage, arm, identity)
