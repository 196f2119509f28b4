"""Retire one version of the image on an Azure target: deprecate it, or delete it.

Deprecate: each gallery version gets endOfLifeDate = now and excludeFromLatest (a PATCH, its
operation followed; version_update.py). Managed images have no deprecation in Azure: VMs can be made
from one until it is deleted. imgpub tags it `imgpub:deprecated` (its own record, so the version counts
as deprecated and a later prune past `delete_after` deletes it) and says so.

Delete, in an order that leaves a state the next prune finishes whatever stops it:
1. with both a gallery version and a managed image, the image is first tagged `imgpub:deleting`;
2. the gallery version is deleted (its operation followed; a stop during it leaves it Deleting);
3. the managed image;
4. the version's upload leftovers (blobs, upload disks).
A stop after 1 leaves a marked image, one after 3 leftovers without an image: either way the version
is listed "deleting", and the next prune finishes it even if the policy would now keep it. Each
delete reads the resource first and leaves it alone once it no longer carries this image's name and
version tags (404 is done). One artifact failing does not stop the others, except that a managed
image is not deleted while its gallery version is still there (it keeps the version "deleting").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from imgpub.errors import CloudError, ImgpubError
from imgpub.journal import Journal
from imgpub_azure.catalog import Catalog, Parts
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller
from imgpub_azure.managed_image import ManagedImages
from imgpub_azure.releases import is_deprecated
from imgpub_azure.settings import AzureSettings
from imgpub_azure.tags import DELETING_TAG, DEPRECATED_TAG, belongs_to, merged_tags, tag_of
from imgpub_azure.version_update import deprecation, end_of_life, target_regions

__all__ = ["NO_DEPRECATION", "Retirement", "Steps", "fully_deprecated"]

UPLOAD_JOURNAL = "upload"
"""The publish journal's record of its temporary upload (upload.py), stale once the upload is gone."""
NO_DEPRECATION = (
    "Azure managed images have no deprecation (VMs can still be made from it until it is deleted)"
)


def fully_deprecated(version: Any, now: datetime) -> bool:
    """Deprecated, and excluded from `latest` in every region too."""
    return is_deprecated(version, now) and all(r.exclude_from_latest for r in target_regions(version))


class Retirement:
    def __init__(
        self,
        clients: AzureClients,
        caller: Caller,
        settings: AzureSettings,
        name: str,
        now: Callable[[], datetime],
    ) -> None:
        self.call, self.settings, self.name, self.now = caller, settings, name, now
        self.catalog = Catalog(clients, caller, settings, name, now)
        self.images = ManagedImages(clients, caller)

    # -- helpers shared with reconcile ------------------------------------------------------------
    def deprecate_version(self, parts: Parts, version: Any, at: datetime) -> str:
        gallery, definition = self.catalog.gallery(), self.catalog.definition
        assert gallery is not None and definition is not None
        ref = f"{gallery.gallery.name}/{definition}/{version.name}"
        if fully_deprecated(version, at):
            return f"gallery image version {ref} was deprecated already"
        after = gallery.update_version(
            definition,
            str(version.name),
            lambda found: deprecation(found, at),
            lambda found: not belongs_to(found, self.name, parts.version) or fully_deprecated(found, at),
        )
        if after is None:
            return f"gallery image version {ref} is gone"
        if not belongs_to(after, self.name, parts.version):
            return f"gallery image version {ref} left alone: it no longer carries this image's tags"
        eol = end_of_life(after)
        when = eol.isoformat(timespec="seconds") if eol else "?"
        return f"deprecated gallery image version {ref}: endOfLifeDate {when}, excluded from 'latest'"

    def mark_image(self, parts: Parts, image: Any, tag: str, at: datetime) -> Any:
        """Tag a managed image `tag` = `at` (others' tags kept); the image afterwards, or None."""
        value = at.isoformat(timespec="seconds")
        return self.images.update_tags(
            str(image.name),
            lambda found: merged_tags(found, {tag: value}),
            lambda found: not belongs_to(found, self.name, parts.version) or tag_of(found, tag) is not None,
        )

    def deprecate_image(self, parts: Parts, image: Any, at: datetime) -> str:
        after = self.mark_image(parts, image, DEPRECATED_TAG, at)
        if after is None:
            return f"image {image.name} is gone"
        if not belongs_to(after, self.name, parts.version):
            return f"image {image.name} left alone: it no longer carries this image's tags"
        return (
            f"image {image.name}: {NO_DEPRECATION}; marked with tag {DEPRECATED_TAG} so that a later "
            "prune deletes it"
        )

    # -- the two actions -----------------------------------------------------------------------------
    def deprecate(self, version: str) -> list[str]:
        parts, at = self.catalog.one(version), self.now()
        if not parts.made:
            return [f"no image of {self.name} {version} is left to deprecate"]
        steps = Steps(self.call.target, f"deprecate {self.name} {version}")
        for v in parts.versions:
            steps.run(f"gallery image version {v.name}", self.deprecate_version, parts, v, at)
        for i in parts.images:
            steps.run(f"image {i.name}", self.deprecate_image, parts, i, at)
        return steps.result()

    def delete(self, version: str, journal: Journal) -> list[str]:
        parts, at = self.catalog.one(version), self.now()
        steps = Steps(self.call.target, f"delete {self.name} {version}")
        marked = True
        if parts.versions:  # a stop after the version went leaves a marked image: "deleting"
            for i in parts.images:
                if tag_of(i, DELETING_TAG) is None:
                    marked &= steps.run(f"image {i.name}", self._mark_deleting, parts, i, at)
        versions_gone = marked
        for v in parts.versions:
            if marked:
                versions_gone &= steps.run(f"gallery image version {v.name}", self._delete_version, parts, v)
            else:
                steps.failed.append(f"gallery image version {v.name}: not deleted before its image is marked")
        for i in parts.images:
            if versions_gone:
                steps.run(f"image {i.name}", self._delete_image, parts, i)
            elif marked:
                steps.failed.append(
                    f"image {i.name}: kept, marked {DELETING_TAG}, while its gallery version is there"
                )
        for left in parts.leftovers:
            steps.run(f"{left.kind} {left.name}", self.catalog.leftovers.remove, left)
        if parts.leftovers:
            journal.delete(UPLOAD_JOURNAL)
        return steps.result()

    def _mark_deleting(self, parts: Parts, image: Any, at: datetime) -> str:
        self.mark_image(parts, image, DELETING_TAG, at)
        return f"image {image.name} marked {DELETING_TAG}: its version's delete is under way"

    def _delete_version(self, parts: Parts, version: Any) -> str:
        gallery, definition = self.catalog.gallery(), self.catalog.definition
        assert gallery is not None and definition is not None
        ref = f"{gallery.gallery.name}/{definition}/{version.name}"
        gone = gallery.delete_version(
            definition, str(version.name), lambda found: belongs_to(found, self.name, parts.version)
        )
        if not gone:
            return f"gallery image version {ref} left alone: it no longer carries this image's tags"
        return f"deleted gallery image version {ref} (every replica)"

    def _delete_image(self, parts: Parts, image: Any) -> str:
        gone = self.images.delete(str(image.name), lambda found: belongs_to(found, self.name, parts.version))
        if not gone:
            return f"image {image.name} left alone: it no longer carries this image's tags"
        return f"deleted image {image.name}"


class Steps:
    """One version's steps, each on one artifact: a failure is recorded and the others go on; at the
    end, one CloudError names every artifact that failed and what was done."""

    def __init__(self, target: str, what: str) -> None:
        self.target, self.what = target, what
        self.done: list[str] = []
        self.failed: list[str] = []

    def run(self, artifact: str, step: Callable[..., str], *args: Any) -> bool:
        """`step(*args)`; False when it failed (recorded)."""
        try:
            line = step(*args)
        except ImgpubError as exc:
            self.failed.append(f"{artifact}: {getattr(exc, 'message', None) or exc}")
            return False
        if line:
            self.done.append(line)
        return True

    def result(self) -> list[str]:
        if self.failed:
            told = "; ".join(self.failed) + (f" (done: {'; '.join(self.done)})" if self.done else "")
            raise CloudError(self.target, self.what, told)
        return self.done
