"""Every version of one image on an Azure target, found by imgpub's tags, never by name alone.

* gallery image versions in the target's definition (`gallery.image_definition`, default the image
  name made Azure-safe), listed page by page, that carry `imgpub:name` = this image and an
  `imgpub:version`; each is then read with its replication status;
* managed images in the resource group with the same tags;
* their upload leftovers (leftovers.py).

A resource named like one of ours without those tags, or tagged for another image, is not listed,
so nothing afterwards can touch it. The pieces are grouped by the `imgpub:version` tag (the
manifest's image.version, which the gallery version's own name may differ from).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imgpub.identity import TAG_VERSION
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import GalleryImages
from imgpub_azure.leftovers import Leftover, Leftovers
from imgpub_azure.names import default_definition
from imgpub_azure.settings import AzureSettings
from imgpub_azure.tags import belongs_to, digest_of, tag_of

__all__ = ["Catalog", "Parts"]


@dataclass
class Parts:
    """What Azure holds of one version of the image on this target."""

    version: str
    versions: list[Any] = field(default_factory=list)
    """Gallery image versions (read with their replication status)."""
    images: list[Any] = field(default_factory=list)
    """Managed images."""
    leftovers: list[Leftover] = field(default_factory=list)

    @property
    def made(self) -> list[Any]:
        """The images themselves: gallery versions and managed images."""
        return [*self.versions, *self.images]


class Catalog:
    def __init__(
        self,
        clients: AzureClients,
        caller: Caller,
        settings: AzureSettings,
        name: str,
        now: Callable[[], datetime],
    ) -> None:
        self.clients, self.call, self.settings, self.name = clients, caller, settings, name
        self.leftovers = Leftovers(clients, caller, now)

    @property
    def definition(self) -> str | None:
        gal = self.settings.gallery
        return None if gal is None else gal.image_definition or default_definition(self.name)

    def gallery(self) -> GalleryImages | None:
        gal = self.settings.gallery
        return None if gal is None else GalleryImages(self.clients, self.call, gal)

    def gallery_versions(self) -> list[Any]:
        """This image's versions in the target's definition (none when the gallery or the definition
        does not exist), each as a read with its replication status shows it."""
        gallery, definition = self.gallery(), self.definition
        if gallery is None or definition is None:
            return []
        rg, g = self.settings.resource_group, gallery.gallery.name
        ops = self.clients.compute.gallery_image_versions
        listed = self.call.find(
            f"list image versions of {g}/{definition}",
            lambda: list(ops.list_by_gallery_image(rg, g, definition)),
        )
        out = []
        for version in listed or []:
            if belongs_to(version, self.name):
                found = gallery.find_version(definition, str(version.name))
                if found is not None and belongs_to(found, self.name):
                    out.append(found)
        return out

    def managed_images(self) -> list[Any]:
        rg = self.settings.resource_group
        images = self.clients.compute.images
        listed = self.call.find(
            f"list images in resource group {rg}", lambda: list(images.list_by_resource_group(rg))
        )
        return [image for image in listed or [] if belongs_to(image, self.name)]

    def parts(self) -> dict[str, Parts]:
        """Every version of the image on this target, by version."""
        out: dict[str, Parts] = {}

        def of(resource: Any) -> Parts:
            version = str(tag_of(resource, TAG_VERSION))
            return out.setdefault(version, Parts(version))

        for version in self.gallery_versions():
            of(version).versions.append(version)
        for image in self.managed_images():
            of(image).images.append(image)
        digests = {
            digest: parts.version
            for parts in out.values()
            for resource in parts.made
            if (digest := digest_of(resource))
        }
        for leftover in self.leftovers.find(self.name, digests):
            out.setdefault(leftover.version, Parts(leftover.version)).leftovers.append(leftover)
        return out

    def one(self, version: str) -> Parts:
        """One version as it is now (read again before it is changed)."""
        return self.parts().get(version) or Parts(version)
