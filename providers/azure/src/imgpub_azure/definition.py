"""Gallery image definitions: what one must be for this image, how an existing one differs, and
making and removing them.

A definition cannot change once made (OS type and state, Hyper-V generation, architecture, the
publisher/offer/sku identifier, and its features such as SecurityType): one that differs from the
manifest is drift in `status` and a conflict in `plan`; the way on is a new definition name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.names import text
from imgpub_azure.settings import GallerySettings
from imgpub_azure.writes import Writes

if TYPE_CHECKING:
    from azure.mgmt.compute.models import GalleryImage

__all__ = ["DefinitionSpec", "Definitions", "definition_differences"]


@dataclass(frozen=True)
class DefinitionSpec:
    """What an image definition must be for this image (fixed once the definition exists)."""

    name: str
    os_type: str
    os_state: str
    generation: str
    architecture: str
    publisher: str
    offer: str
    sku: str
    features: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _norm(value: object) -> str:
    return text(value).replace(" ", "").lower()


def definition_differences(existing: GalleryImage, spec: DefinitionSpec) -> list[str]:
    """How `existing` differs from `spec`, one phrase each ('hyperVGeneration is V1, the manifest
    wants V2'). Features the manifest does not set are not compared (Azure adds its own defaults)."""
    props = existing.properties
    ident = props.identifier if props else None
    have: dict[str, object] = {
        "osType": props.os_type if props else None,
        "osState": props.os_state if props else None,
        "hyperVGeneration": (props.hyper_v_generation if props else None) or "V1",
        "architecture": (props.architecture if props else None) or "x64",
        "publisher": ident.publisher if ident else None,
        "offer": ident.offer if ident else None,
        "sku": ident.sku if ident else None,
    }
    want = {
        "osType": spec.os_type,
        "osState": spec.os_state,
        "hyperVGeneration": spec.generation,
        "architecture": spec.architecture,
        "publisher": spec.publisher,
        "offer": spec.offer,
        "sku": spec.sku,
    }
    features = {_norm(f.name): text(f.value) for f in (props.features or [] if props else [])}
    for name, value in spec.features.items():
        have[f"feature {name}"] = features.get(_norm(name))
        want[f"feature {name}"] = value
    return [
        f"{key} is {text(have[key]) or '(not set)'}, the manifest wants {value}"
        for key, value in want.items()
        if _norm(have[key]) != _norm(value)
    ]


class Definitions:
    def __init__(self, clients: AzureClients, caller: Caller, gallery: GallerySettings) -> None:
        self.clients = clients
        self.call = caller
        self.gallery = gallery
        self.settings = clients.settings
        self.writes = Writes(caller, clients.polling_interval(15.0))

    @property
    def _ops(self) -> Any:
        return self.clients.compute.gallery_images

    def find(self, name: str) -> GalleryImage | None:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(f"get image definition {g}/{name}", lambda: self._ops.get(rg, g, name))

    def create(self, spec: DefinitionSpec) -> None:
        """Create the definition and wait until Resource Manager shows it (versions go in next). One
        that exists as the spec wants (a lost reply's, or another run's) is adopted."""
        from azure.mgmt.compute import models

        rg, g = self.settings.resource_group, self.gallery.name
        body = models.GalleryImage(
            location=self.settings.location,
            tags=spec.tags or None,
            properties=models.GalleryImageProperties(
                description=spec.description,
                os_type=spec.os_type,
                os_state=spec.os_state,
                hyper_v_generation=spec.generation,
                architecture=spec.architecture,
                identifier=models.GalleryImageIdentifier(
                    publisher=spec.publisher, offer=spec.offer, sku=spec.sku
                ),
                features=[models.GalleryImageFeature(name=k, value=v) for k, v in spec.features.items()]
                or None,
            ),
        )

        def judge(found: GalleryImage) -> bool | str:
            diffs = definition_differences(found, spec)
            return not diffs or f"image definition {g}/{spec.name} was made meanwhile: {'; '.join(diffs)}"

        self.writes.put(
            f"image definition {g}/{spec.name}",
            lambda: self._ops.get(rg, g, spec.name),
            lambda: self._ops.begin_create_or_update(rg, g, spec.name, body).result(),
            judge,
        )

    def version_names(self, name: str) -> list[str]:
        """The versions the definition holds (it cannot be deleted while it holds any)."""
        rg, g = self.settings.resource_group, self.gallery.name
        ops = self.clients.compute.gallery_image_versions
        return self.call(
            f"list image versions of {g}/{name}",
            lambda: sorted(str(v.name) for v in ops.list_by_gallery_image(rg, g, name)),
        )

    def delete(self, name: str, doomed: Callable[[GalleryImage], bool] | None = None) -> bool:
        """Delete the definition (while `doomed(it)` holds, when given); False when left alone."""
        rg, g = self.settings.resource_group, self.gallery.name
        return self.writes.delete(
            f"image definition {g}/{name}",
            lambda: self._ops.begin_delete(rg, g, name).result(),
            read=lambda: self._ops.get(rg, g, name),
            doomed=doomed,
        )
