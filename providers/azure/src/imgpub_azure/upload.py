"""Put the image where Azure can make an image from it: a page blob, or a managed disk for upload."""

from __future__ import annotations

from imgpub.disk import DiskImage
from imgpub.disk.write_vhd import FOOTER_SIZE, vhd_disk_size
from imgpub.journal import Journal
from imgpub.progress import Progress
from imgpub_azure.clients import AzureClients, strip_query
from imgpub_azure.errors import Caller
from imgpub_azure.managed_disk import UploadDisks
from imgpub_azure.names import blob_name, text, upload_disk_name
from imgpub_azure.page_upload import PageUploader, UploadStats
from imgpub_azure.states import failed_state
from imgpub_azure.tags import digest_of
from imgpub_azure.upload_source import UploadedVhd

__all__ = ["VhdUploads"]

JOURNAL_UPLOAD = "upload"
"""Journal key: the temporary blob or disk, until it is removed ({kind, name, uri, digest, done})."""
READY_STATES = ("ReadyToUpload", "ActiveUpload")


class VhdUploads:
    def __init__(self, clients: AzureClients, caller: Caller, progress: Progress, journal: Journal) -> None:
        self.clients = clients
        self.call = caller
        self.progress = progress
        self.journal = journal
        self.settings = clients.settings
        self.disks = UploadDisks(clients, caller)

    def planned(self, image_name: str) -> UploadedVhd:
        """Where the upload goes (for plans), without touching the cloud."""
        s = self.settings
        if s.upload == "page-blob":
            name = blob_name(image_name)
            return UploadedVhd(
                "blob",
                name,
                f"{self.clients.account_url}/{s.container}/{name}",
                self.clients.storage_account_id(),
            )
        name = upload_disk_name(image_name)
        return UploadedVhd("disk", name, self.clients.compute_id(f"disks/{name}"))

    def upload(
        self, img: DiskImage, digest: str, image_name: str, generation: str, tags: dict[str, str]
    ) -> tuple[UploadedVhd, UploadStats]:
        if self.settings.upload == "page-blob":
            return self._to_blob(img, digest, image_name)
        return self._to_disk(img, digest, image_name, generation, tags)

    def _uploader(self, blob: object) -> PageUploader:
        return PageUploader(
            blob,  # type: ignore[arg-type]
            target=self.call.target,
            retry=self.call.retry,
            progress=self.progress,
            concurrency=self.settings.concurrency,
        )

    def _to_blob(self, img: DiskImage, digest: str, image_name: str) -> tuple[UploadedVhd, UploadStats]:
        s = self.settings
        name = blob_name(image_name)
        blob = self.clients.blob(s.container, name)
        where = UploadedVhd("blob", name, strip_query(blob.url), self.clients.storage_account_id())
        self._record(where, digest, done=False)
        stats = self._uploader(blob).upload(img, digest)
        self._record(where, digest, done=True)
        return where, stats

    def _to_disk(
        self, img: DiskImage, digest: str, image_name: str, generation: str, tags: dict[str, str]
    ) -> tuple[UploadedVhd, UploadStats]:
        name = upload_disk_name(image_name)
        size = vhd_disk_size(img.virtual_size) + FOOTER_SIZE
        where = UploadedVhd("disk", name, self.clients.compute_id(f"disks/{name}"))
        recorded = self.journal.get(JOURNAL_UPLOAD) or {}
        disk = self.disks.find(name)
        if disk is not None and (failed := failed_state(disk)):
            self.progress.note(f"upload: disk {name} is in provisioningState {failed}; making it again")
            self.disks.delete(name)
            disk = None
        state = text(disk.properties.disk_state) if disk is not None and disk.properties else None
        if disk is not None and digest_of(disk) == digest:
            if recorded.get("done") and recorded.get("digest") == digest and state not in READY_STATES:
                self.progress.note(f"upload: disk {name} already holds this image")
                return where, UploadStats(blob_size=size, resumed=True)
            if state not in READY_STATES:
                self.disks.delete(name)
                disk = None
        elif disk is not None:
            self.disks.delete(name)
            disk = None
        fresh = disk is None
        if disk is None:
            disk = self.disks.create(name, size, generation, tags)
        if disk.id:
            where = UploadedVhd("disk", name, disk.id)
        self._record(where, digest, done=False)
        sas_url = self.disks.grant_write(name)
        stats = self._uploader(self.clients.blob_from_url(sas_url)).upload(
            img, digest, create=False, fresh=fresh
        )
        self.disks.revoke(name)
        self._record(where, digest, done=True)
        return where, stats

    def _record(self, where: UploadedVhd, digest: str, *, done: bool) -> None:
        self.journal.set(
            JOURNAL_UPLOAD,
            {"kind": where.kind, "name": where.name, "uri": where.uri, "digest": digest, "done": done},
        )

    def pending(self) -> UploadedVhd | None:
        """A temporary upload a previous run left behind (from the journal)."""
        rec = self.journal.get(JOURNAL_UPLOAD)
        if not rec:
            return None
        return UploadedVhd(rec["kind"], rec["name"], rec["uri"])

    def remove(self, where: UploadedVhd) -> None:
        if where.kind == "blob":
            blob = self.clients.blob(self.settings.container, where.name)
            self.call.find(f"delete blob {where.name}", blob.delete_blob)
        else:
            self.disks.delete(where.name)
        self.journal.delete(JOURNAL_UPLOAD)
