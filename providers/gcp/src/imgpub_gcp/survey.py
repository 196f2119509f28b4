"""What exists in the project for one image version: the image this publish made (or will make),
imgpub's images whose creation FAILED, and images that stand in the way (conflicts).

A FAILED image was never published: whatever digest it carries, publish deletes and creates it
again without --replace, plan shows that, and status reports it as drift. An image of the same name
that imgpub did not make is a conflict even when FAILED: it is not ours to delete unasked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
from imgpub.provider import ImageInfo
from imgpub_gcp.image import GceImages, image_name
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.versions import version_of

if TYPE_CHECKING:
    from google.cloud import compute_v1

FAILED = "FAILED"
DEPRECATED_STATES = frozenset({"DEPRECATED", "OBSOLETE", "DELETED"})
"""deprecated.state values that take an image out of use (DELETED too: it does not delete the image)."""


@dataclass
class Survey:
    name: str
    digest: str
    current: compute_v1.Image | None = None
    """This digest under this name: READY, or PENDING while GCE builds it (never FAILED)."""
    failed: list[compute_v1.Image] = field(default_factory=list)
    conflicts: list[compute_v1.Image] = field(default_factory=list)

    def conflict_message(self) -> str:
        old = self.conflicts[0]
        digest = old.labels.get(LABEL_DIGEST) or "none (not made by imgpub)"
        return (
            f"image {old.name} already exists with digest {digest}, but this publish has digest {self.digest}"
        )


def failed_message(found: compute_v1.Image) -> str:
    return f"image {found.name} is FAILED (its creation failed): publish deletes and creates it again"


def survey(images: GceImages, image: ImageInfo, settings: GcpSettings, digest: str) -> Survey:
    out = Survey(image_name(image, settings), digest)
    ours = images.find({LABEL_NAME: label_safe(image.name), LABEL_VERSION: label_safe(image.version)})
    by_name = images.get(out.name)
    others = [by_name] if by_name is not None and all(i.name != by_name.name for i in ours) else []
    for found in [*ours, *others]:
        if found.status == FAILED and (found in ours or found.labels.get(LABEL_DIGEST) == digest):
            out.failed.append(found)
        elif found.labels.get(LABEL_DIGEST) != digest:
            out.conflicts.append(found)
        elif found.name == out.name:
            out.current = found
    return out


# -- every version: what makes an image one of ours, for prune, the version matrix and reconcile ---


def carried_version(found: compute_v1.Image, name: str) -> tuple[str, bool] | None:
    """(version, exact) when the image carries imgpub's labels for the image `name` (name, version and
    digest); None for anyone else's image, whatever its name."""
    labels = dict(found.labels)
    if labels.get(LABEL_NAME) != label_safe(name) or not labels.get(LABEL_DIGEST):
        return None
    return version_of(labels)


def is_deprecated(found: compute_v1.Image) -> bool:
    return found.deprecated.state in DEPRECATED_STATES


def created_at(found: compute_v1.Image) -> datetime | None:
    """creationTimestamp (RFC 3339 with an offset) as an aware datetime; None when GCE gives none."""
    try:
        return datetime.fromisoformat(found.creation_timestamp)
    except ValueError:
        return None


def still_ours(images: GceImages, image: str, name: str, version: str) -> compute_v1.Image | None:
    """The image as it is now, when it still carries this version's labels; None when it is gone or is
    no longer ours to touch (deleted and made again by someone else since it was listed)."""
    found = images.get(image)
    if found is None:
        return None
    carried = carried_version(found, name)
    return found if carried is not None and carried[0] == version else None
