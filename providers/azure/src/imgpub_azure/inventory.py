"""What exists in Azure for one target (read once for a plan or a status), and what the gallery
definition must be for this image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgpub.provider import ImageInfo
from imgpub_azure.checks import Names, architecture, generation_for
from imgpub_azure.clients import AzureClients
from imgpub_azure.definition import Definitions, DefinitionSpec
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import GalleryImages
from imgpub_azure.managed_image import ManagedImages
from imgpub_azure.security import security_type_for
from imgpub_azure.settings import AzureSettings
from imgpub_azure.tags import definition_tags

__all__ = ["Found", "look", "spec_for"]


@dataclass
class Found:
    image: Any = None
    gallery: Any = None
    definition: Any = None
    version: Any = None


def look(clients: AzureClients, caller: Caller, settings: AzureSettings, names: Names) -> Found:
    """The managed image, gallery, definition and version this target publishes, as they are."""
    found = Found()
    if settings.managed_image:
        found.image = ManagedImages(clients, caller).find(names.image)
    gal = settings.gallery
    if gal is None or names.definition is None or names.version is None:
        return found
    gallery = GalleryImages(clients, caller, gal)
    found.gallery = gallery.find_gallery()
    if found.gallery is not None:
        found.definition = Definitions(clients, caller, gal).find(names.definition)
    if found.definition is not None:
        found.version = gallery.find_version(names.definition, names.version)
    return found


def spec_for(image: ImageInfo, settings: AzureSettings, names: Names) -> DefinitionSpec:
    gal = settings.gallery
    assert gal is not None and names.definition is not None
    generation = generation_for(image, settings)
    arch = architecture(image)
    features = dict(gal.features)
    security = security_type_for(image, settings)
    if security is not None:
        features["SecurityType"] = security
    return DefinitionSpec(
        name=names.definition,
        os_type=settings.os_type,
        os_state=settings.os_state,
        generation=generation,
        architecture=arch,
        publisher=gal.publisher,
        offer=gal.offer or names.definition,
        sku=gal.sku or f"{arch.lower()}-gen{generation[1:]}",
        features=features,
        description=gal.description,
        tags=definition_tags(image, settings.tags),
    )
