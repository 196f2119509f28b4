"""The upload blob's lease: the one run that holds it writes, completes and deletes the blob.

Every run publishing one image derives the same blob name (a re-run on another machine, after a CI
job was killed, resumes the blob from its page list). Two runs at once would overwrite each other's
blob, or delete it under the other's image. Azure Storage's blob lease makes the writer unique and
is enforced by the service: a leased blob takes no write and no delete without the lease id.

* The lease id is this run's own, kept in the journal before the first write: a re-run from the same
  state dir takes its lease again at once (acquiring with the active lease id is allowed).
* The blob is created only when missing (If-None-Match: *), then leased. Whoever holds the lease
  writes; a run that finds the lease held by another waits until it is free (the other run failed
  or died: this run takes the blob over and resumes it) or the blob is gone (the other run published
  and removed it: this run plans again and finds the work done).
* The lease lasts LEASE_SECONDS and is renewed in the background while the run needs the blob (upload,
  then the images made from it), so a killed run's lease runs out on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from imgpub.errors import CloudError, ImgpubError
from imgpub_azure.errors import Caller

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

__all__ = ["LEASE_SECONDS", "BlobLease", "OtherRunFinished"]

LEASE_SECONDS = 60
"""The lease's duration (Azure takes 15-60 s or infinite): a dead run frees the blob within a minute."""
RENEW_SECONDS = 15.0
"""How often the lease is renewed: four chances before it runs out."""
WAIT_SECONDS = 10.0
"""How often a waiting run looks at another run's lease again."""
BUSY = "LeaseAlreadyPresent"
MISSING = "BlobNotFound"
EXISTS = "BlobAlreadyExists"


class OtherRunFinished(ImgpubError):
    """The blob another run held is gone: that run published and removed it. Plan again."""


class BlobLease:
    def __init__(
        self,
        blob: BlobClient,
        lease_id: str,
        caller: Caller,
        *,
        wait_seconds: float = WAIT_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self.blob = blob
        self.id = lease_id
        self.call = caller
        self.wait_seconds = wait_seconds
        self.renew_seconds = renew_seconds
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: ImgpubError | None = None
        """Why renewing failed (another run took the blob over after this one stalled)."""

    @property
    def name(self) -> str:
        return str(self.blob.blob_name)

    def claim(self, create: Callable[[], object]) -> None:
        """Hold the lease, creating the blob (with `create`, exclusively) when it is missing; wait
        while another run holds it. OtherRunFinished when the blob went away meanwhile."""
        waited = False
        while True:
            state = self._acquire()
            if state == "held":
                if waited:
                    self.call.progress.note(
                        f"upload: the other run let go of blob {self.name}; taking it over"
                    )
                self.held = True
                self._keep()
                return
            if state == "missing":
                if waited:
                    raise OtherRunFinished(f"blob {self.name} was removed by the run that held it")
                self._create(create)
                continue
            if not waited:
                self.call.progress.note(
                    f"upload: another run holds the lease of blob {self.name} (it is publishing this "
                    "image); waiting for it to finish"
                )
                waited = True
            self.call.retry.sleep(self.wait_seconds)

    def take_for_removal(self) -> bool:
        """Hold the lease to remove a blob this run journalled; False when it is gone, or held by
        another run (which now owns it and removes it when done)."""
        state = self._acquire()
        if state == "busy":
            self.call.progress.note(f"blob {self.name} is held by another run now: left to it")
        self.held = state == "held"
        return self.held

    def _acquire(self) -> str:
        """'held', 'busy' (another run's lease) or 'missing'."""
        try:
            self.call(
                f"lease blob {self.name}",
                lambda: self.blob.acquire_lease(lease_duration=LEASE_SECONDS, lease_id=self.id),
            )
        except CloudError as exc:
            if exc.code == BUSY:
                return "busy"
            if exc.code == MISSING:
                return "missing"
            raise
        return "held"

    def _create(self, create: Callable[[], object]) -> None:
        try:
            self.call(f"create blob {self.name}", create)
        except CloudError as exc:
            if exc.code != EXISTS:  # made meanwhile, by another run or by this one (a lost reply)
                raise

    def _keep(self) -> None:
        if self._renewer is not None:
            return
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="imgpub-azure-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob, lease_id=self.id)
        while not self._stop.wait(self.renew_seconds):
            try:
                self.call(f"renew the lease of blob {self.name}", lease.renew)
            except ImgpubError as exc:
                self.lost = exc
                return

    def stop(self) -> None:
        """Stop renewing (the lease then runs out by itself unless released or deleted with)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None

    def release(self) -> None:
        """Let another run have the blob now (after a failure, or when the blob is kept)."""
        from azure.storage.blob import BlobLeaseClient

        self.stop()
        if self.held:
            self.held = False
            lease = BlobLeaseClient(self.blob, lease_id=self.id)
            self.call.find(f"release the lease of blob {self.name}", lease.release)

    def delete(self) -> None:
        """Delete the blob with the lease (a 404: gone already)."""
        self.stop()
        self.call.find(f"delete blob {self.name}", lambda: self.blob.delete_blob(lease=self.id))
        self.held = False
