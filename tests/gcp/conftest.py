"""GCP test stack: gcp-storage-emulator (in memory, subprocess) behind a proxy that holds every request
to the storage v1 contract (gcp/fault_proxy.py) for GCS, and tests/fakes/gce for Compute."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy
from gcp.stack import PROJECT, running_gcs
from imaging import MiB, mixed_raw
from imgpub.disk import DiskImage, open_image
from imgpub.journal import Journal
from imgpub_gcp import GcpSettings

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    with running_gcs() as url:
        yield url


@pytest.fixture(scope="session")
def _gcs_proxy(gcs_endpoint: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs_endpoint).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def gcs(_gcs_proxy: FaultProxy) -> FaultProxy:
    """The strict GCS stand-in the provider talks to (the emulator behind the contract proxy)."""
    _gcs_proxy.reset()
    return _gcs_proxy


@pytest.fixture(scope="session")
def _gce_server(gcs_endpoint: str) -> Iterator[FakeGce]:
    fake = FakeGce(gcs_endpoint).start()
    yield fake
    fake.stop()


@pytest.fixture
def gce(_gce_server: FakeGce) -> Iterator[FakeGce]:
    _gce_server.reset()
    yield _gce_server
    assert _gce_server.state.crashes == [], "the GCE fake crashed"


@pytest.fixture
def storage_client(gcs_endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint}
    )


@pytest.fixture
def bucket(storage_client: Any) -> str:
    name = f"imgpub-test-{next(_buckets)}"
    storage_client.create_bucket(name)
    return name


@pytest.fixture
def make_settings(
    gcs: FaultProxy, gce: FakeGce, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., GcpSettings]:
    """Settings pointed at the local stack; anonymous credentials by the documented rule."""
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")

    def make(**overrides: Any) -> GcpSettings:
        fields: dict[str, Any] = {
            "name": "gce",
            "project": PROJECT,
            "bucket": bucket,
            "storage_endpoint": gcs.url,
            "compute_endpoint": gce.url,
            **overrides,
        }
        return GcpSettings.model_validate(fields)

    return make


@pytest.fixture(scope="session")
def raw_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_raw(tmp_path_factory.mktemp("gcp-disk") / "disk.raw", size=48 * MiB, seed=7)


@pytest.fixture
def disk(raw_path: Path) -> Iterator[DiskImage]:
    with open_image(raw_path, "raw") as img:  # no partition table: name the format
        yield img


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.json")
