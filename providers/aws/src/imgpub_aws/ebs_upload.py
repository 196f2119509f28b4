"""Upload a disk as an EBS snapshot through the EBS direct APIs (the way coldsnap does it).

Only 512 KiB blocks holding data are sent, each with its SHA-256; CompleteSnapshot gets the block
count and the LINEAR aggregate (SHA-256 over the raw block digests in index order). The journal keeps
the pending snapshot id and the finished block indexes, so a crashed run continues where it stopped.
A failure for good deletes the pending snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
import uuid
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
from imgpub_aws.errors import Caller, error_code, is_transient

BLOCK_SIZE = 524288
"""EBS direct block size: every PutSnapshotBlock body is exactly this long."""
GIB = 1 << 30
SNAPSHOT_TIMEOUT_MINUTES = 4320
"""The longest AWS allows: a resumed run may come back hours later to the same pending snapshot."""
JOURNAL_EVERY_SECONDS = 2.0
"""How often finished block indexes reach the journal; at most this much work is redone after a crash."""
WAIT_TIMEOUT_SECONDS = 6 * 3600
JOURNAL_KEY = "ebs_upload"
GENERATION_KEY = "ebs_generation"
NONCE_KEY = "ebs_token_nonce"


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients, self.call, self.region = clients, call, region
        self.journal, self.progress = journal, progress
        self.concurrency, self.digest = concurrency, digest
        self.description, self.tags = description, tags
        self.encrypted, self.kms_key_id = encrypted, kms_key_id
        self.sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()

    def upload(self, disk: DiskImage, volume_size: int) -> UploadResult:
        """Start (or resume) a snapshot, send the data blocks, complete it and wait until it is usable."""
        snapshot_id, done = self._resume() or (self._start_snapshot(volume_size), set())
        try:
            digests, sent = self._put_blocks(disk, snapshot_id, done)
            self._complete_snapshot(snapshot_id, digests)
            self._wait_completed(snapshot_id)
        except Exception:  # a failure for good (a crash or Ctrl-C is a BaseException: resumable)
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
        nonce = self.journal.get(NONCE_KEY)
        if nonce is None:
            nonce = uuid.uuid4().hex
            self.journal.update({NONCE_KEY: nonce})
        seed = f"{self.digest}:{self.region}:{generation}:{nonce}"
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
        last_flush = time.monotonic()
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
                    if time.monotonic() - last_flush > JOURNAL_EVERY_SECONDS:
                        self._flush(finished)
                        last_flush = time.monotonic()
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

    def _wait_completed(self, snapshot_id: str) -> None:
        ec2 = self.clients.client("ec2", self.region)
        deadline, delay = time.monotonic() + WAIT_TIMEOUT_SECONDS, 0.5
        while True:
            snap = self.call(
                "DescribeSnapshots", self.region, lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])
            )["Snapshots"][0]
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

    def _flush(self, finished: set[int]) -> None:
        state = self.journal.get(JOURNAL_KEY)
        if state:
            with self._lock:
                state["done"] = _ranges(finished)
            self.journal.update({JOURNAL_KEY: state})

    def _abandon(self, snapshot_id: str) -> None:
        """A failure for good: delete the pending snapshot (best effort) and forget it."""
        ec2 = self.clients.client("ec2", self.region)
        try:
            self.call("DeleteSnapshot", self.region, lambda: ec2.delete_snapshot(SnapshotId=snapshot_id))
        except TargetError as exc:
            self.progress.note(f"could not delete pending snapshot {snapshot_id}: {exc}")
        self._next_generation()
