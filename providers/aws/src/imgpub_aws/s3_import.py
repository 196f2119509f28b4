"""Fallback upload: stream the raw disk to S3 (multipart, no temp file), then ImportSnapshot.

Every byte goes up, holes included (RAW has no sparse form), so prefer ebs-direct where allowed.
The S3 object is deleted afterwards, also when the import fails.

The object's key and the ImportSnapshot ClientToken carry the machine nonce (ledger.py): a run on
another machine importing the same image at the same time writes, imports and deletes its own
object, never this run's (VM Import reads the object after ImportSnapshot returns, so a shared key
deleted by the first run to finish would break the other's import). A run killed on the way leaves
its object (and an unfinished multipart upload) under `s3_prefix`: a lifecycle rule on that prefix
(expire objects, abort incomplete multipart uploads after a day) collects them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from imgpub.errors import CloudError, TargetError
from imgpub.journal import Journal
from imgpub.progress import Progress
from imgpub.provider import DiskImage
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller
from imgpub_aws.ledger import Ledger, machine_nonce
from imgpub_aws.tags import tag_list

MIN_PART = 16 << 20
"""S3 allows at most 10,000 parts; 16 MiB parts cover 156 GiB before the part size has to grow."""
MAX_PARTS = 10000
ROLE = "vmimport"
ROLE_DOC = "https://docs.aws.amazon.com/vm-import/latest/userguide/required-permissions.html"
WAIT_TIMEOUT_SECONDS = 6 * 3600
GENERATION_KEY = "s3_import_generation"
"""Counts failed imports in the journal: the next import needs a new ClientToken (EC2 would answer
the old one with the failed task)."""


def part_size(size: int) -> int:
    mib = 1 << 20
    return max(MIN_PART, math.ceil(size / MAX_PARTS / mib) * mib)


class S3Importer:
    def __init__(
        self,
        clients: AwsClients,
        call: Caller,
        region: str,
        progress: Progress,
        journal: Journal,
        ledger: Ledger,
        *,
        bucket: str,
        prefix: str,
        digest: str,
        tags: dict[str, str],
        encrypted: bool = False,
        kms_key_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients, self.call, self.region, self.progress = clients, call, region, progress
        self.journal, self.ledger = journal, ledger
        self.nonce = machine_nonce(journal)
        self.bucket, self.key = bucket, f"{prefix}{digest}-{self.nonce[:12]}.raw"
        self.digest, self.tags = digest, tags
        self.encrypted, self.kms_key_id, self.sleep = encrypted, kms_key_id, sleep

    def upload(self, disk: DiskImage) -> str:
        """The id of a completed snapshot holding the disk."""
        self._check_role()
        try:
            self._put_object(disk)
            task_id = self._import_snapshot()
            snapshot_id = self._wait(task_id)
        finally:
            self._delete_object()
        self.ledger.made(snapshot_id)
        ec2 = self.clients.client("ec2", self.region)
        self.call(
            "CreateTags",
            self.region,
            lambda: ec2.create_tags(Resources=[snapshot_id], Tags=tag_list(self.tags)),
        )
        return snapshot_id

    def _check_role(self) -> None:
        iam = self.clients.client("iam", self.region)
        try:
            self.call("GetRole", None, lambda: iam.get_role(RoleName=ROLE))
        except CloudError as exc:
            if exc.code != "NoSuchEntity":
                raise
            raise CloudError(
                self.call.target,
                "GetRole",
                f"the IAM service role '{ROLE}' that VM Import needs does not exist; "
                f"create it as described in {ROLE_DOC}, or use upload: ebs-direct",
                code=exc.code,
                region=self.region,
            ) from exc

    def _put_object(self, disk: DiskImage) -> None:
        s3 = self.clients.client("s3", self.region)
        size = disk.virtual_size
        step = part_size(size)
        upload_id = self.call(
            "CreateMultipartUpload",
            self.region,
            lambda: s3.create_multipart_upload(Bucket=self.bucket, Key=self.key),
        )["UploadId"]
        self.ledger.made(f"s3://{self.bucket}/{self.key}")
        self.progress.stage(f"upload s3://{self.bucket}/{self.key}", size)
        parts: list[dict[str, Any]] = []
        try:
            for number, offset in enumerate(range(0, size, step), start=1):
                data = disk.read(offset, min(step, size - offset))
                resp = self.call(
                    "UploadPart",
                    self.region,
                    partial(
                        s3.upload_part,
                        Bucket=self.bucket,
                        Key=self.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                    ),
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                self.progress.advance(len(data))
            self.call(
                "CompleteMultipartUpload",
                self.region,
                lambda: s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                ),
            )
        except BaseException:
            try:
                self.call(
                    "AbortMultipartUpload",
                    self.region,
                    lambda: s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id),
                )
            except TargetError as exc:
                self.progress.note(f"could not abort the multipart upload of {self.key}: {exc}")
            raise

    def _import_snapshot(self) -> str:
        ec2 = self.clients.client("ec2", self.region)
        params: dict[str, Any] = {
            "Description": f"imgpub {self.digest}",
            "DiskContainer": {"Format": "RAW", "UserBucket": {"S3Bucket": self.bucket, "S3Key": self.key}},
            "ClientToken": self._token(),
            "RoleName": ROLE,
        }
        if self.encrypted:
            params["Encrypted"] = True
            if self.kms_key_id:
                params["KmsKeyId"] = self.kms_key_id
        return str(
            self.call("ImportSnapshot", self.region, lambda: ec2.import_snapshot(**params))["ImportTaskId"]
        )

    def _token(self) -> str:
        """The same for every retry of this import and for a re-run on this machine after a kill (EC2
        answers it with the task already running); new after a failed import, other on other machines."""
        generation = self.journal.get(GENERATION_KEY, 0)
        seed = f"import:{self.digest}:{self.region}:{generation}:{self.nonce}"
        return hashlib.sha256(seed.encode()).hexdigest()[:64]

    def _wait(self, task_id: str) -> str:
        ec2 = self.clients.client("ec2", self.region)
        self.progress.stage(f"import snapshot {self.region}", 100, unit="%")
        deadline, delay, shown = time.monotonic() + WAIT_TIMEOUT_SECONDS, 1.0, 0
        while True:
            tasks = self.call(
                "DescribeImportSnapshotTasks",
                self.region,
                lambda: ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id]),
            )
            detail = tasks["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
            status = detail.get("Status")
            progress = int(detail.get("Progress") or 0)
            if progress > shown:
                self.progress.advance(progress - shown)
                shown = progress
            if status == "completed" and detail.get("SnapshotId"):
                return str(detail["SnapshotId"])
            if status in ("deleting", "deleted") or time.monotonic() > deadline:
                # the task failed for good: the next import needs a new token
                self.journal.update({GENERATION_KEY: int(self.journal.get(GENERATION_KEY, 0)) + 1})
                raise CloudError(
                    self.call.target,
                    "ImportSnapshot",
                    f"import task {task_id} {status}: {detail.get('StatusMessage', '')}",
                    region=self.region,
                )
            self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _delete_object(self) -> None:
        """This run's object (its key carries the machine nonce): never another run's."""
        s3 = self.clients.client("s3", self.region)
        try:
            self.call("DeleteObject", self.region, lambda: s3.delete_object(Bucket=self.bucket, Key=self.key))
        except TargetError as exc:
            self.progress.note(f"could not delete s3://{self.bucket}/{self.key}: {exc}")
