"""Upload leftovers of a version: page blobs and upload disks that outlived their images.

A publish removes its temporary upload once the images exist, but a run killed after the images were
made, `keep_upload: true`, or a prune stopped half-way leaves them. They are found by what imgpub put
on them, never by name alone: a blob by its metadata (`imgpub_name` and `imgpub_version`; a blob from
before those existed by its `imgpub_digest` matching a version's images), an upload disk by its
`imgpub:name` and `imgpub:version` tags. Where they are looked for follows `upload`: the page blobs in
`container` (page-blob), the upload disks in the resource group (managed-disk).

One may still be in use: a blob leased by a run uploading it (a killed run's lease runs out within a
minute), a disk open for upload within its write SAS's lifetime. Such a one is "busy": its version is
pending, and it is never removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from imgpub.errors import CloudError
from imgpub.identity import TAG_DIGEST, TAG_VERSION
from imgpub_azure.clients import AzureClients, strip_query
from imgpub_azure.errors import Caller
from imgpub_azure.managed_disk import UPLOAD_SAS_SECONDS, UploadDisks
from imgpub_azure.names import text
from imgpub_azure.page_upload import META_DIGEST, META_NAME, META_VERSION
from imgpub_azure.states import created_at, state_of
from imgpub_azure.tags import belongs_to, tag_of
from imgpub_azure.writes import IN_PROGRESS, Writes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Leftover", "Leftovers"]

OPEN_FOR_UPLOAD = ("readytoupload", "activeupload", "activesas", "activesasfrozen")
"""diskStates of a disk made for upload and not finished: a run may be writing it (or about to)."""
ACCESS_GRANTED = ("activeupload", "activesas", "activesasfrozen")
"""diskStates of a disk with a SAS out: its access is revoked before it is deleted (Azure keeps a
disk with active access from going: a resource group delete waits on it until it is revoked)."""
LEASED = "leased"


@dataclass(frozen=True)
class Leftover:
    kind: Literal["blob", "disk"]
    name: str
    id: str
    """The blob's URL (no query) or the disk's resource ID."""
    version: str
    location: str | None
    created: datetime | None
    busy: str | None = None
    """Why a run may still be writing it (None: it is nobody's now)."""
    state: str = ""
    """A disk's diskState."""


class Leftovers:
    def __init__(self, clients: AzureClients, caller: Caller, now: Callable[[], datetime]) -> None:
        self.clients = clients
        self.call = caller
        self.settings = clients.settings
        self.now = now
        self.disks = UploadDisks(clients, caller)
        self.writes = Writes(caller, clients.polling_interval(15.0))

    def find(self, name: str, digests: Mapping[str, str]) -> list[Leftover]:
        """Every upload blob or disk of the image `name`; `digests` maps the digests of its versions'
        images to their versions (for blobs that name only their digest)."""
        if self.settings.upload == "page-blob":
            return self._blobs(name, digests)
        return self._upload_disks(name)

    # -- page blobs -------------------------------------------------------------------------------
    def _blobs(self, name: str, digests: Mapping[str, str]) -> list[Leftover]:
        container = self.clients.container(self.settings.container)
        # Credentials that may not list the container fail the target: a leftover no one sees would
        # never be removed, and its version never finished.
        blobs = self.call.find(
            f"list blobs in container {self.settings.container}",
            lambda: list(container.list_blobs(include=["metadata"])),
        )
        out = []
        for blob in blobs or []:
            version = self._blob_version(blob.metadata or {}, name, digests)
            if version is None:
                continue
            lease = blob.lease
            busy = (
                "a run holds its lease" if lease is not None and text(lease.state).lower() == LEASED else None
            )
            url = strip_query(self.clients.blob(self.settings.container, blob.name).url)
            out.append(
                Leftover("blob", blob.name, url, version, self.settings.location, blob.creation_time, busy)
            )
        return out

    @staticmethod
    def _blob_version(meta: Mapping[str, str], name: str, digests: Mapping[str, str]) -> str | None:
        """The version a blob is the upload of, when it is this image's; None otherwise."""
        lowered = {k.lower(): v for k, v in meta.items()}
        if META_NAME in lowered:
            if lowered[META_NAME] != quote(name[:256], safe="") or not lowered.get(META_VERSION):
                return None
            return unquote(lowered[META_VERSION])
        return digests.get(lowered.get(META_DIGEST) or "")

    def _remove_blob(self, leftover: Leftover) -> str:
        """Delete the blob unless a run leased it meanwhile (Azure refuses a leased blob's delete)."""
        blob = self.clients.blob(self.settings.container, leftover.name)
        try:
            self.call(f"delete blob {leftover.name}", lambda: blob.delete_blob())
        except CloudError as exc:
            if exc.code == "BlobNotFound":
                return f"blob {leftover.name} is gone already"
            if exc.code in ("LeaseIdMissing", "LeaseIdMismatchWithBlobOperation"):
                return f"blob {leftover.name} left: a run leased it meanwhile"
            raise
        return f"deleted upload blob {leftover.name}"

    # -- upload disks -----------------------------------------------------------------------------
    def _upload_disks(self, name: str) -> list[Leftover]:
        rg = self.settings.resource_group
        disks = self.call.find(
            f"list disks in resource group {rg}",
            lambda: list(self.clients.compute.disks.list_by_resource_group(rg)),
        )
        out = []
        for disk in disks or []:
            if not belongs_to(disk, name) or not tag_of(disk, TAG_DIGEST):
                continue
            props = disk.properties
            state = text(props.disk_state if props else None)
            created = (props.time_created if props else None) or created_at(disk)
            out.append(
                Leftover(
                    "disk",
                    str(disk.name),
                    str(disk.id),
                    str(tag_of(disk, TAG_VERSION)),
                    disk.location,
                    created,
                    self._disk_busy(disk, state, created),
                    state,
                )
            )
        return out

    def _disk_busy(self, disk: Any, state: str, created: datetime | None) -> str | None:
        if (provisioning := state_of(disk)).lower() in IN_PROGRESS:
            return f"provisioningState {provisioning}"
        if state.lower() not in OPEN_FOR_UPLOAD:
            return None
        if created is not None and self.now() - created > timedelta(seconds=UPLOAD_SAS_SECONDS):
            return None  # its write SAS has run out: no run can still be writing it
        return f"open for upload ({state})"

    def _remove_disk(self, leftover: Leftover) -> str:
        rg, disks = self.settings.resource_group, self.clients.compute.disks
        if leftover.state.lower() in ACCESS_GRANTED:
            self.disks.revoke(leftover.name)
        deleted = self.writes.delete(
            f"upload disk {leftover.name}",
            lambda: disks.begin_delete(rg, leftover.name).result(),
            read=lambda: disks.get(rg, leftover.name),
            doomed=lambda found: tag_of(found, TAG_VERSION) == leftover.version,
        )
        return (
            f"deleted upload disk {leftover.name}"
            if deleted
            else f"upload disk {leftover.name} left: changed"
        )

    def remove(self, leftover: Leftover) -> str:
        """Remove one leftover (a busy one is left); what was done, one line."""
        if leftover.busy:
            return f"{leftover.kind} {leftover.name} left: {leftover.busy}"
        if leftover.kind == "blob":
            return self._remove_blob(leftover)
        return self._remove_disk(leftover)
