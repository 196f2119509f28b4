"""Retiring one version: images.deprecate (state DEPRECATED, pointing to the replacement version's
image), or images.delete and then the version's leftover upload objects.

Safe to repeat, and after a stop at any point:
* each image is read again first and touched only while it still carries this version's labels;
* an image deprecated already (DEPRECATED, OBSOLETE or DELETED) is left as it is;
* images.deprecate and images.delete carry a requestId their retries reuse (a lost reply is not
  acted on twice); a delete that finds the image gone is done, one GCE is deleting already (this
  run's stopped delete, or another run's under way: resourceNotReady) is left to it;
* the images go first, then the objects: a stop in between leaves only objects, which `releases`
  lists as "deleting" and the next prune deletes (each with the generation it was listed with, so
  an object uploaded again since is left).
Failures do not stop the other artifacts of the version: they are raised together at the end.
"""

from __future__ import annotations

from imgpub.errors import CloudError
from imgpub.identity import LABEL_NAME, LABEL_VERSION, label_safe
from imgpub.provider import Context, Release, RetireAction
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.image import GceImages
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.survey import carried_version, is_deprecated, still_ours
from imgpub_gcp.uploads import delete_object, from_artifact, is_upload

__all__ = ["replacement_link", "retire"]

READY = "READY"
DELETING = "DELETING"
NOT_READY = "resourceNotReady"


def retire(
    clients: GcpClients,
    settings: GcpSettings,
    name: str,
    release: Release,
    action: RetireAction,
    ctx: Context,
    replacement: str | None,
) -> list[str]:
    images = GceImages(clients, settings, ctx.target, ctx.retry, ctx.progress)
    if action == "deprecate":
        return _deprecate(images, name, release, ctx, replacement)
    return _delete(clients, images, name, release, ctx)


def replacement_link(images: GceImages, name: str, version: str) -> tuple[str, str] | None:
    """(self link, image name) of the version's READY, active image, found by its labels."""
    found = images.find({LABEL_NAME: label_safe(name), LABEL_VERSION: label_safe(version)})
    for image in found:
        carried = carried_version(image, name)
        usable = image.status == READY and not is_deprecated(image)
        if carried is not None and carried[0] == version and usable:
            return image.self_link, image.name
    return None


def _deprecate(
    images: GceImages, name: str, release: Release, ctx: Context, replacement: str | None
) -> list[str]:
    targets = []
    for artifact in release.artifacts:
        if artifact.kind != "gce-image":
            continue
        found = still_ours(images, artifact.id, name, release.version)
        if found is not None and not is_deprecated(found):
            targets.append(found)
    if not targets:
        return []
    link = replacement_link(images, name, replacement) if replacement else None
    if link is not None:
        pointer = f"replacement: {link[1]}"
    elif replacement:
        pointer = f"no replacement: version {replacement} has no READY active image"
    else:
        pointer = "no replacement"
    done = []
    for found in targets:
        ctx.progress.stage(f"deprecate {found.name}")
        images.deprecate(found.name, link[0] if link else None, ctx.now())
        done.append(f"deprecated image {found.name} ({pointer})")
    return done


def _delete(clients: GcpClients, images: GceImages, name: str, release: Release, ctx: Context) -> list[str]:
    done: list[str] = []
    failed: list[str] = []
    for artifact in release.artifacts:
        if artifact.kind != "gce-image":
            continue
        try:
            found = still_ours(images, artifact.id, name, release.version)
            if found is None:
                continue
            if found.status == DELETING:
                done.append(f"image {found.name} is being deleted by GCE already")
                continue
            ctx.progress.stage(f"delete {found.name}")
            done.append(_delete_image(images, found.name))
        except CloudError as exc:
            failed.append(exc.message)
    if failed:  # the objects stay with the image, so the version is listed (and retried) as it is
        _raise(ctx.target, release, done, failed)
    for artifact in release.artifacts:
        if not is_upload(artifact):
            continue
        bucket, obj, generation = from_artifact(artifact)
        try:
            ctx.progress.stage(f"delete {artifact.id}")
            if delete_object(clients, ctx.target, ctx.retry, bucket, obj, generation):
                done.append(f"deleted {artifact.id}")
        except CloudError as exc:
            failed.append(exc.message)
    if failed:
        _raise(ctx.target, release, done, failed)
    return done


def _delete_image(images: GceImages, image: str) -> str:
    """images.delete; GCE refuses it (400 resourceNotReady) while another run's delete of the image is
    under way, which is as good as done."""
    try:
        images.delete(image)
    except CloudError as exc:
        if NOT_READY not in (exc.code or ""):
            raise
        again = images.get(image)
        if again is not None and again.status != DELETING:
            raise
        return f"image {image} is being deleted by another run"
    return f"deleted image {image}"


def _raise(target: str, release: Release, done: list[str], failed: list[str]) -> None:
    also = f" (done: {'; '.join(done)})" if done else ""
    raise CloudError(target, f"delete version {release.version}", "; ".join(failed) + also)
