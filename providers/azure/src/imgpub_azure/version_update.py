"""PATCH bodies for a gallery image version that exists: deprecation and new regions.

A version's PATCH is azure-mgmt-compute's GalleryImageVersionUpdate, whose `properties` need the
storage profile (a required member of GalleryImageVersionProperties): it is sent as the version has
it, writable members only (its source cannot change). The publishing profile carries only what
changes; members left out stay as they are (ARM merges a PATCH), so the version keeps its replica
counts, storage type and tags. `targetRegions`, when sent, is the whole list: the regions the version
has, as it has them, plus the new ones.

Deprecation on Azure is the version's `endOfLifeDate` (informational: VMs can still be made from it)
with `excludeFromLatest` (a VM asking for the definition's `latest` no longer gets this version), set
on the publishing profile and on every target region (a region's own setting wins over the profile's).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imgpub_azure.names import region_key

if TYPE_CHECKING:
    from azure.mgmt.compute.models import GalleryImageVersion

__all__ = ["deprecation", "end_of_life", "regions_update", "target_regions", "writable_storage"]


def _profile(version: GalleryImageVersion) -> Any:
    return version.properties.publishing_profile if version.properties else None


def target_regions(version: GalleryImageVersion) -> list[Any]:
    """The version's target regions as it has them (each a copy, every member kept)."""
    from azure.mgmt.compute import models

    profile = _profile(version)
    return [
        models.TargetRegion(copy.deepcopy(dict(r))) for r in (profile.target_regions or [] if profile else [])
    ]


def end_of_life(version: GalleryImageVersion) -> datetime | None:
    profile = _profile(version)
    value = profile.end_of_life_date if profile else None
    return value if isinstance(value, datetime) else None


def writable_storage(version: GalleryImageVersion) -> Any:
    """The version's storage profile with only what may be written (no read-only sizeInGB)."""
    from azure.mgmt.compute import models

    old = version.properties.storage_profile if version.properties else None
    storage = models.GalleryImageVersionStorageProfile()
    if old is not None and old.source is not None and old.source.id:
        storage.source = models.GalleryArtifactVersionFullSource(id=old.source.id)
    if old is not None and old.os_disk_image is not None:
        src = old.os_disk_image.source
        storage.os_disk_image = models.GalleryOSDiskImage(
            host_caching=old.os_disk_image.host_caching,
            source=models.GalleryDiskImageSource(
                id=src.id, uri=src.uri, storage_account_id=src.storage_account_id
            )
            if src is not None
            else None,
        )
    return storage


def _update(version: GalleryImageVersion, profile: Any) -> Any:
    from azure.mgmt.compute import models

    return models.GalleryImageVersionUpdate(
        properties=models.GalleryImageVersionProperties(
            publishing_profile=profile, storage_profile=writable_storage(version)
        )
    )


def deprecation(version: GalleryImageVersion, at: datetime) -> Any:
    """The PATCH that deprecates `version`: endOfLifeDate `at` (an earlier one is kept) and
    excludeFromLatest, on the profile and every region."""
    from azure.mgmt.compute import models

    regions = target_regions(version)
    for region in regions:
        region.exclude_from_latest = True
    earlier = end_of_life(version)
    when = earlier if earlier is not None and earlier <= at else at
    return _update(
        version,
        models.GalleryImageVersionPublishingProfile(
            target_regions=regions or None, end_of_life_date=when, exclude_from_latest=True
        ),
    )


def regions_update(version: GalleryImageVersion, new: list[Any]) -> Any:
    """The PATCH that replicates `version` to the regions of `new` (TargetRegion models) it lacks;
    a new region follows the version's own latest-exclusion (a deprecated version stays excluded)."""
    from azure.mgmt.compute import models

    regions = target_regions(version)
    have = {region_key(r.name) for r in regions}
    profile = _profile(version)
    excluded = bool(profile.exclude_from_latest) if profile else False
    for region in new:
        if region_key(region.name) not in have:
            region.exclude_from_latest = excluded or bool(region.exclude_from_latest)
            regions.append(region)
    return _update(version, models.GalleryImageVersionPublishingProfile(target_regions=regions))
