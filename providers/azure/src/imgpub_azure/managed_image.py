"""Managed images (Microsoft.Compute/images) made from an uploaded VHD blob or disk."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.upload_source import UploadedVhd

if TYPE_CHECKING:
    from azure.mgmt.compute.models import Image

__all__ = ["ManagedImages"]


class ManagedImages:
    def __init__(self, clients: AzureClients, caller: Caller) -> None:
        self.clients = clients
        self.call = caller
        self.settings = clients.settings

    def find(self, name: str) -> Image | None:
        rg = self.settings.resource_group
        return self.call.find(f"get image {name}", lambda: self.clients.compute.images.get(rg, name))

    def create(self, name: str, source: UploadedVhd, generation: str, tags: dict[str, str]) -> Image:
        """Create the image and wait until Resource Manager shows it (it is read right after)."""
        from azure.mgmt.compute import models

        s = self.settings
        os_disk = models.ImageOSDisk(
            os_type=s.os_type,
            os_state=s.os_state,
            caching="ReadWrite",
            storage_account_type=s.os_disk_storage_account_type,
        )
        if source.kind == "blob":
            os_disk.blob_uri = source.uri
        else:
            os_disk.managed_disk = models.SubResource(id=source.uri)
        if s.disk_encryption_set:
            os_disk.disk_encryption_set = models.DiskEncryptionSetParameters(id=s.disk_encryption_set)
        image = models.Image(
            location=s.location,
            tags=tags,
            properties=models.ImageProperties(
                storage_profile=models.ImageStorageProfile(os_disk=os_disk),
                hyper_v_generation=generation,
            ),
        )
        images = self.clients.compute.images
        return self.call.create(
            f"create image {name}",
            lambda: images.begin_create_or_update(s.resource_group, name, image).result(),
            lambda: images.get(s.resource_group, name),
            region=s.location,
        )

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace the image's tags (PATCH)."""
        from azure.mgmt.compute import models

        rg, images = self.settings.resource_group, self.clients.compute.images
        self.call(
            f"tag image {name}", lambda: images.begin_update(rg, name, models.ImageUpdate(tags=tags)).result()
        )

    def delete(self, name: str) -> None:
        rg = self.settings.resource_group
        self.call(f"delete image {name}", lambda: self.clients.compute.images.begin_delete(rg, name).result())
