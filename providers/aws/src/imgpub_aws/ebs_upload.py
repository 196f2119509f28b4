"""Upload a disk as an EBS snapshot through the EBS direct APIs (the way coldsnap does it).

Only 512 KiB blocks holding data are sent, each with its SHA-256; CompleteSnapshot gets the block
count and the LINEAR aggregate (SHA-256 over the raw block digests in index order). The journal keeps
the pending snapshot id and the finished block indexes (written every 64 blocks or half a second,
whichever comes first), so a crashed run continues where it stopped and sends again at most what
finished since the last write. Throttling or 5xx answers that outlast the retries keep the pending
snapshot for the next run to resume; a failure for good deletes it: this run's own (its ClientToken
carries the machine nonce, so no other machine's run shares it).
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from imgpub.errors import CloudError, TargetError
from imgpub.journal import Journal
from imgpub.progress import Progress
from imgpub.provider import DiskImage
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller, error_code, is_transient, with_note
from imgpub_aws.ledger import Ledger, machine_nonce
from imgpub_aws.removal import delete_snapshot

BLOCK_SIZE = 524288
"""EBS direct block size: every PutSnapshotBlock body is exactly this long."""
GIB = 1 << 30
SNAPSHOT_TIMEOUT_MINUTES = 4320
"""The longest AWS allows: a resumed run may come back hours later to the same pending snapshot."""
JOURNAL_EVERY_BLOCKS = 64
"""Finished blocks between two journal writes (32 MiB): after a crash, at most this many blocks (and
those in flight) are sent again. A write is a small JSON file replaced atomically."""
JOURNAL_EVERY_SECONDS = 0.5
"""...or this long since the last write, whichever comes first (slow links finish few blocks)."""
WAIT_TIMEOUT_SECONDS = 6 * 3600
JOURNAL_KEY = "ebs_upload"
GENERATION_KEY = "ebs_generation"


@dataclass
class UploadResult:
    snapshot_id: str
    volume_size: int
    blocks_sent: int
    bytes_sent: int
    blocks_resumed: int


def volume_gib(virtual_size: int) -> int:
    return max(1, math.ceil(virtual_size / GIB))


def _ranges(indexes: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def _unranges(ranges: Iterable[list[int]]) -> set[int]:
    return {i for a, b in ranges for i in range(a, b)}


class EbsUploader:
    def __init__(
        self,
        clients: AwsClients,
        call: Caller,
        region: str,
        journal: Journal,
        progress: Progress,
        *,
        concurrency: int,
        digest: str,
        description: str,
        tags: dict[str, str],
        encrypted: bool = False,
        kms_key_id: str | None = None,
        ledger: Ledger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients, self.call, self.region = clients, call, region
        self.ledger = ledger or Ledger()
        self.journal, self.progress = journal, progress
        self.concurrency, self.digest = concurrency, digest
        self.description, self.tags = description, tags
        self.encrypted, self.kms_key_id = encrypted, kms_key_id
        self.sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._journal_lock = threading.Lock()
        self._journalled = (0, 0.0)
        """Finished blocks at the last journal write, and when it was (time.monotonic)."""

    def upload(self, disk: DiskImage, volume_size: int) -> UploadResult:
        """Start (or resume) a snapshot, send the data blocks, complete it and wait until it is usable."""
        snapshot_id, done = self._resume() or (self._start_snapshot(volume_size), set())
        try:
            digests, sent = self._put_blocks(disk, snapshot_id, done)
            self._complete_snapshot(snapshot_id, digests)
            self._wait_completed(snapshot_id)
        except CloudError as exc:
            if exc.retryable:  # throttling or 5xx that outlasted the retries: the next run resumes
                note = f"the pending snapshot {snapshot_id} is kept: a re-run resumes it"
                raise with_note(exc, note) from exc
            self._abandon(snapshot_id)  # a failure for good (a crash or Ctrl-C is a BaseException)
            raise
        except Exception:
            self._abandon(snapshot_id)
            raise
        self._next_generation()  # the token is spent: a later upload (its snapshot gone) needs another
        return UploadResult(snapshot_id, volume_size, sent, sent * BLOCK_SIZE, len(done))

    # -- resume -------------------------------------------------------------------------------
    def _resume(self) -> tuple[str, set[int]] | None:
        state = self.journal.get(JOURNAL_KEY)
        if not state or state.get("digest") != self.digest or state.get("region") != self.region:
            return None
        snapshot_id = state["snapshot_id"]
        ec2 = self.clients.client("ec2", self.region)
        try:
            snaps = self.call(
                "DescribeSnapshots", self.region, lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])
            )
        except CloudError as exc:
            if exc.code != "InvalidSnapshot.NotFound":
                raise
            snaps = {"Snapshots": []}
        found = snaps.get("Snapshots", [])
        if not found or found[0].get("State") != "pending":
            self.progress.note(f"pending snapshot {snapshot_id} is gone; starting the upload over")
            self._next_generation()
            return None
        done = _unranges(state.get("done", []))
        self.ledger.made(snapshot_id)  # started by a run of this machine: ours to finish or delete
        self.progress.note(f"resuming snapshot {snapshot_id}: {len(done)} blocks already uploaded")
        return snapshot_id, done

    def _next_generation(self) -> None:
        self.journal.update({GENERATION_KEY: int(self.journal.get(GENERATION_KEY, 0)) + 1})
        self.journal.delete(JOURNAL_KEY)

    def _client_token(self) -> str:
        """The same for every StartSnapshot of one upload (a retry, or a resume after a crash before
        the reply: EBS answers with the earlier snapshot); new after an abandoned upload, and on a
        machine without this journal, whose token could name a snapshot deleted since."""
        generation = self.journal.get(GENERATION_KEY, 0)
        seed = f"{self.digest}:{self.region}:{generation}:{machine_nonce(self.journal)}"
        return hashlib.sha256(seed.encode()).hexdigest()[:64]

    # -- API calls ----------------------------------------------------------------------------
    def _start_snapshot(self, volume_size: int) -> str:
        params: dict[str, Any] = {
            "VolumeSize": volume_size,
            "ClientToken": self._client_token(),
            "Timeout": SNAPSHOT_TIMEOUT_MINUTES,
            "Description": self.description[:255],
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())],
        }
        if self.encrypted:
            params["Encrypted"] = True
            if self.kms_key_id:
                params["KmsKeyArn"] = self.kms_key_id
        ebs = self.clients.client("ebs", self.region)
        resp = self.call("StartSnapshot", self.region, lambda: ebs.start_snapshot(**params))
        snapshot_id = str(resp["SnapshotId"])
        self.ledger.made(snapshot_id)
        if int(resp.get("BlockSize") or BLOCK_SIZE) != BLOCK_SIZE:
            raise CloudError(
                self.call.target,
                "StartSnapshot",
                f"EBS reported block size {resp.get('BlockSize')}, expected {BLOCK_SIZE}",
                region=self.region,
            )
        self.journal.update(
            {
                JOURNAL_KEY: {
                    "snapshot_id": snapshot_id,
                    "region": self.region,
                    "digest": self.digest,
                    "done": [],
                }
            }
        )
        return snapshot_id

    def _put_blocks(self, disk: DiskImage, snapshot_id: str, done: set[int]) -> tuple[dict[int, bytes], int]:
        digests: dict[int, bytes] = {}
        finished = set(done)
        failures: list[tuple[int, BaseException]] = []
        stop = threading.Event()
        slots = threading.BoundedSemaphore(self.concurrency * 2)
        self._journalled = (len(done), time.monotonic())
        self.progress.stage(f"upload {self.region}", disk.allocation.data_bytes)

        def finish(index: int, fut: Future[None]) -> None:
            slots.release()
            exc = fut.exception()
            with self._lock:
                if exc is None:
                    finished.add(index)
                else:
                    failures.append((index, exc))
                    stop.set()
            self._flush(finished, force=False)

        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="imgpub-ebs") as pool:
                for index, data in disk.blocks(BLOCK_SIZE):
                    block = data if len(data) == BLOCK_SIZE else data.ljust(BLOCK_SIZE, b"\0")
                    if index in done:
                        digests[index] = hashlib.sha256(block).digest()
                        self.progress.advance(len(data))
                        continue
                    if stop.is_set():
                        break
                    slots.acquire()
                    fut = pool.submit(self._put_block, snapshot_id, index, block, len(data), digests)
                    fut.add_done_callback(partial(finish, index))
        finally:
            self._flush(finished)
        if failures:
            self._raise_failures(failures)
        return digests, len(finished) - len(done)

    def _put_block(
        self, snapshot_id: str, index: int, block: bytes, length: int, digests: dict[int, bytes]
    ) -> None:
        digest = hashlib.sha256(block).digest()
        checksum = base64.b64encode(digest).decode()
        client = getattr(self._local, "ebs", None)
        if client is None:
            client = self._local.ebs = self.clients.new_client("ebs", self.region, pool=2)

        def put() -> Any:
            return client.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=index,
                BlockData=block,
                DataLength=BLOCK_SIZE,
                Checksum=checksum,
                ChecksumAlgorithm="SHA256",
            )

        def transient(exc: BaseException) -> bool:
            # right after StartSnapshot, EBS may not know the snapshot yet (coldsnap waits it out)
            return is_transient(exc) or error_code(exc) == "ResourceNotFoundException"

        with self._lock:
            digests[index] = digest
        self.call("PutSnapshotBlock", self.region, put, transient)
        self.progress.advance(length)

    def _raise_failures(self, failures: list[tuple[int, BaseException]]) -> None:
        index, first = min(failures, key=lambda f: f[0])
        if isinstance(first, CloudError):
            coded = f" [{first.code}]" if first.code else ""
            detail = first.message.removeprefix(f"PutSnapshotBlock in {self.region} failed{coded}: ")
            raise CloudError(
                first.target,
                "PutSnapshotBlock",
                f"{len(failures)} block(s) failed, first block {index}: {detail}",
                code=first.code,
                region=self.region,
                retryable=first.retryable,
            ) from first
        raise first

    def _complete_snapshot(self, snapshot_id: str, digests: dict[int, bytes]) -> None:
        linear = hashlib.sha256(b"".join(digests[i] for i in sorted(digests))).digest()
        ebs = self.clients.client("ebs", self.region)
        self.progress.stage(f"complete snapshot {self.region}")
        try:
            self.call(
                "CompleteSnapshot",
                self.region,
                lambda: ebs.complete_snapshot(
                    SnapshotId=snapshot_id,
                    ChangedBlocksCount=len(digests),
                    Checksum=base64.b64encode(linear).decode(),
                    ChecksumAlgorithm="SHA256",
                    ChecksumAggregationMethod="LINEAR",
                ),
            )
        except CloudError:
            # a retry after a lost reply finds the snapshot completed by the first request: done
            if self._state(snapshot_id).get("State") != "completed":
                raise

    def _state(self, snapshot_id: str) -> dict[str, Any]:
        ec2 = self.clients.client("ec2", self.region)
        snaps = self.call(
            "DescribeSnapshots", self.region, lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])
        )["Snapshots"]
        return dict(snaps[0]) if snaps else {}

    def _wait_completed(self, snapshot_id: str) -> None:
        deadline, delay = time.monotonic() + WAIT_TIMEOUT_SECONDS, 0.5
        while True:
            snap = self._state(snapshot_id)
            state = snap.get("State")
            if state == "completed":
                return
            if state == "error" or time.monotonic() > deadline:
                raise CloudError(
                    self.call.target,
                    "CompleteSnapshot",
                    f"snapshot {snapshot_id} is {state}: {snap.get('StateMessage', '')}",
                    region=self.region,
                )
            self.sleep(delay)
            delay = min(delay * 2, 15.0)

    def _flush(self, finished: set[int], *, force: bool = True) -> None:
        """Write the finished blocks to the journal: always when `force`, else every
        JOURNAL_EVERY_BLOCKS blocks or JOURNAL_EVERY_SECONDS, whichever comes first."""
        with self._journal_lock:  # one writer at a time, so an older list never replaces a newer one
            with self._lock:
                count, now = len(finished), time.monotonic()
                last_count, last_time = self._journalled
                due = count - last_count >= JOURNAL_EVERY_BLOCKS or now - last_time >= JOURNAL_EVERY_SECONDS
                if not (force or due):
                    return
                ranges = _ranges(finished)
            state = self.journal.get(JOURNAL_KEY)
            if state:
                state["done"] = ranges
                self.journal.update({JOURNAL_KEY: state})
            self._journalled = (count, now)

    def _abandon(self, snapshot_id: str) -> None:
        """A failure for good: delete this run's pending snapshot (best effort) and forget it."""
        ec2 = self.clients.client("ec2", self.region)
        try:
            delete_snapshot(ec2, self.call, self.region, snapshot_id)  # gone already: as good
        except TargetError as exc:
            self.progress.note(f"could not delete pending snapshot {snapshot_id}: {exc}")
        self._next_generation()
