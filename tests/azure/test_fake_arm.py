"""The fake ARM refuses what Azure would (unknown body members, missing parents, non-VHD blobs, writes
while an operation runs) and reproduces its failure modes (operations that move on with time, sources
read while the operation runs, replies lost after it acted, DELETE answers for what is gone)."""

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


def _image_body(blob_url: str) -> dict:
    os_disk = {"osType": "Linux", "osState": "Generalized", "blobUri": blob_url}
    return {"location": "westeurope", "properties": {"storageProfile": {"osDisk": os_disk}}}


@pytest.fixture
def vhd(arm, container):
    """A 20 MiB fixed VHD blob (a footer is all the fake reads)."""
    from azure.storage.blob import BlobClient

    from imgpub.disk.write_vhd import vhd_footer

    blob = BlobClient.from_connection_string(arm.storage_conn, container, "x.vhd", api_version="2025-11-05")
    blob.create_page_blob((20 << 20) + 512)
    blob.upload_page(vhd_footer(20 << 20, unique_id=bytes(16)), 20 << 20, 512)
    return blob


def test_a_write_while_an_operation_runs_is_refused(compute, arm, vhd):
    compute.images.begin_create_or_update("rg", "img", _image_body(vhd.url), polling=False)
    with pytest.raises(HttpResponseError) as caught:
        compute.images.begin_create_or_update("rg", "img", _image_body(vhd.url))
    assert caught.value.status_code == 409 and caught.value.error.code == "AnotherOperationInProgress"
    with pytest.raises(HttpResponseError) as caught:
        compute.images.begin_delete("rg", "img")
    assert caught.value.error.code == "AnotherOperationInProgress"


def test_reading_a_resource_moves_its_operation_on(compute, arm, vhd):
    compute.images.begin_create_or_update("rg", "img", _image_body(vhd.url), polling=False)  # never polled
    states = [compute.images.get("rg", "img").provisioning_state for _ in range(3)]
    assert states[0] == "Creating" and states[-1] == "Succeeded"


def test_a_lost_reply_was_acted_on(compute, arm, vhd):
    from azure.core.exceptions import ServiceResponseError

    arm.lose_reply("PUT", r"/images/img$")
    with pytest.raises((ServiceResponseError, HttpResponseError)):
        compute.images.begin_create_or_update("rg", "img", _image_body(vhd.url)).result()
    assert arm.get("images/img") is not None, "the fake made the image before the reply was lost"
    assert [method for method, _ in arm.losses.lost] == ["PUT"]


def test_a_source_deleted_while_the_image_is_made_fails_it(compute, arm, vhd):
    compute.images.begin_create_or_update("rg", "img", _image_body(vhd.url), polling=False)
    vhd.delete_blob()
    states = [compute.images.get("rg", "img").provisioning_state for _ in range(3)]
    assert states[-1] == "Failed"
    (op,) = [o for o in arm.operations.all.values() if o.path and o.path.endswith("/images/img")]
    assert "cannot be read" in op.error["message"]


def test_a_delete_of_what_is_gone_answers_204_or_404(compute, arm):
    compute.images.begin_delete("rg", "nothing").result()
    arm.missing_delete_status = 404
    with pytest.raises(HttpResponseError) as caught:
        compute.images.begin_delete("rg", "nothing").result()
    assert caught.value.status_code == 404
