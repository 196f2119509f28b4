"""Put the image where Azure can make an image from it: a page blob, or a managed disk for upload.

Two runs of one image at once (two CI jobs, separate state dirs) must not destroy each other:
* the page blob has one name for every run (a re-run anywhere resumes it), and the run holding its
  lease (blob_lease.py) is the only one that writes or deletes it; the others wait for it;
* each run uploads into its own managed disk (`<image>-upload-<run>`), and removes only that one.
The run id lives in the journal, so a re-run from the same state dir is the same run.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from imgpub.disk import DiskImage
from imgpub.disk.write_vhd import FOOTER_SIZE, vhd_disk_size
from imgpub.errors import ImgpubError
from imgpub.identity import TAG_NAME, TAG_VERSION
from imgpub.journal import Journal
from imgpub.progress import Progress
from imgpub_azure.blob_lease import BlobLease, OtherRunFinished
from imgpub_azure.clients import AzureClients, strip_query
from imgpub_azure.errors import Caller
from imgpub_azure.managed_disk import UploadDisks
from imgpub_azure.names import blob_name, text, upload_disk_name
from imgpub_azure.page_upload import META_DIGEST, PageUploader, UploadStats, blob_identity
from imgpub_azure.states import failed_state
from imgpub_azure.tags import digest_of
from imgpub_azure.upload_source import UploadedVhd

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

__all__ = ["JOURNAL_RUN", "VhdUploads"]

JOURNAL_UPLOAD = "upload"
"""Journal key: the temporary blob or disk, until it is removed ({kind, name, uri, digest, done})."""
JOURNAL_RUN = "run_id"
"""Journal key: this state dir's run id (the blob's lease id, the upload disk's suffix)."""
READY_STATES = ("ReadyToUpload", "ActiveUpload")
UPLOADED = "Unattached"
"""diskState of an upload disk whose write access was revoked: this run revokes only after the upload."""


class VhdUploads:
    def __init__(self, clients: AzureClients, caller: Caller, progress: Progress, journal: Journal) -> None:
        self.clients = clients
        self.call = caller
        self.progress = progress
        self.journal = journal
        self.settings = clients.settings
        self.disks = UploadDisks(clients, caller)
        self.lease: BlobLease | None = None

    @property
    def run_id(self) -> str:
        """This state dir's run id, journalled before anything is written with it."""
        run = self.journal.get(JOURNAL_RUN)
        if not run:
            run = uuid.uuid4().hex
            self.journal.set(JOURNAL_RUN, run)
        return str(run)

    def planned(self, image_name: str) -> UploadedVhd:
        """Where the upload goes (for plans), without touching the cloud or the journal."""
        s = self.settings
        if s.upload == "page-blob":
            name = blob_name(image_name)
            return UploadedVhd(
                "blob",
                name,
                f"{self.clients.account_url}/{s.container}/{name}",
                self.clients.storage_account_id(),
            )
        name = upload_disk_name(image_name, str(self.journal.get(JOURNAL_RUN) or "<run>"))
        return UploadedVhd("disk", name, self.clients.compute_id(f"disks/{name}"))

    def upload(
        self, img: DiskImage, digest: str, image_name: str, generation: str, tags: dict[str, str]
    ) -> tuple[UploadedVhd, UploadStats]:
        if self.settings.upload == "page-blob":
            return self._to_blob(img, digest, image_name, blob_identity(tags[TAG_NAME], tags[TAG_VERSION]))
        return self._to_disk(img, digest, image_name, generation, tags)

    def _uploader(
        self, blob: object, lease: str | None = None, metadata: dict[str, str] | None = None
    ) -> PageUploader:
        return PageUploader(
            blob,  # type: ignore[arg-type]
            target=self.call.target,
            retry=self.call.retry,
            progress=self.progress,
            concurrency=self.settings.concurrency,
            lease=lease,
            metadata=metadata,
        )

    def _lease(self, blob: BlobClient) -> BlobLease:
        if self.lease is None:
            self.lease = BlobLease(
                blob, self.run_id, self.call, wait_seconds=self.clients.polling_interval(10.0)
            )
        return self.lease

    def _to_blob(
        self, img: DiskImage, digest: str, image_name: str, identity: dict[str, str]
    ) -> tuple[UploadedVhd, UploadStats]:
        from azure.core import MatchConditions

        s = self.settings
        name = blob_name(image_name)
        blob = self.clients.blob(s.container, name)
        where = UploadedVhd("blob", name, strip_query(blob.url), self.clients.storage_account_id())
        self._record(where, digest, done=False)
        size = vhd_disk_size(img.virtual_size) + FOOTER_SIZE
        lease = self._lease(blob)
        try:
            lease.claim(
                lambda: blob.create_page_blob(
                    size,
                    metadata={**identity, META_DIGEST: digest},
                    match_condition=MatchConditions.IfMissing,
                )
            )
        except OtherRunFinished:
            self.journal.delete(JOURNAL_UPLOAD)  # never this run's: the run that held it removed it
            raise
        stats = self._uploader(blob, lease.id, identity).upload(img, digest)
        self._record(where, digest, done=True)
        return where, stats

    def _to_disk(
        self, img: DiskImage, digest: str, image_name: str, generation: str, tags: dict[str, str]
    ) -> tuple[UploadedVhd, UploadStats]:
        name = upload_disk_name(image_name, self.run_id)
        size = vhd_disk_size(img.virtual_size) + FOOTER_SIZE
        where = UploadedVhd("disk", name, self.clients.compute_id(f"disks/{name}"))
        disk = self.disks.find(name)
        if disk is not None and (failed := failed_state(disk)):
            self.progress.note(f"upload: disk {name} is in provisioningState {failed}; making it again")
            self.disks.delete(name)
            disk = None
        state = text(disk.properties.disk_state) if disk is not None and disk.properties else None
        if disk is not None and digest_of(disk) == digest:
            if state == UPLOADED:  # access is revoked only after the last page: the image is whole
                self.progress.note(f"upload: disk {name} already holds this image")
                self._record(where, digest, done=True)
                return where, UploadStats(blob_size=size, resumed=True)
            if state not in READY_STATES:
                self.disks.delete(name)
                disk = None
        elif disk is not None:
            self.disks.delete(name)
            disk = None
        fresh = disk is None
        self._record(where, digest, done=False)
        if disk is None:
            disk = self.disks.create(name, size, generation, tags)
        if disk.id:
            where = UploadedVhd("disk", name, disk.id)
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
        """Remove this run's upload: the blob with its lease (one held by another run now is left
        to that run), or this run's disk."""
        if where.kind == "blob":
            lease = self._lease(self.clients.blob(self.settings.container, where.name))
            if lease.held or lease.take_for_removal():
                lease.delete()
        else:
            self.disks.delete(where.name)
        self.journal.delete(JOURNAL_UPLOAD)

    def close(self) -> None:
        """Let go of the blob's lease when the run ends without removing the blob (a failure, or
        keep_upload): another run may take the upload over at once."""
        if self.lease is None:
            return
        try:
            self.lease.release()
        except ImgpubError as exc:
            self.progress.note(f"upload: could not release the lease of blob {self.lease.name}: {exc}")
