"""Known-bad requests, sent straight to the stand-ins, are refused as Azure refuses them.

The fake ARM holds every body to azure-mgmt-compute's models (unknown, read-only and required members,
JSON types, enums), the api-version the SDK pins, and ARM's documented rules (a version's PATCH:
GalleryImageVersionUpdate, with its storage profile required and unchanged; paged lists); Azurite,
behind the strict storage proxy, holds page blobs to the Put Page rules it does not enforce itself.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from azure.mgmt.compute import models as m
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from fakes.arm import FakeArm, check_body
from fakes.arm.contract import members, pinned_api_version
from fakes.azurite import ACCOUNT, API_VERSION, KEY, StorageProxy

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute"
IMAGES = pinned_api_version("Microsoft.Compute/images")
GALLERIES = pinned_api_version("Microsoft.Compute/galleries")
VERSIONS_API = pinned_api_version("Microsoft.Compute/galleries/images/versions")


def send(
    arm: FakeArm, method: str, path: str, body: Any = None, *, api: str | None = IMAGES, token: bool = True
):
    """One raw HTTPS request to the fake: (status, error document or body)."""
    context = ssl.create_default_context(cafile=str(arm.ca_path))
    parts = urlsplit(arm.url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=30)
    payload = b"" if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    if token:
        headers["Authorization"] = "Bearer t"
    query = f"?api-version={api}" if api else ""
    conn.request(method, quote(path) + query, body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else None)


def image(**os_disk: Any) -> dict[str, Any]:
    disk = {"osType": "Linux", "osState": "Generalized", "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}
    disk.update(os_disk)
    return {"location": "westeurope", "properties": {"storageProfile": {"osDisk": disk}}}


def refused(result: tuple[int, Any], status: int, code: str) -> dict[str, Any]:
    got_status, doc = result
    assert (got_status, doc["error"]["code"]) == (status, code), doc
    assert set(doc["error"]) <= {"code", "message", "target"} and doc["error"]["message"]
    return doc["error"]


BAD_IMAGES = [
    pytest.param(
        image(osTyp="Linux"), "InvalidRequestContent", "properties.storageProfile.osDisk.osTyp", id="unknown"
    ),
    pytest.param(
        {**image(), "properties": {**image()["properties"], "provisioningState": "Succeeded"}},
        "InvalidParameter",
        "properties.provisioningState",
        id="read-only",
    ),
    pytest.param(
        {"location": "westeurope", "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}},
        "InvalidParameter",
        "properties.storageProfile.osDisk.osState",
        id="required",
    ),
    pytest.param(
        image(caching="Sometimes"), "InvalidParameter", "properties.storageProfile.osDisk.caching", id="enum"
    ),
    pytest.param(
        image(diskSizeGB="big"),
        "InvalidRequestContent",
        "properties.storageProfile.osDisk.diskSizeGB",
        id="type",
    ),
    pytest.param(
        image(diskEncryptionSet={"id": "my-des"}),
        "LinkedInvalidPropertyId",
        "properties.storageProfile.osDisk.diskEncryptionSet.id",
        id="des-id",
    ),
]


@pytest.mark.parametrize(("body", "code", "target"), BAD_IMAGES)
def test_bodies_that_break_the_sdk_models_are_refused(arm, body, code, target):
    error = refused(send(arm, "PUT", f"{RG}/images/img", body), 400, code)
    assert error["target"] == target
    assert arm.get("images/img") is None


def test_the_contract_reads_the_sdk_models():
    image_os_disk = members(m.ImageOSDisk)
    assert image_os_disk["osType"].required and not image_os_disk["blobUri"].required
    assert members(m.GalleryOSDiskImage)["sizeInGB"].read_only
    assert members(m.Image)["location"].required and members(m.Image)["id"].read_only
    assert check_body({"location": "x", "tags": {"a": "b"}}, m.Image) == []


@pytest.mark.parametrize(
    ("path", "body", "api", "status", "code"),
    [
        pytest.param(
            f"{RG}/images/img", image(), "2019-07-01", 400, "InvalidApiVersionParameter", id="api-version"
        ),
        pytest.param(
            f"{RG}/images/img", image(), None, 400, "MissingApiVersionParameter", id="no-api-version"
        ),
        pytest.param(
            f"{RG}/images/img",
            {**image(), "location": "West Europe"},
            IMAGES,
            400,
            "LocationNotAvailableForResourceType",
            id="display-name-location",
        ),
        pytest.param(
            f"/subscriptions/{SUB}/resourceGroups/golden images/providers/Microsoft.Compute/images/img",
            image(),
            IMAGES,
            400,
            "InvalidResourceName",
            id="resource-group-space",
        ),
        pytest.param(
            f"/subscriptions/{SUB}/resourceGroups/prod./providers/Microsoft.Compute/images/img",
            image(),
            IMAGES,
            400,
            "InvalidResourceName",
            id="resource-group-dot",
        ),
        pytest.param(f"{RG}/images/-img", image(), IMAGES, 400, "InvalidResourceName", id="image-name"),
        pytest.param(
            f"{RG}/galleries/gal-",
            {"location": "westeurope"},
            GALLERIES,
            400,
            "InvalidResourceName",
            id="gallery-name",
        ),
        pytest.param(
            f"{RG}/galleries/g/images/d/versions/1.2",
            {"location": "westeurope"},
            GALLERIES,
            400,
            "InvalidResourceName",
            id="version-name",
        ),
        pytest.param(
            f"{RG}/galleries/g/images/d/versions/1.2.3",
            {"location": "westeurope", "properties": {"storageProfile": {}}},
            GALLERIES,
            404,
            "ParentResourceNotFound",
            id="no-parent",
        ),
        pytest.param(
            f"{RG}/images/img",
            {**image(), "tags": {f"t{i}": "v" for i in range(51)}},
            IMAGES,
            400,
            "InvalidTag",
            id="51-tags",
        ),
        pytest.param(
            f"{RG}/images/img",
            {**image(), "tags": {"a/b": "v"}},
            IMAGES,
            400,
            "InvalidTagNameCharacters",
            id="tag-name",
        ),
        pytest.param(
            f"{RG}/images/img",
            {**image(), "tags": {"Team": "a", "team": "b"}},
            IMAGES,
            400,
            "InvalidTag",
            id="tag-case",
        ),
        pytest.param(
            f"{RG}/images/img",
            {**image(), "tags": {"t": "v" * 257}},
            IMAGES,
            400,
            "InvalidTag",
            id="tag-value",
        ),
    ],
)
def test_requests_that_break_arm_rules_are_refused(arm, path, body, api, status, code):
    refused(send(arm, "PUT", path, body, api=api), status, code)
    assert arm.refusals[-1][2] == code


def test_requests_need_a_bearer_token(arm):
    refused(send(arm, "GET", f"{RG}/images/x", token=False), 401, "AuthenticationFailed")


def _definition(arm, *, generation="V2", security=None, name="d"):
    assert send(arm, "PUT", f"{RG}/galleries/g", {"location": "westeurope"}, api=GALLERIES)[0] in (200, 201)
    features = [{"name": "SecurityType", "value": security}] if security else None
    props = {
        "osType": "Linux",
        "osState": "Generalized",
        "hyperVGeneration": generation,
        "identifier": {"publisher": "p", "offer": "o", "sku": "s"},
        "features": features,
    }
    body = {"location": "westeurope", "properties": props}
    return send(arm, "PUT", f"{RG}/galleries/g/images/{name}", body, api=GALLERIES)


def _settle(arm: FakeArm) -> None:
    """Poll every operation to its end, as a client would."""
    for op_id in list(arm.operations.all):
        while not arm.operations.all[op_id].done:
            arm.operations.poll(op_id)
        arm._settle(op_id)


def test_trusted_launch_needs_generation_2(arm):
    refused(_definition(arm, generation="V1", security="TrustedLaunch"), 400, "InvalidParameter")
    _settle(arm)  # the gallery's create has finished (a PUT while it runs is refused)
    assert _definition(arm, generation="V2", security="TrustedLaunch")[0] == 201


def test_a_definition_cannot_change_and_cannot_go_while_it_holds_versions(arm):
    assert _definition(arm)[0] == 201
    _settle(arm)
    refused(_definition(arm, generation="V1"), 409, "PropertyChangeNotAllowed")
    arm.resources[f"{RG}/galleries/g/images/d/versions/1.0.0".lower()] = {"type": "x", "properties": {}}
    refused(send(arm, "DELETE", f"{RG}/galleries/g/images/d", api=GALLERIES), 409, "CannotDeleteResource")


def test_a_version_from_a_failed_image_is_refused(arm):
    assert _definition(arm)[0] == 201
    arm.resources[f"{RG}/images/img".lower()] = {
        "id": f"{RG}/images/img",
        "type": "Microsoft.Compute/images",
        "properties": {"provisioningState": "Failed", "hyperVGeneration": "V2"},
    }
    _settle(arm)
    body = {
        "location": "westeurope",
        "properties": {"storageProfile": {"source": {"id": f"{RG}/images/img"}}},
    }
    error = refused(
        send(arm, "PUT", f"{RG}/galleries/g/images/d/versions/1.0.0", body, api=GALLERIES),
        400,
        "InvalidParameter",
    )
    assert "Failed" in error["message"]


def test_disk_encryption_sets_must_exist_in_the_region_they_encrypt(arm):
    des = arm.add_disk_encryption_set("des1", "eastus")
    error = refused(
        send(arm, "PUT", f"{RG}/images/img", image(diskEncryptionSet={"id": des})), 400, "InvalidParameter"
    )
    assert "eastus" in error["message"]
    missing = des.replace("des1", "nope")
    refused(send(arm, "PUT", f"{RG}/images/img", image(diskEncryptionSet={"id": missing})), 404, "NotFound")


def test_a_failed_operation_reads_as_arm_writes_it(arm):
    arm.fail("/galleries/g$", "InternalExecutionError", "the gallery could not be created")
    assert send(arm, "PUT", f"{RG}/galleries/g", {"location": "westeurope"}, api=GALLERIES)[0] == 201
    (op_id,) = arm.operations.all
    status_path = f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westeurope/operations/{op_id}"
    documents = [send(arm, "GET", status_path, api=GALLERIES)[1] for _ in range(3)]
    assert documents[0]["status"] == "InProgress"
    assert documents[-1]["status"] == "Failed"
    assert documents[-1]["error"] == {
        "code": "InternalExecutionError",
        "message": "the gallery could not be created",
        "details": [],
    }
    assert arm.get("galleries/g")["properties"]["provisioningState"] == "Failed"


# ---- storage: Azurite behind the strict proxy --------------------------------------------------


def _storage(proxy: StorageProxy, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    sas = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    sep = "&" if "?" in path else "?"
    headers = {"x-ms-version": API_VERSION, "Content-Length": str(len(body)), **headers}
    conn.request(method, f"/{ACCOUNT}/{path}{sep}{sas}", body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("x-ms-error-code")


def _page(start: int, data: bytes, md5: bytes | None = None) -> dict[str, str]:
    headers = {"x-ms-page-write": "update", "x-ms-range": f"bytes={start}-{start + len(data) - 1}"}
    if md5 is not None:
        headers["Content-MD5"] = base64.b64encode(md5).decode()
    return headers


def test_page_blob_rules_are_enforced(proxy, container):
    blob = f"{container}/x.vhd"
    assert (
        _storage(proxy, "PUT", blob, {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": "1000"})[0]
        == 400
    )
    assert _storage(
        proxy, "PUT", blob, {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": str(16 << 20)}
    ) == (
        201,
        None,
    )
    page = b"a" * 512
    assert _storage(proxy, "PUT", f"{blob}?comp=page", _page(100, page), page)[0] == 416
    big = b"a" * (4 << 20) + page
    assert _storage(proxy, "PUT", f"{blob}?comp=page", _page(0, big), big) == (413, "RequestBodyTooLarge")
    wrong = hashlib.md5(b"other").digest()
    assert _storage(proxy, "PUT", f"{blob}?comp=page", _page(0, page, wrong), page) == (400, "Md5Mismatch")
    right = hashlib.md5(page).digest()
    assert _storage(proxy, "PUT", f"{blob}?comp=page", _page(0, page, right), page) == (201, None)
    create = {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": "512"}
    assert _storage(proxy, "PUT", "nosuchcontainer/x.vhd", create) == (404, "ContainerNotFound")


# ---- gallery image versions: PATCH (deprecation, new regions) and paged lists ----------------------

VERSIONS = f"{RG}/galleries/g/images/d/versions"
SOURCE = {"source": {"id": f"{RG}/images/img"}}


def _stored_version(arm: FakeArm, name: str = "1.0.0") -> str:
    """A version as the fake stores one made from an image, its operation finished; its path."""
    path = f"{VERSIONS}/{name}"
    arm.resources[path.lower()] = {
        "id": path,
        "name": name,
        "type": "Microsoft.Compute/galleries/images/versions",
        "location": "westeurope",
        "tags": {"team": "a"},
        "properties": {
            "provisioningState": "Succeeded",
            "publishingProfile": {"targetRegions": [{"name": "westeurope"}]},
            "storageProfile": SOURCE,
        },
        "_regions": ["westeurope"],
        "_done": True,
    }
    return path


def patch(**profile: Any) -> dict[str, Any]:
    return {"properties": {"publishingProfile": profile, "storageProfile": SOURCE}}


BAD_PATCHES = [
    pytest.param(
        patch(publishedDate="2026-01-01T00:00:00Z"),
        400,
        "InvalidParameter",
        "properties.publishingProfile.publishedDate",
        id="read-only",
    ),
    pytest.param(
        patch(endOfLifeDate="next tuesday"),
        400,
        "InvalidRequestContent",
        "properties.publishingProfile.endOfLifeDate",
        id="end-of-life-not-a-date",
    ),
    pytest.param(
        patch(endOfLifeDate=20261129),
        400,
        "InvalidRequestContent",
        "properties.publishingProfile.endOfLifeDate",
        id="end-of-life-a-number",
    ),
    pytest.param(
        patch(excludeFromLatest="yes"),
        400,
        "InvalidRequestContent",
        "properties.publishingProfile.excludeFromLatest",
        id="exclude-from-latest-a-string",
    ),
    pytest.param(
        {"properties": {"publishingProfile": {"endOfLifeDate": "2026-11-29T00:00:00Z"}}},
        400,
        "InvalidParameter",
        "properties.storageProfile",
        id="storage-profile-required",
    ),
    pytest.param(
        {"properties": {"publishingProfile": {}, "storageProfile": {"source": {"id": f"{RG}/images/other"}}}},
        409,
        "PropertyChangeNotAllowed",
        "properties.storageProfile",
        id="source-changed",
    ),
    pytest.param(
        patch(targetRegions=[{"name": "West Europe"}]),
        400,
        "LocationNotAvailableForResourceType",
        "properties.publishingProfile.targetRegions[0].name",
        id="display-name-region",
    ),
    pytest.param(
        patch(targetRegions=[]),
        400,
        "InvalidParameter",
        "properties.publishingProfile.targetRegions",
        id="no-region",
    ),
    pytest.param(
        {**patch(), "location": "westeurope"},
        400,
        "InvalidRequestContent",
        "location",
        id="not-an-update-member",
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "target"), BAD_PATCHES)
def test_version_patches_that_azure_refuses_are_refused(arm, body, status, code, target):
    path = _stored_version(arm)
    before = json.dumps(arm.get("galleries/g/images/d/versions/1.0.0"), sort_keys=True)
    error = refused(send(arm, "PATCH", path, body, api=VERSIONS_API), status, code)
    assert error["target"] == target
    assert json.dumps(arm.get("galleries/g/images/d/versions/1.0.0"), sort_keys=True) == before


def test_a_version_patch_merges_and_runs_as_an_operation(arm):
    path = _stored_version(arm)
    body = patch(
        endOfLifeDate="2026-11-29T12:00:00Z",
        excludeFromLatest=True,
        targetRegions=[{"name": "westeurope", "excludeFromLatest": True}, {"name": "northeurope"}],
    )
    status, doc = send(arm, "PATCH", path, body, api=VERSIONS_API)
    assert status == 200 and doc["properties"]["provisioningState"] == "Updating"
    refused(send(arm, "PATCH", path, body, api=VERSIONS_API), 409, "AnotherOperationInProgress")
    _settle(arm)
    stored = arm.get("galleries/g/images/d/versions/1.0.0")
    assert stored["tags"] == {"team": "a"}, "a PATCH without tags keeps them"
    profile = stored["properties"]["publishingProfile"]
    assert profile["endOfLifeDate"] == "2026-11-29T12:00:00Z" and profile["excludeFromLatest"] is True
    assert stored["_regions"] == ["westeurope", "northeurope"]
    assert stored["properties"]["provisioningState"] == "Succeeded"
    status, _ = send(arm, "PATCH", path, {"tags": {"team": "b"}}, api=VERSIONS_API)
    _settle(arm)
    assert status == 200 and arm.get("galleries/g/images/d/versions/1.0.0")["tags"] == {"team": "b"}
    assert profile == arm.get("galleries/g/images/d/versions/1.0.0")["properties"]["publishingProfile"]


def _get(arm: FakeArm, path_and_query: str):
    context = ssl.create_default_context(cafile=str(arm.ca_path))
    parts = urlsplit(arm.url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=30)
    conn.request("GET", path_and_query, headers={"Authorization": "Bearer t"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def test_lists_are_paged_with_a_next_link(arm):
    for name in ("1.0.0", "1.1.0", "1.2.0"):
        _stored_version(arm, name)
    arm.page_size = 2
    status, first = _get(arm, f"{quote(VERSIONS)}?api-version={VERSIONS_API}")
    assert status == 200 and [v["name"] for v in first["value"]] == ["1.0.0", "1.1.0"]
    link = urlsplit(first["nextLink"])
    assert f"api-version={VERSIONS_API}" in link.query and "skiptoken" in link.query
    status, second = _get(arm, f"{link.path}?{link.query}")
    assert [v["name"] for v in second["value"]] == ["1.2.0"] and "nextLink" not in second
    status, bad = _get(arm, f"{quote(VERSIONS)}?api-version={VERSIONS_API}&%24skiptoken=x")
    assert (status, bad["error"]["code"]) == (400, "InvalidSkipToken")
