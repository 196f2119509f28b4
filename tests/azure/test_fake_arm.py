"""The fake ARM refuses what Azure would: unknown body members, missing parents, non-VHD blobs."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient


class Token:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("t", int(time.time()) + 600)


@pytest.fixture
def compute(arm, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.ca_path))
    return ComputeManagementClient(Token(), "sub", base_url=arm.url, polling_interval=0.01, retry_total=0)


def test_unknown_members_are_rejected(compute):
    body = {"location": "westeurope", "properties": {"storageProfile": {"osDisk": {"osTyp": "Linux"}}}}
    with pytest.raises(HttpResponseError) as caught:
        compute.images.begin_create_or_update("rg", "img", body).result()
    assert caught.value.status_code == 400 and caught.value.error.code == "InvalidRequestContent"
    assert "osTyp" in caught.value.message


def test_version_needs_its_definition(compute):
    body = {"location": "westeurope", "properties": {"storageProfile": {"source": {"id": "/x"}}}}
    with pytest.raises(HttpResponseError) as caught:
        compute.gallery_image_versions.begin_create_or_update("rg", "g", "d", "1.0.0", body).result()
    assert caught.value.error.code == "ParentResourceNotFound"


def test_image_from_a_blob_that_is_not_a_vhd(compute, arm, container, azurite):
    from azure.storage.blob import BlobClient

    conn = arm.storage_conn
    blob = BlobClient.from_connection_string(conn, container, "x.vhd", api_version="2025-11-05")
    blob.create_page_blob((20 << 20) + 512)
    os_disk = {"osType": "Linux", "osState": "Generalized", "blobUri": blob.url}
    body = {"location": "westeurope", "properties": {"storageProfile": {"osDisk": os_disk}}}
    with pytest.raises(HttpResponseError, match="not a fixed VHD"):
        compute.images.begin_create_or_update("rg", "img", body).result()


def test_requests_need_a_bearer_token(arm):
    status, _, doc = arm.handle(
        "GET",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x?api-version=1",
        {},
        b"",
    )
    assert status == 401 and doc["error"]["code"] == "AuthenticationFailed"
