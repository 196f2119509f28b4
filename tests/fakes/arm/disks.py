"""Disk access for direct upload: beginGetAccess (Write) returns a SAS URL to a page blob in Azurite
that stands for the disk's bytes; endGetAccess ends the upload (ActiveUpload -> Unattached)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from azure.mgmt.compute import models as m
from azure.storage.blob import BlobClient, BlobSasPermissions, ContainerClient, generate_blob_sas

from fakes.arm.contract import check_body
from fakes.arm.rules import ArmError

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["disk_access"]


def disk_access(arm: FakeArm, disk_path: str, action: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    import json

    disk = arm.resources.get(disk_path.lower())
    if disk is None:
        raise ArmError(404, "ResourceNotFound", "disk not found")
    props = disk["properties"]
    if action == "beginGetAccess":
        doc = json.loads(body or b"{}")
        bad = check_body(doc, m.GrantAccessData)
        if bad:
            raise ArmError(400, bad[0].code, bad[0].message, bad[0].target)
        if props.get("provisioningState") != "Succeeded":
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"the disk is in provisioning state {props.get('provisioningState')}",
            )
        if doc.get("access") != "Write" or props["diskState"] not in ("ReadyToUpload", "ActiveUpload"):
            raise ArmError(
                409, "OperationNotAllowed", f"cannot grant {doc.get('access')} in {props['diskState']}"
            )
        sas_url = _disk_sas(arm, disk)
        props["diskState"] = "ActiveUpload"
        op = arm.operations.start(disk_path.lower(), "grant", output={"accessSAS": sas_url})
    elif action == "endGetAccess":
        if props["diskState"] == "ActiveUpload":
            props["diskState"] = "Unattached"
        op = arm.operations.start(disk_path.lower(), "revoke")
    else:
        raise ArmError(404, "InvalidResourceType", action)
    return 202, {"Location": arm.location_url(op.id)}, None


def _disk_sas(arm: FakeArm, disk: dict[str, Any]) -> str:
    size = disk["properties"]["creationData"]["uploadSizeBytes"]
    name = f"{disk['name']}.vhd"
    blob = BlobClient.from_connection_string(
        arm.storage_conn, arm.disk_container, name, api_version=arm.storage_api_version
    )
    container = ContainerClient.from_connection_string(
        arm.storage_conn, arm.disk_container, api_version=arm.storage_api_version
    )
    if not container.exists():
        container.create_container()
    if disk["properties"]["diskState"] == "ReadyToUpload" or not blob.exists():
        blob.create_page_blob(size)
    creds = blob.credential
    sas = generate_blob_sas(
        blob.account_name or "",
        arm.disk_container,
        name,
        account_key=creds.account_key,
        permission=BlobSasPermissions(read=True, write=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    disk["_blob"] = name
    url = blob.url
    if arm.sas_endpoint:  # clients reach the disk's bytes through a proxy in front of Azurite
        parts = urlsplit(url)
        url = urlunsplit((*urlsplit(arm.sas_endpoint)[:2], parts.path, "", ""))
    return f"{url}?{sas}"
