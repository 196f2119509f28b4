"""Azure Compute Gallery: the gallery, the image definition, and image versions with replication."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imgpub.errors import ConfigurationError
from imgpub.progress import NullProgress, Progress
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.names import region_key, text
from imgpub_azure.settings import GallerySettings
from imgpub_azure.upload_source import UploadedVhd

if TYPE_CHECKING:
    from azure.mgmt.compute.models import GalleryImage, GalleryImageVersion

__all__ = ["DefinitionSpec", "GalleryImages", "RegionState", "replication_states"]

REPLICATION_POLL_SECONDS = 15.0
"""How often replication progress is read while a version is being created."""


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


@dataclass(frozen=True)
class RegionState:
    region: str
    state: str
    progress: int
    details: str


def replication_states(version: GalleryImageVersion) -> list[RegionState]:
    """Per-region replication state of a version read with expand=ReplicationStatus."""
    status = version.properties.replication_status if version.properties else None
    return [
        RegionState(s.region or "?", text(s.state or "Unknown"), int(s.progress or 0), s.details or "")
        for s in (status.summary or [] if status else [])
    ]


class GalleryImages:
    def __init__(self, clients: AzureClients, caller: Caller, gallery: GallerySettings) -> None:
        self.clients = clients
        self.call = caller
        self.gallery = gallery
        self.settings = clients.settings

    @property
    def _ops(self) -> Any:
        return self.clients.compute

    def find_gallery(self) -> Any:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(f"get gallery {g}", lambda: self._ops.galleries.get(rg, g))

    def create_gallery(self) -> None:
        from azure.mgmt.compute import models

        rg, g = self.settings.resource_group, self.gallery.name
        body = models.Gallery(
            location=self.settings.location,
            properties=models.GalleryProperties(description="Images published by imgpub"),
        )
        self.call(
            f"create gallery {g}", lambda: self._ops.galleries.begin_create_or_update(rg, g, body).result()
        )

    def find_definition(self, name: str) -> GalleryImage | None:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(
            f"get image definition {g}/{name}", lambda: self._ops.gallery_images.get(rg, g, name)
        )

    def create_definition(self, spec: DefinitionSpec) -> None:
        from azure.mgmt.compute import models

        rg, g = self.settings.resource_group, self.gallery.name
        body = models.GalleryImage(
            location=self.settings.location,
            properties=models.GalleryImageProperties(
                description=self.gallery.description,
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
        self.call(
            f"create image definition {g}/{spec.name}",
            lambda: self._ops.gallery_images.begin_create_or_update(rg, g, spec.name, body).result(),
        )

    def check_definition(self, existing: GalleryImage, spec: DefinitionSpec) -> None:
        """An existing definition must match the image: these fields cannot change."""
        props = existing.properties
        have = {
            "os_type": text(props.os_type) if props else None,
            "os_state": text(props.os_state) if props else None,
            "hyper_v_generation": text(props.hyper_v_generation or "V1") if props else None,
            "architecture": text(props.architecture or "x64") if props else None,
        }
        want = {
            "os_type": spec.os_type,
            "os_state": spec.os_state,
            "hyper_v_generation": spec.generation,
            "architecture": spec.architecture,
        }
        wrong = [
            f"{k} is {have[k]}, the image needs {v}"
            for k, v in want.items()
            if (have[k] or "").lower() != v.lower()
        ]
        if wrong:
            raise ConfigurationError(
                f"target {self.call.target}: gallery image definition {self.gallery.name}/{spec.name}: "
                + "; ".join(wrong)
                + " (use another gallery.image_definition)"
            )

    def find_version(self, definition: str, version: str) -> GalleryImageVersion | None:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(
            f"get image version {g}/{definition}/{version}",
            lambda: self._ops.gallery_image_versions.get(
                rg, g, definition, version, expand="ReplicationStatus"
            ),
        )

    def version_body(self, source: UploadedVhd | str, tags: dict[str, str]) -> Any:
        """A version from a managed image id (str) or straight from the uploaded VHD."""
        from azure.mgmt.compute import models

        gal, s = self.gallery, self.settings
        regions = gal.target_regions or []
        target_regions = [
            models.TargetRegion(
                name=r.name,
                regional_replica_count=r.replica_count or gal.replica_count,
                storage_account_type=r.storage_account_type or gal.storage_account_type,
                exclude_from_latest=gal.exclude_from_latest,
            )
            for r in regions
        ] or [
            models.TargetRegion(
                name=s.location,
                regional_replica_count=gal.replica_count,
                storage_account_type=gal.storage_account_type,
                exclude_from_latest=gal.exclude_from_latest,
            )
        ]
        if isinstance(source, str):
            storage = models.GalleryImageVersionStorageProfile(
                source=models.GalleryArtifactVersionFullSource(id=source)
            )
        elif source.kind == "blob":
            storage = models.GalleryImageVersionStorageProfile(
                os_disk_image=models.GalleryOSDiskImage(
                    host_caching="ReadOnly",
                    source=models.GalleryDiskImageSource(
                        uri=source.uri, storage_account_id=source.storage_account_id
                    ),
                )
            )
        else:
            storage = models.GalleryImageVersionStorageProfile(
                os_disk_image=models.GalleryOSDiskImage(
                    host_caching="ReadOnly", source=models.GalleryDiskImageSource(id=source.uri)
                )
            )
        end_of_life = (
            datetime(gal.end_of_life.year, gal.end_of_life.month, gal.end_of_life.day, tzinfo=UTC)
            if gal.end_of_life
            else None
        )
        return models.GalleryImageVersion(
            location=s.location,
            tags=tags,
            properties=models.GalleryImageVersionProperties(
                publishing_profile=models.GalleryImageVersionPublishingProfile(
                    target_regions=target_regions,
                    replica_count=gal.replica_count,
                    storage_account_type=gal.storage_account_type,
                    exclude_from_latest=gal.exclude_from_latest,
                    end_of_life_date=end_of_life,
                ),
                storage_profile=storage,
            ),
        )

    def region_update_body(self, existing: GalleryImageVersion, tags: dict[str, str]) -> Any:
        """The version as it is (same source), with this manifest's regions and publishing settings."""
        body = self.version_body("unused", tags)
        body.properties.storage_profile = existing.properties.storage_profile if existing.properties else None
        return body

    def put_version(
        self, definition: str, version: str, body: Any, progress: Progress | None = None
    ) -> tuple[GalleryImageVersion, list[RegionState]]:
        """Create (or update the regions of) a version, following replication; returns the final
        version and its per-region states."""
        rg, g = self.settings.resource_group, self.gallery.name
        progress = progress or NullProgress()
        ops = self._ops.gallery_image_versions

        def run() -> tuple[GalleryImageVersion, list[RegionState]]:
            poller = ops.begin_create_or_update(rg, g, definition, version, body)
            self._follow(
                poller.done,
                poller.wait,
                lambda: ops.get(rg, g, definition, version, expand="ReplicationStatus"),
                progress,
            )
            result = poller.result()
            final = ops.get(rg, g, definition, version, expand="ReplicationStatus")
            return result if final is None else final, replication_states(final)

        return self.call(f"create image version {g}/{definition}/{version}", run)

    def _follow(
        self,
        done: Callable[[], bool],
        wait: Callable[..., None],
        read: Callable[[], GalleryImageVersion],
        progress: Progress,
    ) -> None:
        """Report replication progress per region until the operation finishes."""
        reported: dict[str, int] = {}
        total = max(1, len(self.gallery.target_regions) or 1) * 100
        progress.stage("replicate", total, unit="%")
        interval = self.clients.polling_interval(REPLICATION_POLL_SECONDS)
        while not done():
            wait(timeout=interval)
            for state in replication_states(read()):
                key = region_key(state.region)
                step = max(0, state.progress - reported.get(key, 0))
                if step:
                    progress.advance(step)
                    reported[key] = state.progress

    def delete_version(self, definition: str, version: str) -> None:
        rg, g = self.settings.resource_group, self.gallery.name
        self.call(
            f"delete image version {g}/{definition}/{version}",
            lambda: self._ops.gallery_image_versions.begin_delete(rg, g, definition, version).result(),
        )
