"""Every version of an image in the project, for prune, `status --all-versions` and reconcile.

Found only by imgpub's labels: `images.list` filtered on `labels.imgpub-name` (every page), then
kept only when the image carries the name, version and digest labels for this image (an image that
merely shares the name, or carries another image's name label, is never listed or touched), and
grouped by version (`imgpub_gcp.versions`: the exact label, or the label-safe one read back).
Leftover upload objects (`imgpub_gcp.uploads`) join their version; a version that has only those
left (its image is gone: a delete stopped half-way, or an upload whose image was never made) is
"deleting", so the next prune deletes them.

A version's state: "deleting" (GCE is deleting an image, or only objects are left), "pending" (an
image is still being made), "deprecated" (every image is DEPRECATED, OBSOLETE or DELETED),
"failed" (an image is FAILED), else "active". `created` is the oldest creationTimestamp.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imgpub.identity import LABEL_DIGEST, LABEL_NAME, label_safe
from imgpub.provider import Artifact, Context, Release, ReleaseState
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.image import GceImages
from imgpub_gcp.reconciliation import changes, family_members, sharing_of
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.survey import FAILED, carried_version, created_at, is_deprecated
from imgpub_gcp.uploads import UploadObject, leftover_uploads

if TYPE_CHECKING:
    from google.cloud import compute_v1

__all__ = ["IMAGE_KIND", "releases"]

IMAGE_KIND = "gce-image"
_LATEST = datetime.max.replace(tzinfo=UTC)


def releases(clients: GcpClients, settings: GcpSettings, name: str, ctx: Context) -> list[Release]:
    images = GceImages(clients, settings, ctx.target, ctx.retry, ctx.progress)
    by_version: dict[str, list[tuple[compute_v1.Image, bool]]] = defaultdict(list)
    for image in images.find({LABEL_NAME: label_safe(name)}):
        carried = carried_version(image, name)  # the filter is GCE's; the labels are checked here too
        if carried is not None:
            by_version[carried[0]].append((image, carried[1]))
    uploads: dict[str, list[UploadObject]] = defaultdict(list)
    for upload in leftover_uploads(clients, settings, ctx.target, ctx.retry, name, ctx.now()):
        uploads[upload.version].append(upload)
    sharing = sharing_of(clients, settings, ctx)
    members = family_members(images, settings) if by_version else []
    out = []
    for version in sorted(set(by_version) | set(uploads)):
        found = sorted(by_version.get(version, []), key=lambda f: created_at(f[0]) or _LATEST)
        objects = uploads.get(version, [])
        state = _state([f for f, _ in found])
        drift: list[str] = []
        if state in ("active", "deprecated"):
            for image, _ in found:
                drift.extend(c.drift for c in changes(image, settings, members, sharing))
        out.append(
            Release(
                version,
                state,
                _created([f for f, _ in found], objects),
                digest=_digest([f for f, _ in found], objects),
                artifacts=tuple(
                    [_artifact(image, exact) for image, exact in found] + [o.artifact() for o in objects]
                ),
                drift=tuple(drift),
            )
        )
    return out


def _state(found: list[compute_v1.Image]) -> ReleaseState:
    statuses = {f.status for f in found}
    if not found or "DELETING" in statuses:
        return "deleting"
    if "PENDING" in statuses:
        return "pending"
    if all(is_deprecated(f) for f in found):
        return "deprecated"
    return "failed" if FAILED in statuses else "active"


def _created(found: list[compute_v1.Image], objects: list[UploadObject]) -> datetime | None:
    times = [t for t in (created_at(f) for f in found) if t is not None]
    if not found:
        times = [o.created for o in objects if o.created is not None]
    return min(times, default=None)


def _digest(found: list[compute_v1.Image], objects: list[UploadObject]) -> str | None:
    usable = [f for f in found if f.status != FAILED] or found
    if usable:
        return dict(usable[-1].labels).get(LABEL_DIGEST)
    return objects[0].digest if objects else None


def _artifact(found: compute_v1.Image, exact: bool) -> Artifact:
    extra: dict[str, Any] = {
        "status": found.status,
        "family": found.family or None,
        "deprecated": found.deprecated.state or None,
        "replacement": found.deprecated.replacement or None,
        "created": found.creation_timestamp,
        "version_exact": exact,
    }
    return Artifact(IMAGE_KIND, found.name, uri=found.self_link, extra=extra)
