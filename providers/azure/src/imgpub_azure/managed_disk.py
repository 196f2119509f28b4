"""A managed disk created for direct upload: no storage account needed.

create (createOption Upload, uploadSizeBytes) -> grant write access (a SAS URL) -> Put Page ->
revoke access (the disk becomes usable) -> image source -> delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgpub.errors import CloudError
from imgpub.identity import TAG_DIGEST
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.redaction import remember_sas_url
from imgpub_azure.tags import digest_of
from imgpub_azure.writes import Writes

if TYPE_CHECKING:
    from azure.mgmt.compute.models import Disk

__all__ = ["UPLOAD_DISK_SKU", "UPLOAD_SAS_SECONDS", "UploadDisks"]

UPLOAD_SAS_SECONDS = 24 * 3600
"""How long the write SAS lives: long enough for a large upload on a slow link."""
UPLOAD_DISK_SKU = "Standard_LRS"
"""DiskSku.name (azure.mgmt.compute.models.DiskStorageAccountTypes): the cheapest; the disk is temporary."""
CUSTOMER_KEY = "EncryptionAtRestWithCustomerKey"
"""Encryption.type (EncryptionType) for a disk encrypted with a disk encryption set."""


class UploadDisks:
    def __init__(self, clients: AzureClients, caller: Caller) -> None:
        self.clients = clients
        self.call = caller
        self.settings = clients.settings
        self.writes = Writes(caller, clients.polling_interval(15.0))

    def find(self, name: str) -> Disk | None:
        """The disk once no operation runs on it (a run stopped right after its PUT left it
        Creating: access cannot be granted before it is done), or None."""
        rg = self.settings.resource_group
        return self.writes.settled(f"upload disk {name}", lambda: self.clients.compute.disks.get(rg, name))

    def create(self, name: str, upload_size: int, generation: str, tags: dict[str, str]) -> Disk:
        from azure.mgmt.compute import models

        s = self.settings
        encryption = (
            models.Encryption(disk_encryption_set_id=s.disk_encryption_set, type=CUSTOMER_KEY)
            if s.disk_encryption_set
            else None
        )
        disk = models.Disk(
            location=s.location,
            tags=tags,
            sku=models.DiskSku(name=UPLOAD_DISK_SKU),
            properties=models.DiskProperties(
                os_type=s.os_type,
                hyper_v_generation=generation,
                creation_data=models.CreationData(create_option="Upload", upload_size_bytes=upload_size),
                encryption=encryption,
            ),
        )
        disks, digest = self.clients.compute.disks, tags[TAG_DIGEST]

        def judge(found: Disk) -> bool | str:
            theirs = digest_of(found)
            return theirs == digest or f"upload disk {name} holds digest {theirs or '(none)'}, not {digest}"

        return self.writes.put(
            f"upload disk {name}",
            lambda: disks.get(s.resource_group, name),
            lambda: disks.begin_create_or_update(s.resource_group, name, disk).result(),
            judge,
            region=s.location,
        )

    def grant_write(self, name: str) -> str:
        """A SAS URL to write the disk's pages (never logged or put in an error)."""
        from azure.mgmt.compute import models

        rg = self.settings.resource_group
        data = models.GrantAccessData(access="Write", duration_in_seconds=UPLOAD_SAS_SECONDS)
        access = self.call(
            f"grant write access to disk {name}",
            lambda: self.clients.compute.disks.begin_grant_access(rg, name, data).result(),
        )
        if not access.access_sas:
            raise CloudError(self.call.target, f"grant write access to disk {name}", "no SAS URL returned")
        remember_sas_url(access.access_sas)  # a credential: redacted from every message from now on
        return access.access_sas

    def revoke(self, name: str) -> None:
        rg = self.settings.resource_group
        self.call(
            f"revoke access to disk {name}",
            lambda: self.clients.compute.disks.begin_revoke_access(rg, name).result(),
        )

    def delete(self, name: str) -> None:
        """Delete this run's upload disk (a 404: it is gone already)."""
        rg = self.settings.resource_group
        self.writes.delete(f"disk {name}", lambda: self.clients.compute.disks.begin_delete(rg, name).result())
