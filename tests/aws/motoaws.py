"""Helpers for the AWS tests: the moto server handle and builders for settings, images and contexts."""

from __future__ import annotations

import base64
import json
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from imgpub.disk import DiskImage
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import Context, ImageInfo
from imgpub.retry import FAST

ACCOUNT = "123456789012"
UNCHECKED = "_imgpub_unchecked"
"""Set on a client whose requests the contract check lets through (to show the server refuses them)."""


class Moto:
    """The server's URL, its fault/recording API and plain boto3 clients for assertions."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _post(self, path: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else b""
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self) -> None:
        self._post("/moto-api/reset")
        self._post("/_imgpub/reset")

    def fault(
        self,
        action: str | None,
        *,
        status: int = 503,
        code: str = "ServiceUnavailable",
        count: int = 1,
        after: int = 0,
        region: str | None = None,
        message: str = "injected fault",
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        content_type: str | None = None,
        echo: bool = False,
        lost_reply: bool = False,
        kill: int | None = None,
    ) -> None:
        """The next `count` matching requests (`action` None: any) after `after` answer
        `status`/`code`. `headers` are added (Retry-After), `body` replaces the error document ("" for
        an empty one; bytes sent as they are, as `content_type`), `echo` appends the request's
        headers (as some proxies' pages do), with `lost_reply` the request is carried out first and
        only its reply replaced, and `kill` is a pid the server SIGKILLs when the request arrives
        (after acting, with `lost_reply`)."""
        rule: dict[str, Any] = {
            "action": action,
            "status": status,
            "code": code,
            "count": count,
            "after": after,
            "region": region,
            "message": message,
            "headers": headers or {},
            "pass": lost_reply,
        }
        if isinstance(body, bytes):
            rule["body_b64"] = base64.b64encode(body).decode()
        elif body is not None:
            rule["body"] = body
        if content_type is not None:
            rule["content_type"] = content_type
        if echo:
            rule["echo"] = True
        if kill is not None:
            rule["kill"] = kill
        self._post("/_imgpub/faults", [rule])

    def reset_faults(self) -> None:
        """Forget the fault rules not used up yet (the state and the request log stay)."""
        req = urllib.request.Request(self.url + "/_imgpub/faults", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()

    def barrier(self, action: str, parties: int = 2, region: str | None = None) -> None:
        """The next `parties` `action` requests wait for each other, then go on together (a race)."""
        self._post("/_imgpub/barrier", {"action": action, "parties": parties, "region": region})

    def outcome(
        self,
        action: str,
        state: str,
        *,
        count: int = 1,
        region: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """The next `count` AMIs made by RegisterImage/CopyImage end in `state` (failed), or the next
        snapshot completed by CompleteSnapshot (error)."""
        self._post(
            "/_imgpub/outcomes",
            [{"action": action, "state": state, "count": count, "region": region, "message": message}],
        )

    def set_state(self, region: str, resource_id: str, state: str, message: str = "injected") -> None:
        """Put an AMI (failed, ...) or a snapshot (error, ...) into `state` now."""
        self._post(
            "/_imgpub/state", {"region": region, "id": resource_id, "state": state, "message": message}
        )

    def invisible_for(self, describes: int) -> None:
        """Every AMI made from now on is unknown to the next `describes` DescribeImages calls naming it
        (InvalidAMIID.NotFound), as EC2's eventual consistency does right after a create."""
        self._post("/_imgpub/consistency", {"describe_misses": describes})

    def in_use_after_deregister(self, deletes: int) -> None:
        """A deregistered AMI's snapshots answer InvalidSnapshot.InUse to the next `deletes`
        DeleteSnapshot calls naming each, as EC2 may for a while after DeregisterImage."""
        self._post("/_imgpub/consistency", {"in_use_after_deregister": deletes})

    def backdate(
        self, region: str, ami_id: str, *, created: datetime | None = None, deprecated: datetime | None = None
    ) -> None:
        """Make an AMI created at `created`, or deprecated since `deprecated` (a past time)."""
        self._post(
            "/_imgpub/backdate",
            {
                "region": region,
                "id": ami_id,
                "created": created.isoformat() if created else None,
                "deprecated": deprecated.isoformat() if deprecated else None,
            },
        )

    def requests(self, action: str | None = None) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/_imgpub/requests", timeout=30) as resp:
            log: list[dict[str, Any]] = json.loads(resp.read())
        return [r for r in log if action is None or r["action"] == action]

    def client(self, service: str, region: str = "us-east-1") -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def raw_client(self, service: str, region: str = "us-east-1") -> Any:
        """A client that sends what it is given: no botocore parameter validation, no contract check."""
        client = boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
        )
        setattr(client, UNCHECKED, True)
        return client

    def blocks(self, snapshot_id: str, region: str = "us-east-1") -> dict[int, bytes]:
        # moto's BlockTokens are UUIDs, not the base64 the model's pattern asks for: unchecked client
        ebs = self.raw_client("ebs", region)
        listed = ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
        return {
            b["BlockIndex"]: ebs.get_snapshot_block(
                SnapshotId=snapshot_id, BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"]
            )["BlockData"].read()
            for b in listed
        }


def image_info(disk: DiskImage, **kw: Any) -> ImageInfo:
    base: dict[str, Any] = {
        "name": "golden",
        "version": "1.2.3",
        "arch": "x86_64",
        "boot": "uefi",
        "virtual_size": disk.virtual_size,
        "content_digest": "c0ffee",
        "description": "Golden image",
    }
    return ImageInfo(**{**base, **kw})


def context(tmp_path: Path, digest: str = "d" * 24, **kw: Any) -> Context:
    kw.setdefault("journal", Journal(tmp_path / "journal.json"))
    kw.setdefault("retry", FAST)
    kw.setdefault("progress", RecordingProgress())
    return Context(target="aws-main", digest=digest, **kw)
