"""End to end against gcp-storage-emulator and the GCE fake: publish, re-run, resume, conflicts."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError, ImageConflictError
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.retry import FAST
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.gcs_upload import QUANTUM
from imgpub_gcp.versions import LABEL_EXACT

SettingsFactory = Callable[..., GcpSettings]


def _tarball(storage_client: Any, settings: GcpSettings) -> list[Any]:
    return list(storage_client.list_blobs(settings.bucket, prefix=settings.object_prefix))


def test_publish_creates_image_whose_tarball_extracts_to_the_guest_bytes(
    make_settings: SettingsFactory,
    gce: FakeGce,
    disk: DiskImage,
    raw_path: Path,
    journal: Journal,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        keep_upload=True, family="demo-linux", storage_locations=["eu"], labels={"team": "os"}
    )
    info = image_info(disk)
    ctx = context(settings, info, journal)

    published = GcpProvider().publish(info, settings, disk, ctx)

    (artifact,) = published.artifacts
    assert published.changed and artifact.id == "demo-linux-1-2-3"
    image = gce.image(PROJECT, "demo-linux-1-2-3")
    assert image is not None and image["status"] == "READY"
    assert image["labels"] == {
        "team": "os",
        LABEL_NAME: "demo-linux",
        LABEL_VERSION: "1-2-3",
        LABEL_EXACT: "1_2e2_2e3",
        LABEL_DIGEST: ctx.digest,
    }
    assert image["architecture"] == "X86_64" and image["family"] == "demo-linux"
    assert [f["type"] for f in image["guestOsFeatures"]] == ["GVNIC", "UEFI_COMPATIBLE"]
    assert image["storageLocations"] == ["eu"] and image["diskSizeGb"] == "1"
    assert image["rawDisk"]["source"].endswith(
        f"{settings.bucket}/imgpub/demo-linux-1-2-3-{ctx.digest}.tar.gz"
    )

    (blob,) = _tarball(storage_client, settings)
    archive = tmp_path / "image.tar.gz"
    blob.download_to_filename(archive)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xSzf", str(archive), "-C", str(out)], check=True)
    extracted = out / "disk.raw"
    assert extracted.stat().st_size == 1 << 30
    with open(extracted, "rb") as got, open(raw_path, "rb") as want:
        assert got.read(disk.virtual_size) == want.read()
        fd = got.fileno()
        with pytest.raises(OSError):  # nothing but holes after the guest's size
            os.lseek(fd, disk.virtual_size, os.SEEK_DATA)
    assert artifact.extra["bytes_sent"] == blob.size == artifact.extra["object_size"]


def test_rerun_is_a_noop_and_the_upload_is_deleted(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal, storage_client: Any
) -> None:
    settings = make_settings()
    info = image_info(disk)
    ctx = context(settings, info, journal)
    GcpProvider().publish(info, settings, disk, ctx)
    assert _tarball(storage_client, settings) == []
    inserts = len(gce.calls("POST", "/global/images?"))

    plan = GcpProvider().plan(info, settings, ctx)
    again = GcpProvider().publish(info, settings, disk, ctx)

    assert plan.up_to_date and [a.id for a in plan.existing] == ["demo-linux-1-2-3"]
    assert not again.changed
    assert len(gce.calls("POST", "/global/images?")) == inserts == 1
    status = GcpProvider().status(info, settings, ctx)
    assert status.drift == [] and status.artifacts[0].id == "demo-linux-1-2-3"


def test_plan_lists_upload_and_create_before_first_publish(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(share_members=["group:qa@example.com"])
    info = image_info(disk)
    plan = GcpProvider().plan(info, settings, context(settings, info, journal))
    assert [a.kind for a in plan.actions] == ["upload", "create", "share", "delete"]
    assert gce.image(PROJECT, "demo-linux-1-2-3") is None


def _interrupted(after: int) -> Callable[..., Iterable[bytes]]:
    from imgpub.disk.write_gce import gce_tar_stream

    def stream(img: DiskImage, **kwargs: Any) -> Iterator[bytes]:
        sent = 0
        for piece in gce_tar_stream(img, **kwargs):
            if sent + len(piece) > after:
                yield piece[: after - sent]
                raise OSError("simulated crash in the middle of the upload")
            sent += len(piece)
            yield piece

    return stream


def test_interrupted_upload_resumes_from_the_offset_gcs_reports(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal, storage_client: Any
) -> None:
    settings = make_settings(keep_upload=True, compression_level=0)
    info = image_info(disk)
    ctx = context(settings, info, journal)
    with pytest.raises(OSError, match="simulated crash"):
        GcpProvider(_interrupted(5 * QUANTUM + 1000), upload_chunk=QUANTUM).publish(info, settings, disk, ctx)
    assert gce.image(PROJECT, "demo-linux-1-2-3") is None
    confirmed = journal.get("gcs_upload")["confirmed"]
    assert confirmed == 5 * QUANTUM  # every whole chunk followed by at least one more byte

    progress = RecordingProgress()
    ctx2 = context(settings, info, Journal(journal.path), progress=progress)
    published = GcpProvider(upload_chunk=QUANTUM).publish(info, settings, disk, ctx2)

    extra = published.artifacts[0].extra
    assert extra["resumed_from"] == confirmed
    assert extra["bytes_sent"] == extra["object_size"] - confirmed
    assert any("resuming upload" in n and f"{confirmed:,}" in n for n in progress.notes)
    (blob,) = _tarball(storage_client, settings)
    assert blob.size == extra["object_size"]
    assert gce.image(PROJECT, "demo-linux-1-2-3")["status"] == "READY"  # type: ignore[index]


def test_stopped_after_upload_continues_with_the_image(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.fail(503, times=99, method="POST", path="/global/images")
    with pytest.raises(CloudError, match=r"create image demo-linux-1-2-3 failed \[503"):
        GcpProvider().publish(info, settings, disk, ctx)
    assert len(gce.calls("POST", "/global/images?")) == FAST.attempts  # ctx.retry's budget, no SDK retries
    gce.reset()
    assert [a.kind for a in GcpProvider().plan(info, settings, ctx).actions] == ["create", "delete"]

    published = GcpProvider().publish(info, settings, disk, context(settings, info, Journal(journal.path)))

    assert published.artifacts[0].extra["bytes_sent"] == 0  # the object was already there


def test_throttling_is_retried(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.fail(429, times=2, method="GET", path="/global/images")
    gce.fail(503, times=2, method="POST", path="/global/images")
    gce.fail(403, times=1, method="POST", path="/operations/", reason="rateLimitExceeded")

    published = GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    assert published.artifacts[0].id == "demo-linux-1-2-3"
    assert len(gce.calls("POST", "/global/images?")) == 3


def test_operation_error_is_reported_in_full(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.fail_next_operation("INVALID_IMAGE_TAR", "The tar archive is not a valid image.")
    with pytest.raises(CloudError) as caught:
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    message = str(caught.value)
    assert message.startswith(
        "target gce: create image demo-linux-1-2-3 failed [INVALID_IMAGE_TAR]: operation "
    )
    assert "INVALID_IMAGE_TAR: The tar archive is not a valid image." in message
    assert "HTTP 400" in message


def test_sharing_merges_with_the_existing_policy(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(share_members=["group:qa@example.com"])
    info = image_info(disk)
    ctx = context(settings, info, journal)
    GcpProvider().publish(info, settings, disk, ctx)
    wider = make_settings(share_members=["group:qa@example.com", "user:ann@example.com"])
    assert [a.kind for a in GcpProvider().plan(info, wider, ctx).actions] == ["share"]
    assert GcpProvider().status(info, wider, ctx).drift == ["not shared with user:ann@example.com"]

    published = GcpProvider().publish(info, wider, disk, ctx)

    assert published.changed
    bindings = gce.policy(PROJECT, "demo-linux-1-2-3")["bindings"]
    assert bindings == [
        {"role": "roles/compute.imageUser", "members": ["group:qa@example.com", "user:ann@example.com"]}
    ]
    assert GcpProvider().status(info, wider, ctx).drift == []


def test_label_change_needs_no_new_upload(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(labels={"team": "os"})
    info = image_info(disk)
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    relabelled = make_settings(labels={"team": "kernel"})
    ctx = context(relabelled, info, journal)
    assert GcpProvider().status(info, relabelled, ctx).drift == ["labels differ: team"]

    published = GcpProvider().publish(info, relabelled, disk, ctx)

    assert published.changed and "bytes_sent" not in published.artifacts[0].extra
    assert gce.image(PROJECT, "demo-linux-1-2-3")["labels"]["team"] == "kernel"  # type: ignore[index]
    assert len(gce.calls("POST", "/global/images?")) == 1


def test_deprecate_previous_marks_older_family_images(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    gce.add_image(PROJECT, "demo-linux-1-2-2", family="demo-linux")
    gce.add_image(PROJECT, "other-family-1", family="other")
    settings = make_settings(family="demo-linux", deprecate_previous=True)
    info = image_info(disk)
    ctx = context(settings, info, journal)

    GcpProvider().publish(info, settings, disk, ctx)

    old = gce.image(PROJECT, "demo-linux-1-2-2")
    new = gce.image(PROJECT, "demo-linux-1-2-3")
    assert old is not None and new is not None
    assert old["deprecated"]["state"] == "DEPRECATED"
    assert old["deprecated"]["replacement"] == new["selfLink"]
    assert "deprecated" not in new and "deprecated" not in gce.image(PROJECT, "other-family-1")  # type: ignore[operator]
    assert GcpProvider().status(info, settings, ctx).drift == []


def test_conflict_needs_replace(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    changed = image_info(disk, content_digest="beef" * 16)
    ctx = context(settings, changed, journal)

    plan = GcpProvider().plan(changed, settings, ctx)
    assert plan.conflict is not None and "already exists with digest" in plan.conflict
    assert [a.kind for a in plan.actions][:3] == ["replace", "upload", "create"]
    assert GcpProvider().status(changed, settings, ctx).drift[0] == plan.conflict
    with pytest.raises(ImageConflictError, match="--replace"):
        GcpProvider().publish(changed, settings, disk, ctx)

    ctx.replace = True
    GcpProvider().publish(changed, settings, disk, ctx)

    image = gce.image(PROJECT, "demo-linux-1-2-3")
    assert image is not None and image["labels"][LABEL_DIGEST] == ctx.digest
    assert len(gce.calls("DELETE", "/global/images/demo-linux-1-2-3")) == 1


def test_an_image_left_pending_is_awaited_and_a_failed_one_rebuilt(
    make_settings: SettingsFactory,
    gce: FakeGce,
    disk: DiskImage,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    info = image_info(disk)
    ctx = context(settings, info, journal)
    labels = {
        LABEL_NAME: "demo-linux",
        LABEL_VERSION: "1-2-3",
        LABEL_EXACT: "1_2e2_2e3",
        LABEL_DIGEST: ctx.digest,
    }
    monkeypatch.setattr("imgpub_gcp.image.POLL_SECONDS", 0.05)
    pending = gce.add_image(PROJECT, "demo-linux-1-2-3", labels=labels, status="PENDING")
    threading.Timer(0.2, lambda: pending.update(status="READY")).start()
    progress = RecordingProgress()

    waited = GcpProvider().publish(info, settings, disk, context(settings, info, journal, progress=progress))

    assert waited.artifacts[0].extra["status"] == "READY"
    assert "still being created" in progress.notes[0]
    assert gce.calls("POST", "/global/images?") == []

    gce.reset()
    gce.add_image(PROJECT, "demo-linux-1-2-3", labels=labels, status="FAILED")
    rebuilt = GcpProvider().publish(info, settings, disk, ctx)
    assert rebuilt.changed and len(gce.calls("DELETE", "/global/images/demo-linux-1-2-3")) == 1
    assert gce.image(PROJECT, "demo-linux-1-2-3")["status"] == "READY"  # type: ignore[index]


def test_an_image_of_the_same_name_not_made_by_imgpub_is_a_conflict(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    gce.add_image(PROJECT, "demo-linux-1-2-3", family="hand-made")
    settings = make_settings()
    info = image_info(disk)
    with pytest.raises(ImageConflictError, match=r"digest none \(not made by imgpub\)"):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    assert gce.image(PROJECT, "demo-linux-1-2-3")["family"] == "hand-made"  # type: ignore[index]
