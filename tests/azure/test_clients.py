"""Storage authorisation by token (the DefaultAzureCredential path) against Azurite over https."""

from __future__ import annotations

import uuid
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from fakes.arm import FakeArm
from imgpub.identity import image_digest
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context
from imgpub.retry import FAST
from imgpub_azure import AzureProvider, AzureSettings
from imgpub_azure.clients import AzureClients, strip_query

ACCOUNT = "devstoreaccount1"
SUB = "00000000-0000-0000-0000-0000000000a1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def test_upload_with_a_token_credential(
    azurite_oauth, scoped_credential, disk, info, tmp_path: Path, monkeypatch
):
    bundle = tmp_path / "bundle.pem"
    conn = (
        f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={azurite_oauth.url}/{ACCOUNT};"
    )
    with FakeArm(conn, tmp_path / "ca") as arm:
        bundle.write_text(arm.ca_path.read_text() + azurite_oauth.ca_path.read_text())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        monkeypatch.setenv("IMGPUB_AZURE_POLLING_INTERVAL", "0.01")
        container = f"c{uuid.uuid4().hex[:12]}"
        BlobServiceClient.from_connection_string(conn, api_version="2025-11-05").create_container(container)
        settings = AzureSettings(
            name="az",
            subscription_id=SUB,
            resource_group="rg",
            location="westeurope",
            storage_account=ACCOUNT,
            container=container,
            blob_endpoint=f"{azurite_oauth.url}/{ACCOUNT}",
            resource_manager_endpoint=arm.url,
            storage_api_version="2025-11-05",
        )
        credential = scoped_credential
        image = info()
        ctx = Context(
            "az",
            image_digest(image.content_digest, settings.identity()),
            Journal(None),
            progress=RecordingProgress(),
            retry=FAST,
        )

        AzureProvider(credential=credential).publish(image, settings, disk, ctx)

        assert "https://storage.azure.com/.default" in credential.scopes
        assert arm.get("images/golden-1.2.3") is not None


def test_strip_query_drops_the_sas():
    assert (
        strip_query("https://a.blob.core.windows.net/c/b.vhd?sv=1&sig=x")
        == "https://a.blob.core.windows.net/c/b.vhd"
    )


def test_account_url_defaults_to_the_public_cloud():
    settings = AzureSettings(
        name="az", subscription_id=SUB, resource_group="rg", location="westeurope", storage_account="acct"
    )
    clients = AzureClients(settings)
    assert clients.account_url == "https://acct.blob.core.windows.net"
    assert (
        clients.storage_account_id()
        == f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"
    )
    assert (
        clients.compute_id("images/x")
        == f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/x"
    )


def test_storage_account_in_another_resource_group():
    settings = AzureSettings(
        name="az",
        subscription_id=SUB,
        resource_group="rg",
        location="westeurope",
        storage_account="acct",
        storage_resource_group="storage-rg",
    )
    assert (
        AzureClients(settings)
        .storage_account_id()
        .startswith(f"/subscriptions/{SUB}/resourceGroups/storage-rg/")
    )


def test_a_connection_string_for_another_account_or_endpoint_is_refused(monkeypatch):
    """Found end to end: the connection string silently won over storage_account and blob_endpoint."""
    import pytest

    from imgpub.errors import CredentialsError

    def settings(**kw):
        fields = {"name": "az", "subscription_id": SUB, "resource_group": "rg", "location": "westeurope"}
        return AzureSettings(**{**fields, "storage_account": ACCOUNT, **kw})

    conn = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/{ACCOUNT};"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    ok = AzureClients(settings(blob_endpoint=f"http://127.0.0.1:1/{ACCOUNT}/")).blob("c", "b.vhd")
    assert ok.url == f"http://127.0.0.1:1/{ACCOUNT}/c/b.vhd"
    with pytest.raises(CredentialsError) as caught:
        AzureClients(settings(blob_endpoint=f"http://127.0.0.1:2/{ACCOUNT}")).blob("c", "b.vhd")
    assert str(caught.value) == (
        f"target az: AZURE_STORAGE_CONNECTION_STRING is for blob endpoint http://127.0.0.1:1/{ACCOUNT}, "
        f"not blob_endpoint http://127.0.0.1:2/{ACCOUNT}; unset it or fix the target"
    )
    with pytest.raises(
        CredentialsError, match="is for storage account 'devstoreaccount1', not storage_account 'other'"
    ):
        AzureClients(settings(storage_account="other")).blob("c", "b.vhd")
