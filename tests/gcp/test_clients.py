"""The credentials rule: ADC normally; anonymous only when asked for AND pointed at local stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials

from gcp.stack import context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CredentialsError
from imgpub.journal import Journal
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.clients import GcpClients, credentials, storage_endpoint

BASE = GcpSettings(name="gce", project="imgpub-test", bucket="bkt")


def test_missing_credentials_give_one_line_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CredentialsError) as caught:
        credentials(BASE, "gce")
    message = str(caught.value)
    assert message.startswith("target gce: no usable Google credentials: ")
    assert "missing.json" in message and "gcloud auth application-default login" in message


def test_publish_without_credentials_fails_before_any_upload(
    make_settings: Callable[..., GcpSettings],
    disk: DiskImage,
    journal: Journal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    monkeypatch.delenv("IMGPUB_GCP_ANONYMOUS")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    info = image_info(disk)
    with pytest.raises(CredentialsError, match="no usable Google credentials"):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    assert journal.get("gcs_upload") is None


def test_anonymous_needs_an_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")
    with pytest.raises(CredentialsError, match="only allowed with storage_endpoint"):
        credentials(BASE, "gce")
    local = BASE.model_copy(update={"compute_endpoint": "http://127.0.0.1:1"})
    assert isinstance(credentials(local, "gce"), AnonymousCredentials)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")
    assert isinstance(credentials(BASE, "gce"), AnonymousCredentials)


def test_storage_endpoint_prefers_settings_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_endpoint(BASE) is None
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")
    assert storage_endpoint(BASE) == "http://127.0.0.1:9023"
    assert storage_endpoint(BASE.model_copy(update={"storage_endpoint": "http://h:1/"})) == "http://h:1"


def test_clients_use_the_overridden_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")
    local = BASE.model_copy(
        update={"compute_endpoint": "http://127.0.0.1:1", "storage_endpoint": "http://h:2"}
    )
    clients = GcpClients(local, "gce")
    assert clients.images.api_endpoint == "http://127.0.0.1:1"
    assert clients.storage.api_endpoint == "http://h:2"
