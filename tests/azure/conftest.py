"""Azure test stack: Azurite (in memory, a free port), a storage proxy for faults, and the fake ARM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.storage.blob import BlobServiceClient, ContainerClient

from azure.imgpub_cli import Cli, TokenServer
from fakes.arm import FakeArm
from fakes.azurite import ACCOUNT, API_VERSION, StorageProxy, connection_string, running_azurite
from fakes.chaos import ChaosProxy
from imaging import MiB, pattern, sparse_raw
from imgpub.disk import DiskImage, open_image
from imgpub.identity import image_digest
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context, ImageInfo
from imgpub.retry import FAST
from imgpub_azure import AzureProvider, AzureSettings
from imgpub_azure.names import upload_disk_name

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Base URL of an in-memory Azurite (blob service only)."""
    with running_azurite(4096) as port:  # deleted blobs stay in memory until its 10-minute GC
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

    def context(self, settings: AzureSettings, info: ImageInfo, state: str = "state", **kw: Any) -> Context:
        """A run's context; `state` names its state dir (two machines: two state dirs)."""
        digest = image_digest(info.content_digest, settings.identity())
        journal = Journal(self.tmp / state / f"{settings.name}.json")
        return Context(settings.name, digest, journal, progress=RecordingProgress(), retry=FAST, **kw)

    def provider(self) -> AzureProvider:
        return AzureProvider(credential=self.credential)

    def upload_disk(self, settings: AzureSettings, image: str = "golden-1.2.3", state: str = "state") -> str:
        """The upload disk this state dir's runs use: `<image>-upload-<run id from the journal>`."""
        run = Journal(self.tmp / state / f"{settings.name}.json").get("run_id")
        assert run, "no run has journalled its id yet"
        return upload_disk_name(image, run)


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
    with open_image(raw_disk, "raw") as img:
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


@pytest.fixture(scope="session")
def identity() -> Iterator[TokenServer]:
    """A managed-identity token endpoint for the `imgpub` command's DefaultAzureCredential."""
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture
def cli(arm: FakeArm, proxy: StorageProxy, container: str, tmp_path: Path, identity: TokenServer) -> Cli:
    """The `imgpub` command against the fake ARM and Azurite behind the storage proxy."""
    folder = tmp_path / "cli"
    folder.mkdir()
    return Cli(folder, arm.url, proxy.url, container, arm.ca_path, identity)


# ---- every version at once (prune, status --all-versions, reconcile) ----------------------------------


@dataclass
class Versions:
    """Publish several versions of `golden` to one target (each from its own state dir), age them,
    and write the manifest `imgpub prune` / `status --all-versions` / `reconcile` read."""

    stack: Stack
    disk: DiskImage
    info: Callable[..., ImageInfo]
    folder: Path
    target: dict[str, Any]

    def settings(self, **overrides: Any) -> AzureSettings:
        return self.stack.settings(**{**self.target, **overrides})

    def publish(self, version: str, **overrides: Any) -> AzureSettings:
        settings = self.settings(**overrides)
        image = self.info(version=version, content_digest=f"content-{version}")
        ctx = self.stack.context(settings, image, state=f"publish-{version}")
        published = self.stack.provider().publish(image, settings, self.disk, ctx)
        assert published.artifacts, f"{version} published nothing"
        return settings

    def age(self, version: str, created: Any) -> None:
        """Make `version`'s gallery version and managed image as old as `created` says."""
        for rest in (f"galleries/g1/images/golden/versions/{version}", f"images/golden-{version}"):
            if self.stack.arm.get(rest) is not None:
                self.stack.arm.age(rest, created)

    def manifest(
        self,
        version: str,
        retention: dict[str, Any] | None = None,
        name: str = "imgpub.yaml",
        **overrides: Any,
    ) -> Path:
        import json

        target = self.settings(**overrides).model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        doc: dict[str, Any] = {
            # the test disk has no partition table: raw, and its boot mode taken as said
            "image": {
                "name": "golden",
                "version": version,
                "source": "disk.raw",
                "format": "raw",
                "boot": "uefi",
                "boot_check": "warn",
            },
            "targets": [{"provider": "azure", **target}],
        }
        if retention is not None:
            doc["retention"] = retention
        path = self.folder / name
        path.write_text(json.dumps(doc))
        return path


GALLERY_TARGET: dict[str, Any] = {"gallery": {"name": "g1", "target_regions": [{"name": "westeurope"}]}}


@pytest.fixture
def stub_azure(stack: Stack) -> Iterator[type[AzureProvider]]:
    """`azure` as imgpub's pipeline and lifecycle construct it (no arguments), with the test credential."""
    from imgpub import plugins

    class StubbedAzure(AzureProvider):
        def __init__(self) -> None:
            super().__init__(credential=stack.credential)

    plugins.register(StubbedAzure)
    yield StubbedAzure
    plugins.unregister("azure")


@pytest.fixture
def versions(
    stack: Stack, disk: DiskImage, info: Callable[..., ImageInfo], tmp_path: Path, stub_azure: Any
) -> Versions:
    return Versions(stack, disk, info, tmp_path, dict(GALLERY_TARGET))


# ---- the chaos proxy in front of both stand-ins (the fault matrices) --------------------------------


def container_blobs(proxy: StorageProxy, container: str) -> list[str]:
    client = ContainerClient.from_connection_string(
        connection_string(proxy.url), container, api_version=API_VERSION
    )
    return [b.name for b in client.list_blobs()]


@dataclass
class Chaos:
    arm: ChaosProxy
    storage: ChaosProxy

    def broken(self) -> list[tuple[str, str, int, str | None]]:
        return [*self.arm.broken(), *self.storage.broken()]

    def lost_pages(self) -> int:
        return sum(1 for m, p, _, kind in self.storage.broken() if kind == "lose-reply" and "comp=page" in p)

    def clear(self) -> None:
        for proxy in (self.arm, self.storage):
            proxy.clear()


@pytest.fixture
def chaos(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chaos]:
    """The chaos proxy (fakes/chaos.py) in front of the fake ARM (HTTPS) and of the storage proxy;
    the upload disks' SAS URLs and the connection string point at it."""
    arm = ChaosProxy(stack.arm.url, tls=stack.arm.issue_cert()).start()
    storage = ChaosProxy(stack.proxy.url).start()
    stack.arm.sas_endpoint = storage.url
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(storage.url))
    yield Chaos(arm, storage)
    arm.stop()
    storage.stop()
