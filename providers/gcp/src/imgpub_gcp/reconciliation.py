"""A published version brought in line with the target's settings, without uploading anything.

What can differ on an image that exists, and what reconcile does about it:
* labels: the target's `labels` are missing or hold other values -> setLabels (with the label
  fingerprint; labels the image carries besides, imgpub's own included, are kept);
* sharing: a `share_members` entry lacks roles/compute.imageUser -> the IAM policy gains it;
* deprecation: with `deprecate_previous` and a `family`, an ACTIVE image of the family with a newer
  READY, non-deprecated image in the family -> DEPRECATED, replacement = the family's newest (what
  publish does to the previous images).
The same list is each version's `drift` in prune and `status --all-versions`. Only READY images
carrying this version's labels are touched; nothing here reads or writes Cloud Storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from imgpub.provider import Context, Release
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.image import GceImages
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.share import ImageSharing
from imgpub_gcp.survey import created_at, is_deprecated, still_ours

if TYPE_CHECKING:
    from google.cloud import compute_v1

__all__ = ["Change", "changes", "family_members", "reconcile", "sharing_of"]

READY = "READY"


@dataclass(frozen=True)
class Change:
    """One thing that differs on one image: `drift` says it, reconcile applies it."""

    kind: Literal["labels", "share", "deprecate"]
    image: str
    drift: str
    labels: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()
    replacement: str | None = None
    replacement_name: str | None = None


def sharing_of(clients: GcpClients, settings: GcpSettings, ctx: Context) -> ImageSharing | None:
    """The IAM calls, when the settings share the images."""
    if not settings.share_members:
        return None
    return ImageSharing(clients, settings.project, ctx.target, ctx.retry)


def family_members(images: GceImages, settings: GcpSettings) -> list[compute_v1.Image]:
    """The family's images when `deprecate_previous` asks to keep only its newest active."""
    if not (settings.deprecate_previous and settings.family):
        return []
    return images.family_members(settings.family)


def changes(
    found: compute_v1.Image,
    settings: GcpSettings,
    members: list[compute_v1.Image],
    sharing: ImageSharing | None,
) -> list[Change]:
    """What differs on the READY image `found` from the settings (members: `family_members`)."""
    if found.status != READY:
        return []
    out: list[Change] = []
    labels = dict(found.labels)
    wanted = {**labels, **settings.labels}
    if wanted != labels:
        differ = sorted(k for k in settings.labels if labels.get(k) != settings.labels[k])
        text = f"image {found.name}: labels differ: {', '.join(differ)}"
        out.append(Change("labels", found.name, text, wanted))
    if sharing is not None and settings.share_members:
        missing = sharing.missing(found.name, list(settings.share_members))
        if missing:
            text = f"image {found.name} is not shared with {', '.join(missing)}"
            out.append(Change("share", found.name, text, members=tuple(missing)))
    newest = _successor(found, settings, members)
    if newest is not None:
        text = (
            f"image {found.name} in family {settings.family} is not deprecated "
            f"(deprecate_previous; the family's newest is {newest.name})"
        )
        out.append(
            Change("deprecate", found.name, text, replacement=newest.self_link, replacement_name=newest.name)
        )
    return out


def _successor(
    found: compute_v1.Image, settings: GcpSettings, members: list[compute_v1.Image]
) -> compute_v1.Image | None:
    """The family's newest active image, when `found` is an older active one `deprecate_previous` would
    have deprecated."""
    born = created_at(found)
    if not members or found.family != settings.family or is_deprecated(found) or born is None:
        return None
    active = [m for m in members if m.status == READY and not is_deprecated(m) and created_at(m)]
    newest = max(active, key=lambda m: created_at(m) or born, default=None)
    if newest is None or newest.name == found.name or (created_at(newest) or born) <= born:
        return None
    return newest


def reconcile(
    clients: GcpClients, settings: GcpSettings, name: str, release: Release, ctx: Context
) -> list[str]:
    """Apply `changes` to every READY image of the release that still carries its labels."""
    images = GceImages(clients, settings, ctx.target, ctx.retry, ctx.progress)
    sharing = sharing_of(clients, settings, ctx)
    members = family_members(images, settings)
    done: list[str] = []
    for artifact in release.artifacts:
        if artifact.kind != "gce-image":
            continue
        found = still_ours(images, artifact.id, name, release.version)
        if found is None:
            continue
        for change in changes(found, settings, members, sharing):
            done.append(_apply(images, sharing, found, change, ctx))
    return done


def _apply(
    images: GceImages, sharing: ImageSharing | None, found: compute_v1.Image, change: Change, ctx: Context
) -> str:
    if change.kind == "labels":
        ctx.progress.stage(f"labels {found.name}")
        images.set_labels(found, change.labels)
        return f"set the labels of image {found.name}"
    if change.kind == "share" and sharing is not None:
        ctx.progress.stage(f"share {found.name}")
        added = sharing.grant(found.name, list(change.members))
        return f"shared image {found.name} with {', '.join(added) or ', '.join(change.members)}"
    ctx.progress.stage(f"deprecate {found.name}")
    images.deprecate(found.name, change.replacement, ctx.now())
    return f"deprecated image {found.name} (replacement: {change.replacement_name})"
