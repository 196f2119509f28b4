"""What is published for one Azure target, and how it drifts from the manifest: missing or failed
resources, another digest, a definition that differs, regions not (or badly) replicated, replicas
encrypted otherwise."""

from __future__ import annotations

from typing import Any

from imgpub.provider import Artifact, Context, ImageInfo, Status
from imgpub_azure.checks import names_for
from imgpub_azure.clients import AzureClients
from imgpub_azure.definition import definition_differences
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import GalleryImages, replication_states
from imgpub_azure.inventory import look, spec_for
from imgpub_azure.planner import missing_regions, running
from imgpub_azure.publisher import replication_warnings
from imgpub_azure.settings import AzureSettings
from imgpub_azure.states import failed_state
from imgpub_azure.tags import digest_of, identity_tags, missing_tags

__all__ = ["status_of"]


def _unusable(what: str, resource: Any) -> str | None:
    if failed := failed_state(resource):
        return f"{what} is in provisioningState {failed} (not usable)"
    if state := running(resource):
        return f"{what} is in provisioningState {state} (an operation on it is still running)"
    return None


def status_of(
    image: ImageInfo, settings: AzureSettings, ctx: Context, clients: AzureClients, caller: Caller
) -> Status:
    names = names_for(image, settings)
    status = Status(ctx.target, "azure")
    found = look(clients, caller, settings, names)
    drift = status.drift
    wanted = identity_tags(image, ctx.digest, settings.tags)
    if settings.managed_image:
        what = f"image {names.image}"
        if found.image is None:
            drift.append(f"{what} is missing")
        elif failure := _unusable(what, found.image):
            drift.append(failure)
        else:
            digest = digest_of(found.image)
            found_image = {"digest": digest, "name": names.image}
            status.artifacts.append(
                Artifact("image", str(found.image.id), settings.location, extra=found_image)
            )
            if digest != ctx.digest:
                drift.append(f"{what} has digest {digest}, expected {ctx.digest}")
            elif missing := missing_tags(found.image, wanted):
                drift.append(f"{what} lacks tags {', '.join(f'{k}={v}' for k, v in missing.items())}")
    gal = settings.gallery
    if gal is None or not names.definition or not names.version:
        return status
    dref = f"{gal.name}/{names.definition}"
    ref = f"{dref}/{names.version}"
    if found.gallery is not None and (failure := _unusable(f"gallery {gal.name}", found.gallery)):
        drift.append(failure)
    if found.definition is not None:
        if failure := _unusable(f"image definition {dref}", found.definition):
            drift.append(failure)
        elif diffs := definition_differences(found.definition, spec_for(image, settings, names)):
            drift.append(f"image definition {dref} differs from the manifest: {'; '.join(diffs)}")
    version = found.version
    if version is None:
        drift.append(f"gallery image version {ref} is missing")
        return status
    if failure := _unusable(f"gallery image version {ref}", version):
        drift.append(failure)
        return status
    digest = digest_of(version)
    states = replication_states(version)
    regions = {s.region: s.state for s in states}
    extra: dict[str, Any] = {"digest": digest, "regions": regions}
    status.artifacts.append(
        Artifact("gallery-image-version", str(version.id), settings.location, extra=extra)
    )
    if digest != ctx.digest:
        drift.append(f"gallery image version {ref} has digest {digest}, expected {ctx.digest}")
    elif missing := missing_tags(version, wanted):
        drift.append(
            f"gallery image version {ref} lacks tags {', '.join(f'{k}={v}' for k, v in missing.items())}"
        )
    for region in missing_regions(settings, version):
        drift.append(f"gallery image version {ref} is not replicated to {region}")
    drift.extend(replication_warnings(ref, states))
    gallery = GalleryImages(clients, caller, gal)
    drift.extend(f"gallery image version {ref}: {d}" for d in gallery.encryption_drift(version))
    return status
