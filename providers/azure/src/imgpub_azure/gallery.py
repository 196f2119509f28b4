"""Azure Compute Gallery: the gallery, and image versions with their replication and encryption."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imgpub.identity import TAG_DIGEST
from imgpub.progress import NullProgress, Progress
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.names import region_key, text
from imgpub_azure.settings import AzureSettings, GallerySettings
from imgpub_azure.tags import digest_of
from imgpub_azure.upload_source import UploadedVhd
from imgpub_azure.version_update import writable_storage
from imgpub_azure.writes import Writes

if TYPE_CHECKING:
    from azure.mgmt.compute.models import Gallery, GalleryImageVersion

__all__ = ["GalleryImages", "RegionState", "replication_states", "wanted_regions"]

REPLICATION_POLL_SECONDS = 15.0
"""How often replication progress is read while a version is being created."""


@dataclass(frozen=True)
class RegionState:
    region: str
    state: str
    progress: int
    details: str


def wanted_regions(settings: AzureSettings) -> list[str]:
    """Where the target's gallery versions go: the gallery's target regions, else its location."""
    gal = settings.gallery
    return ([r.name for r in gal.target_regions] if gal else []) or [settings.location]


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
        self.writes = Writes(caller, clients.polling_interval(15.0))

    @property
    def _ops(self) -> Any:
        return self.clients.compute

    def find_gallery(self) -> Gallery | None:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(f"get gallery {g}", lambda: self._ops.galleries.get(rg, g))

    def create_gallery(self, tags: dict[str, str]) -> None:
        """Create (or put again, when Failed) the gallery, and wait until Resource Manager shows it."""
        from azure.mgmt.compute import models

        rg, g = self.settings.resource_group, self.gallery.name
        body = models.Gallery(
            location=self.settings.location,
            tags=tags or None,
            properties=models.GalleryProperties(description="Images published by imgpub"),
        )
        self.writes.put(
            f"gallery {g}",
            lambda: self._ops.galleries.get(rg, g),
            lambda: self._ops.galleries.begin_create_or_update(rg, g, body).result(),
            lambda found: True,  # any usable gallery of this name serves (a Failed one is put again)
        )

    def find_version(self, definition: str, version: str) -> GalleryImageVersion | None:
        rg, g = self.settings.resource_group, self.gallery.name
        return self.call.find(
            f"get image version {g}/{definition}/{version}",
            lambda: self._ops.gallery_image_versions.get(
                rg, g, definition, version, expand="ReplicationStatus"
            ),
        )

    def encryption_set_for(self, region: str) -> str | None:
        """The disk encryption set of a region's replicas: the region's own, else the target's in
        the target's location, else none (platform-managed keys)."""
        for r in self.gallery.target_regions:
            if region_key(r.name) == region_key(region) and r.disk_encryption_set:
                return r.disk_encryption_set
        if region_key(region) == region_key(self.settings.location):
            return self.settings.disk_encryption_set
        return None

    def wanted_regions(self) -> list[str]:
        return wanted_regions(self.settings)

    def _target_regions(self, names: list[str] | None = None) -> list[Any]:
        """TargetRegion models for `names` (default: every wanted region), as the manifest sets them."""
        from azure.mgmt.compute import models

        gal = self.gallery
        per_region = {region_key(r.name): r for r in gal.target_regions}
        out = []
        for name in self.wanted_regions() if names is None else names:
            r = per_region.get(region_key(name))
            des = self.encryption_set_for(name)
            out.append(
                models.TargetRegion(
                    name=name,
                    regional_replica_count=(r.replica_count if r else None) or gal.replica_count,
                    storage_account_type=(r.storage_account_type if r else None) or gal.storage_account_type,
                    exclude_from_latest=gal.exclude_from_latest,
                    encryption=models.EncryptionImages(
                        os_disk_image=models.OSDiskImageEncryption(disk_encryption_set_id=des)
                    )
                    if des
                    else None,
                )
            )
        return out

    def version_body(self, source: UploadedVhd | str, tags: dict[str, str]) -> Any:
        """A version from a managed image id (str) or straight from the uploaded VHD."""
        from azure.mgmt.compute import models

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
        return self._version(storage, tags)

    def _version(self, storage: Any, tags: dict[str, str]) -> Any:
        from azure.mgmt.compute import models

        gal = self.gallery
        end_of_life = (
            datetime(gal.end_of_life.year, gal.end_of_life.month, gal.end_of_life.day, tzinfo=UTC)
            if gal.end_of_life
            else None
        )
        return models.GalleryImageVersion(
            location=self.settings.location,
            tags=tags,
            properties=models.GalleryImageVersionProperties(
                publishing_profile=models.GalleryImageVersionPublishingProfile(
                    target_regions=self._target_regions(),
                    replica_count=gal.replica_count,
                    storage_account_type=gal.storage_account_type,
                    exclude_from_latest=gal.exclude_from_latest,
                    end_of_life_date=end_of_life,
                ),
                storage_profile=storage,
            ),
        )

    def target_regions_for(self, names: list[str]) -> list[Any]:
        """TargetRegion models for regions to add to a version (replica count, storage type,
        encryption as the manifest sets them)."""
        return self._target_regions(names)

    def region_update_body(self, existing: GalleryImageVersion, tags: dict[str, str]) -> Any:
        """The version as it is (the same source: only what may be written, no read-only member),
        with this manifest's regions and publishing settings."""
        return self._version(writable_storage(existing), tags)

    def encryption_drift(self, version: GalleryImageVersion) -> list[str]:
        """Regions whose replicas are encrypted otherwise than the manifest says."""
        profile = version.properties.publishing_profile if version.properties else None
        out = []
        for region in profile.target_regions or [] if profile else []:
            os_disk = region.encryption.os_disk_image if region.encryption else None
            have = (os_disk.disk_encryption_set_id if os_disk else None) or None
            want = self.encryption_set_for(region.name)
            if (have or "").lower() != (want or "").lower():
                out.append(
                    f"region {region.name} is encrypted with {have or 'platform-managed keys'}, "
                    f"the manifest says {want or 'platform-managed keys'}"
                )
        return out

    def put_version(
        self, definition: str, version: str, body: Any, progress: Progress | None = None
    ) -> tuple[GalleryImageVersion, list[RegionState]]:
        """Create (or update the regions of) a version, following replication; returns the final
        version and its per-region states. A version with this digest and every wanted region (a
        lost reply's, or another run's) is adopted; one being written is waited for first."""
        rg, g = self.settings.resource_group, self.gallery.name
        progress = progress or NullProgress()
        ops = self._ops.gallery_image_versions
        ref = f"{g}/{definition}/{version}"

        def read() -> GalleryImageVersion:
            found: GalleryImageVersion = ops.get(rg, g, definition, version, expand="ReplicationStatus")
            return found

        def run() -> object:
            poller = ops.begin_create_or_update(rg, g, definition, version, body)
            self._follow(
                poller.done, poller.wait, lambda: self.call.find(f"get image version {ref}", read), progress
            )
            return poller.result()

        digest = (body.tags or {}).get(TAG_DIGEST)
        wanted = {region_key(r.name) for r in body.properties.publishing_profile.target_regions or []}

        def judge(found: GalleryImageVersion) -> bool | str:
            theirs = digest_of(found)
            if theirs != digest:
                return (
                    f"image version {ref} was made meanwhile with digest {theirs or '(none)'} "
                    f"(by another run?), this image is {digest}"
                )
            profile = found.properties.publishing_profile if found.properties else None
            have = {region_key(r.name) for r in (profile.target_regions or [] if profile else [])}
            return wanted <= have

        final = self.writes.put(f"image version {ref}", read, run, judge)
        return final, replication_states(final)

    def _follow(
        self,
        done: Callable[[], bool],
        wait: Callable[..., None],
        read: Callable[[], GalleryImageVersion | None],
        progress: Progress,
    ) -> None:
        """Report replication progress per region until the operation finishes."""
        reported: dict[str, int] = {}
        total = max(1, len(self.gallery.target_regions) or 1) * 100
        progress.stage("replicate", total, unit="%")
        interval = self.clients.polling_interval(REPLICATION_POLL_SECONDS)
        while not done():
            wait(timeout=interval)
            current = read()  # None: not readable yet (Resource Manager is eventually consistent)
            for state in replication_states(current) if current is not None else []:
                key = region_key(state.region)
                step = max(0, state.progress - reported.get(key, 0))
                if step:
                    progress.advance(step)
                    reported[key] = state.progress

    def set_version_tags(self, definition: str, version: str, tags: dict[str, str]) -> None:
        """Replace the version's tags (PATCH)."""
        from azure.mgmt.compute import models

        rg, g = self.settings.resource_group, self.gallery.name
        body = models.GalleryImageVersionUpdate(tags=tags)
        self.call(
            f"tag image version {g}/{definition}/{version}",
            lambda: self._ops.gallery_image_versions.begin_update(rg, g, definition, version, body).result(),
        )

    def update_version(
        self,
        definition: str,
        version: str,
        body: Callable[[GalleryImageVersion], Any],
        done: Callable[[GalleryImageVersion], bool],
    ) -> GalleryImageVersion | None:
        """PATCH the version with `body(it)` (a GalleryImageVersionUpdate made from it as just read)
        unless `done(it)` already holds, following the operation; the version as it is afterwards
        (read with its replication status), None when it does not exist."""
        rg, g, ops = self.settings.resource_group, self.gallery.name, self._ops.gallery_image_versions
        return self.writes.update(
            f"image version {g}/{definition}/{version}",
            lambda: ops.get(rg, g, definition, version, expand="ReplicationStatus"),
            lambda found: ops.begin_update(rg, g, definition, version, body(found)).result(),
            done,
        )

    def delete_version(
        self, definition: str, version: str, doomed: Callable[[GalleryImageVersion], bool] | None = None
    ) -> bool:
        """Delete the version (while `doomed(it)` holds, when given); False when it was left alone."""
        rg, g, ops = self.settings.resource_group, self.gallery.name, self._ops.gallery_image_versions
        return self.writes.delete(
            f"image version {g}/{definition}/{version}",
            lambda: ops.begin_delete(rg, g, definition, version).result(),
            read=lambda: ops.get(rg, g, definition, version),
            doomed=doomed,
        )
