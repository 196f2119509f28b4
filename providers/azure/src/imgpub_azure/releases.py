"""One version of the image on an Azure target as the core sees it (imgpub.provider.Release): its
state, age, regions and drift, from what the catalog found (catalog.Parts).

* state: "deleting" when a delete stopped half-way (an artifact in provisioningState Deleting, a
  managed image imgpub marked `imgpub:deleting` before deleting its version, or upload leftovers
  with no image left); "failed" (an image in provisioningState Failed or Canceled); "pending" (one
  still being made, Creating / Updating, or only an upload a run may still be writing);
  "deprecated" when every image is: a gallery version whose endOfLifeDate is at or before now and
  that is excluded from `latest`, a managed image tagged `imgpub:deprecated` (managed images have no
  deprecation of their own: the tag is imgpub's record, so the delete phase can follow); else
  "active".
* created: a gallery version's `publishingProfile.publishedDate` (the Compute Gallery's own record
  of when the version was published, returned by every read and kept for the version's life; ARM's
  `systemData` is optional metadata that a resource provider may leave out), else ARM's
  `systemData.createdAt`, which is all a managed image has; an upload disk's `timeCreated`; a blob's
  creation time. The release is as old as its oldest piece.
* regions: where each gallery version is replicated (its target regions, less those whose
  replication failed) and each managed image's location, as region keys (`westeurope`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imgpub.identity import TAG_MANAGED
from imgpub.provider import Artifact, Release, ReleaseState
from imgpub_azure.catalog import Parts
from imgpub_azure.gallery import replication_states
from imgpub_azure.names import region_key
from imgpub_azure.settings import AzureSettings
from imgpub_azure.states import created_at, failed_state, state_of
from imgpub_azure.tags import DELETING_TAG, DEPRECATED_TAG, digest_of, missing_tags, tag_of
from imgpub_azure.version_update import end_of_life
from imgpub_azure.writes import IN_PROGRESS

__all__ = [
    "is_deprecated",
    "regions_of",
    "release_of",
    "wanted_tags",
]


def is_version(resource: Any) -> bool:
    return str(getattr(resource, "type", "") or "").lower().endswith("/versions")


def _ref(resource: Any) -> str:
    kind = "gallery image version" if is_version(resource) else "image"
    return f"{kind} {_short(resource)}"


def _short(resource: Any) -> str:
    """`gallery/definition/version` for a version, the name for an image."""
    rid = str(getattr(resource, "id", "") or "")
    if is_version(resource) and "/galleries/" in rid.lower():
        parts = rid.split("/")
        return "/".join(parts[-5::2])
    return str(resource.name)


def is_deprecated(resource: Any, now: datetime) -> bool:
    """A gallery version past its end of life and excluded from `latest`; a managed image that
    imgpub marked deprecated."""
    if not is_version(resource):
        return tag_of(resource, DEPRECATED_TAG) is not None
    profile = resource.properties.publishing_profile if resource.properties else None
    eol = end_of_life(resource)
    return eol is not None and eol <= now and bool(profile and profile.exclude_from_latest)


def regions_of(version: Any) -> list[str]:
    """Where a gallery version is replicated: its target regions, less those whose replication
    failed (as region keys)."""
    profile = version.properties.publishing_profile if version.properties else None
    failed = {region_key(s.region) for s in replication_states(version) if s.state.lower() == "failed"}
    return [
        key
        for r in (profile.target_regions or [] if profile else [])
        if (key := region_key(r.name)) not in failed
    ]


def _created(resource: Any) -> datetime | None:
    if is_version(resource):
        profile = resource.properties.publishing_profile if resource.properties else None
        published = profile.published_date if profile else None
        if isinstance(published, datetime):
            return published
    return created_at(resource)


def _state(parts: Parts, now: datetime) -> ReleaseState:
    made = parts.made
    states = [state_of(r).lower() for r in made]
    if "deleting" in states or any(tag_of(i, DELETING_TAG) is not None for i in parts.images):
        return "deleting"
    if not made:
        return "pending" if any(left.busy for left in parts.leftovers) else "deleting"
    if any(failed_state(r) for r in made):
        return "failed"
    if any(s in IN_PROGRESS for s in states):
        return "pending"
    if all(is_deprecated(r, now) for r in made):
        return "deprecated"
    return "active"


def wanted_tags(settings: AzureSettings) -> dict[str, str]:
    """The tags every image of every version should carry that imgpub knows without the manifest's
    image section: the target's `tags` and imgpub's managed-by tag (labels belong to each version's
    own manifest, so they are not checked here)."""
    return {**settings.tags, TAG_MANAGED: "imgpub"}


def _drift(parts: Parts, settings: AzureSettings, now: datetime) -> list[str]:
    out = []
    wanted = wanted_tags(settings)
    for resource in parts.made:
        if missing := missing_tags(resource, wanted):
            out.append(f"{_ref(resource)} lacks tags {', '.join(f'{k}={v}' for k, v in missing.items())}")
    deprecated = [r for r in parts.made if is_deprecated(r, now)]
    if deprecated and len(deprecated) < len(parts.made):
        out.extend(
            f"{_ref(r)} is not deprecated, {_ref(deprecated[0])} is"
            for r in parts.made
            if r not in deprecated
        )
    return out


def release_of(parts: Parts, settings: AzureSettings, now: datetime) -> Release:
    state = _state(parts, now)
    times = [t for r in parts.made if (t := _created(r)) is not None]
    times += [left.created for left in parts.leftovers if left.created is not None]
    regions: dict[str | None, None] = {}
    artifacts = []
    for version in parts.versions:
        where = regions_of(version)
        regions.update(dict.fromkeys(where))
        extra = {"digest": digest_of(version), "regions": where, "state": state_of(version)}
        artifacts.append(Artifact("gallery-image-version", str(version.id), version.location, extra=extra))
    for image in parts.images:
        regions[region_key(image.location)] = None
        extra = {"digest": digest_of(image), "state": state_of(image)}
        artifacts.append(Artifact("image", str(image.id), region_key(image.location), extra=extra))
    for left in parts.leftovers:
        if not parts.made and left.location:
            regions[region_key(left.location)] = None
        artifacts.append(Artifact(left.kind, left.id, left.location, extra={"busy": left.busy}))
    digest = next((d for r in parts.made if (d := digest_of(r))), None)
    return Release(
        parts.version,
        state,
        min(times) if times else None,
        regions=tuple(regions),
        digest=digest,
        artifacts=tuple(artifacts),
        drift=tuple(_drift(parts, settings, now)) if state != "deleting" else (),
    )
