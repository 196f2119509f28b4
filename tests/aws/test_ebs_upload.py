"""EBS direct upload against the strict moto server: data, parameters, faults, resume."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto, context, image_info
from imaging import convert, sparse_raw
from imgpub.disk import DiskImage, open_image
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.retry import FAST
from imgpub_aws import AwsProvider
from imgpub_aws.clients import AwsClients
from imgpub_aws.ebs_upload import (
    BLOCK_SIZE,
    GENERATION_KEY,
    JOURNAL_EVERY_BLOCKS,
    JOURNAL_KEY,
    EbsUploader,
    volume_gib,
)
from imgpub_aws.errors import Caller
from imgpub_aws.settings import AwsSettings


def expected_blocks(disk: DiskImage) -> dict[int, bytes]:
    """Independent oracle: every 512 KiB block of the guest bytes that is not all zero, zero-padded."""
    out = {}
    for index in range(-(-disk.virtual_size // BLOCK_SIZE)):
        data = disk.read(index * BLOCK_SIZE, BLOCK_SIZE).ljust(BLOCK_SIZE, b"\0")
        if data.count(0) != BLOCK_SIZE:
            out[index] = data
    return out


def uploader(settings: AwsSettings, journal: Journal, clients: AwsClients | None = None) -> EbsUploader:
    return EbsUploader(
        clients or AwsClients(settings),
        Caller("aws-main", FAST),
        "us-east-1",
        journal,
        RecordingProgress(),
        concurrency=4,
        digest="d" * 24,
        description="imgpub test",
        tags={"imgpub:digest": "d" * 24, "team": "os"},
    )


def test_uploads_exactly_the_data_blocks_with_checksums(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    assert disk.virtual_size % BLOCK_SIZE != 0, "the test image must end in a partial block"
    want = expected_blocks(disk)
    result = uploader(settings_for(), Journal(tmp_path / "j.json")).upload(
        disk, volume_gib(disk.virtual_size)
    )

    assert moto.blocks(result.snapshot_id) == want
    assert result.blocks_sent == len(want) and result.bytes_sent == len(want) * BLOCK_SIZE
    puts = moto.requests("PutSnapshotBlock")
    sent = sorted(int(r["path"].rsplit("/", 1)[1]) for r in puts)
    assert sent == sorted(want), "zero blocks must never be sent, data blocks exactly once"
    for r in puts:
        index = int(r["path"].rsplit("/", 1)[1])
        assert r["body_length"] == BLOCK_SIZE
        assert r["headers"]["x-amz-checksum-algorithm"] == "SHA256"
        assert (
            r["headers"]["x-amz-checksum"] == base64.b64encode(hashlib.sha256(want[index]).digest()).decode()
        )
        assert r["headers"]["x-amz-data-length"] == str(BLOCK_SIZE)

    (start,) = moto.requests("StartSnapshot")
    assert start["params"]["VolumeSize"] == 1
    assert start["params"]["Timeout"] == 4320
    assert len(start["params"]["ClientToken"]) == 64
    assert {"Key": "team", "Value": "os"} in start["params"]["Tags"]
    (complete,) = moto.requests("CompleteSnapshot")
    linear = hashlib.sha256(b"".join(hashlib.sha256(want[i]).digest() for i in sorted(want))).digest()
    assert complete["headers"]["x-amz-changedblockscount"] == str(len(want))
    assert complete["headers"]["x-amz-checksum"] == base64.b64encode(linear).decode()
    assert complete["headers"]["x-amz-checksum-aggregation-method"] == "LINEAR"
    snap = moto.client("ec2").describe_snapshots(SnapshotIds=[result.snapshot_id])["Snapshots"][0]
    assert snap["State"] == "completed"


def test_throttling_and_5xx_are_retried(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault("PutSnapshotBlock", status=429, code="ThrottlingException", count=2)
    moto.fault("PutSnapshotBlock", status=503, code="ServiceUnavailable", count=1)
    moto.fault("StartSnapshot", status=400, code="RequestThrottledException", count=1)
    moto.fault("DescribeSnapshots", status=503, code="RequestLimitExceeded", count=1)
    result = uploader(settings_for(), Journal(tmp_path / "j.json")).upload(disk, 1)
    assert moto.blocks(result.snapshot_id) == expected_blocks(disk)
    assert len(moto.requests("PutSnapshotBlock")) == len(expected_blocks(disk)) + 3
    assert len(moto.requests("StartSnapshot")) == 2


def test_access_denied_fails_fast_and_leaves_no_snapshot(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    moto.fault(
        "PutSnapshotBlock",
        status=403,
        code="AccessDeniedException",
        count=1000,
        message="not authorized to perform: ebs:PutSnapshotBlock",
    )
    journal = Journal(tmp_path / "j.json")
    with pytest.raises(CloudError) as info:
        uploader(settings_for(), journal).upload(disk, 1)
    text = str(info.value)
    assert "ebs:PutSnapshotBlock" in text and "IAM permission for PutSnapshotBlock" in text
    assert info.value.code == "AccessDeniedException"
    assert len(moto.requests("PutSnapshotBlock")) <= 4 * 2 + 1, "no retries for AccessDenied"
    assert moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    assert journal.get(JOURNAL_KEY) is None and journal.get(GENERATION_KEY) == 1


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: nothing cleans up)."""


def crash_after(clients: AwsClients, puts: int) -> None:
    seen = {"n": 0}
    orig = clients.new_client

    def hooked(service: str, region: str, *, pool: int = 1) -> Any:
        client = orig(service, region, pool=pool)

        def before_send(**_: Any) -> None:
            seen["n"] += 1
            if seen["n"] > puts:
                raise Crash()

        client.meta.events.register("before-send.ebs.PutSnapshotBlock", before_send)
        return client

    clients.new_client = hooked  # type: ignore[method-assign]


def test_crash_mid_upload_resumes_the_same_snapshot(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    journal_path = tmp_path / "j.json"
    clients = AwsClients(settings)
    crash_after(clients, 8)
    with pytest.raises(Crash):
        uploader(settings, Journal(journal_path), clients).upload(disk, 1)
    state = Journal(journal_path).get(JOURNAL_KEY)
    done = {i for a, b in state["done"] for i in range(a, b)}
    assert 0 < len(done) <= 8
    moto.reset()  # forget the log; keep nothing of the first run but the journal...
    # ... which now points at a snapshot moto no longer has: start over
    fresh = uploader(settings, Journal(journal_path)).upload(disk, 1)
    assert moto.blocks(fresh.snapshot_id) == expected_blocks(disk)
    assert fresh.blocks_resumed == 0


def test_crash_resume_skips_uploaded_blocks(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    settings = settings_for()
    journal_path = tmp_path / "j.json"
    clients = AwsClients(settings)
    crash_after(clients, 12)
    with pytest.raises(Crash):
        uploader(settings, Journal(journal_path), clients).upload(disk, 1)
    first = Journal(journal_path).get(JOURNAL_KEY)
    plan = AwsProvider().plan(image_info(disk), settings, context(tmp_path, journal=Journal(journal_path)))
    assert plan.actions[0].detail == f"resume pending snapshot {first['snapshot_id']}"
    done = {i for a, b in first["done"] for i in range(a, b)}
    puts_before = len(moto.requests("PutSnapshotBlock"))

    result = uploader(settings, Journal(journal_path)).upload(disk, 1)
    want = expected_blocks(disk)
    assert result.snapshot_id == first["snapshot_id"]
    assert result.blocks_resumed == len(done)
    assert len(moto.requests("StartSnapshot")) == 1
    resent = [int(r["path"].rsplit("/", 1)[1]) for r in moto.requests("PutSnapshotBlock")[puts_before:]]
    assert sorted(resent) == sorted(set(want) - done)
    assert moto.blocks(result.snapshot_id) == want
    assert Journal(journal_path).get(JOURNAL_KEY) is None


@pytest.mark.parametrize("fmt", [("qcow2", "qcow2"), ("vmdk", "vmdk", "subformat=streamOptimized")])
def test_any_source_format_uploads_the_same_blocks(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, fmt: tuple[str, ...]
) -> None:
    converted = convert(disk.path, tmp_path / f"disk.{fmt[0]}", fmt[1], *fmt[2:])
    with open_image(converted) as img:
        assert img.format != "raw"
        result = uploader(settings_for(), Journal(tmp_path / "j.json")).upload(img, 1)
    assert moto.blocks(result.snapshot_id) == expected_blocks(disk)


def test_throttling_that_never_ends_fails_and_keeps_the_snapshot_for_the_next_run(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path
) -> None:
    """Not a failure for good: the re-run resumes the pending snapshot, sending nothing twice."""
    moto.fault(
        "PutSnapshotBlock",
        status=400,
        code="RequestThrottledException",
        count=30,
        after=10,
        message="ACCOUNT_THROTTLED",
    )
    journal = Journal(tmp_path / "j.json")
    with pytest.raises(CloudError) as info:
        uploader(settings_for(), journal).upload(disk, 1)
    text = str(info.value)
    assert info.value.retryable and "block(s) failed" in text and "ACCOUNT_THROTTLED" in text
    (snap,) = moto.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert f"the pending snapshot {snap['SnapshotId']} is kept: a re-run resumes it" in text
    assert snap["State"] == "pending" and not moto.requests("DeleteSnapshot")
    moto.reset_faults()

    result = uploader(settings_for(), Journal(journal.path)).upload(disk, 1)
    assert result.snapshot_id == snap["SnapshotId"] and result.blocks_resumed >= 10
    stored = [r for r in moto.requests("PutSnapshotBlock") if r["acted"]]
    sent = [int(r["path"].rsplit("/", 1)[1]) for r in stored]
    assert sorted(sent) == sorted(expected_blocks(disk)), "every block stored once"
    assert moto.blocks(result.snapshot_id) == expected_blocks(disk)


@pytest.fixture
def big_disk(tmp_path: Path) -> Iterator[DiskImage]:
    """200 data blocks (100 MiB), each different, with a hole in the middle."""
    writes = [(i * BLOCK_SIZE, struct.pack(">I", i + 1) * (BLOCK_SIZE // 4)) for i in range(100)]
    writes += [((150 + i) * BLOCK_SIZE, struct.pack(">I", i + 7) * (BLOCK_SIZE // 4)) for i in range(100)]
    with open_image(sparse_raw(tmp_path / "big.raw", 250 * BLOCK_SIZE, writes), "raw") as img:
        yield img


def killed_after(clients: AwsClients, puts: int, journal_path: Path) -> Path:
    """Like crash_after, but as SIGKILL does it: the journal stays as it was on disk when the process
    died (whatever a `finally` writes afterwards is thrown away). Returns the saved copy."""
    saved = journal_path.with_suffix(".at-kill")
    seen = {"n": 0}
    lock = threading.Lock()
    orig = clients.new_client

    def hooked(service: str, region: str, *, pool: int = 1) -> Any:
        client = orig(service, region, pool=pool)

        def before_send(**_: Any) -> None:
            with lock:
                seen["n"] += 1
                if seen["n"] == puts + 1:
                    shutil.copyfile(journal_path, saved)
                if seen["n"] > puts:
                    raise Crash()

        client.meta.events.register("before-send.ebs.PutSnapshotBlock", before_send)
        return client

    clients.new_client = hooked  # type: ignore[method-assign]
    return saved


def test_a_killed_upload_sends_again_at_most_the_journal_interval(
    moto: Moto, settings_for: Any, big_disk: DiskImage, tmp_path: Path
) -> None:
    """The journal is written every JOURNAL_EVERY_BLOCKS finished blocks (or half a second): killed
    after 160 blocks, the resumed run sends again only what finished since the last write and what
    was in flight."""
    settings = settings_for()
    journal_path = tmp_path / "j.json"
    clients = AwsClients(settings)
    saved = killed_after(clients, 160, journal_path)
    with pytest.raises(Crash):
        uploader(settings, Journal(journal_path), clients).upload(big_disk, 1)
    shutil.copyfile(saved, journal_path)  # what the killed process left on disk
    first = {int(r["path"].rsplit("/", 1)[1]) for r in moto.requests("PutSnapshotBlock")}
    assert len(first) >= 160

    result = uploader(settings, Journal(journal_path)).upload(big_disk, 1)
    puts = [int(r["path"].rsplit("/", 1)[1]) for r in moto.requests("PutSnapshotBlock")]
    again = puts[len(first) :]
    resent = first & set(again)
    assert len(resent) <= JOURNAL_EVERY_BLOCKS + 4, f"{len(resent)} blocks sent twice"
    assert result.blocks_resumed >= 160 - JOURNAL_EVERY_BLOCKS - 4
    assert moto.blocks(result.snapshot_id) == expected_blocks(big_disk)
