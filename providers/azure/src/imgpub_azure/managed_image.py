"""Managed images (Microsoft.Compute/images) made from an uploaded VHD blob or disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imgpub.identity import TAG_DIGEST
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.tags import digest_of
from imgpub_azure.upload_source import UploadedVhd
from imgpub_azure.writes import Writes

if TYPE_CHECKING:
    from azure.mgmt.compute.models import Image

__all__ = ["ManagedImages"]


class ManagedImages:
    def __init__(self, clients: AzureClients, caller: Caller) -> None:
        self.clients = clients
        self.call = caller
        self.settings = clients.settings
        self.writes = Writes(caller, clients.polling_interval(15.0))

    def find(self, name: str) -> Image | None:
        rg = self.settings.resource_group
        return self.call.find(f"get image {name}", lambda: self.clients.compute.images.get(rg, name))

    def create(self, name: str, source: UploadedVhd, generation: str, tags: dict[str, str]) -> Image:
        """Create the image and wait until Resource Manager shows it (it is read right after). One
        that exists with this digest (a lost reply's, or another run's) is adopted."""
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
        images, digest = self.clients.compute.images, tags[TAG_DIGEST]

        def judge(found: Image) -> bool | str:
            theirs = digest_of(found)
            return theirs == digest or (
                f"image {name} was made meanwhile with digest {theirs or '(none)'} (by another run?), "
                f"this image is {digest}"
            )

        return self.writes.put(
            f"image {name}",
            lambda: images.get(s.resource_group, name),
            lambda: images.begin_create_or_update(s.resource_group, name, image).result(),
            judge,
            region=s.location,
        )

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace the image's tags (PATCH)."""
        from azure.mgmt.compute import models

        rg, images = self.settings.resource_group, self.clients.compute.images
        self.call(
            f"tag image {name}", lambda: images.begin_update(rg, name, models.ImageUpdate(tags=tags)).result()
        )

    def update_tags(
        self, name: str, tags: Callable[[Image], dict[str, str]], done: Callable[[Image], bool]
    ) -> Image | None:
        """Set the image's tags to `tags(it)` (a PATCH: the whole set) unless `done(it)` already
        holds; the image as it is afterwards, None when it does not exist."""
        from azure.mgmt.compute import models

        rg, images = self.settings.resource_group, self.clients.compute.images
        return self.writes.update(
            f"image {name}",
            lambda: images.get(rg, name),
            lambda found: images.begin_update(rg, name, models.ImageUpdate(tags=tags(found))).result(),
            done,
        )

    def delete(self, name: str, doomed: Callable[[Image], bool] | None = None) -> bool:
        """Delete the image (while `doomed(it)` holds, when given); False when it was left alone."""
        rg, images = self.settings.resource_group, self.clients.compute.images
        return self.writes.delete(
            f"image {name}",
            lambda: images.begin_delete(rg, name).result(),
            read=lambda: images.get(rg, name),
            doomed=doomed,
        )
