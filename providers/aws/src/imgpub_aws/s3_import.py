"""Fallback upload: stream the raw disk to S3 (multipart, no temp file), then ImportSnapshot.

Every byte goes up, holes included (RAW has no sparse form), so prefer ebs-direct where allowed.
The S3 object is deleted afterwards, also when the import fails.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from imgpub.errors import CloudError, TargetError
from imgpub.progress import Progress
from imgpub.provider import DiskImage
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller
from imgpub_aws.tags import tag_list

MIN_PART = 16 << 20
"""S3 allows at most 10,000 parts; 16 MiB parts cover 156 GiB before the part size has to grow."""
MAX_PARTS = 10000
ROLE = "vmimport"
ROLE_DOC = "https://docs.aws.amazon.com/vm-import/latest/userguide/required-permissions.html"
WAIT_TIMEOUT_SECONDS = 6 * 3600


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
        self.bucket, self.key = bucket, f"{prefix}{digest}.raw"
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
                self.progress.note(f"could not abort the multipart upload {upload_id}: {exc}")
            raise

    def _import_snapshot(self) -> str:
        ec2 = self.clients.client("ec2", self.region)
        params: dict[str, Any] = {
            "Description": f"imgpub {self.digest}",
            "DiskContainer": {"Format": "RAW", "UserBucket": {"S3Bucket": self.bucket, "S3Key": self.key}},
            "ClientToken": hashlib.sha256(f"import:{self.digest}:{self.region}".encode()).hexdigest()[:64],
            "RoleName": ROLE,
        }
        if self.encrypted:
            params["Encrypted"] = True
            if self.kms_key_id:
                params["KmsKeyId"] = self.kms_key_id
        return str(
            self.call("ImportSnapshot", self.region, lambda: ec2.import_snapshot(**params))["ImportTaskId"]
        )

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
                raise CloudError(
                    self.call.target,
                    "ImportSnapshot",
                    f"import task {task_id} {status}: {detail.get('StatusMessage', '')}",
                    region=self.region,
                )
            self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _delete_object(self) -> None:
        s3 = self.clients.client("s3", self.region)
        try:
            self.call("DeleteObject", self.region, lambda: s3.delete_object(Bucket=self.bucket, Key=self.key))
        except TargetError as exc:
            self.progress.note(f"could not delete s3://{self.bucket}/{self.key}: {exc}")
