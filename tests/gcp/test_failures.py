"""What real GCE does when things go wrong, reproduced by the strict stand-ins, and what publish,
plan and status make of it: failed inserts, FAILED images, reused requestIds, eventual consistency,
throttling with Retry-After."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.stack import PROJECT, RecordingRetry, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION
from imgpub.journal import Journal
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.versions import LABEL_EXACT

SettingsFactory = Callable[..., GcpSettings]
NAME = "demo-linux-1-2-3"


def objects(storage_client: Any, settings: GcpSettings) -> list[str]:
    return [b.name for b in storage_client.list_blobs(settings.bucket)]


def inserts(gce: FakeGce) -> list[str]:
    return gce.calls("POST", "/global/images?")


def test_a_failed_insert_deletes_the_object_this_run_uploaded(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal, storage_client: Any
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.fail_next_operation("INVALID_IMAGE_TAR", "The tar archive is not a valid image.")

    with pytest.raises(CloudError, match=r"create image demo-linux-1-2-3 failed \[INVALID_IMAGE_TAR\]"):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    assert objects(storage_client, settings) == []


def test_keep_upload_keeps_the_object_of_a_failed_insert(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal, storage_client: Any
) -> None:
    settings = make_settings(keep_upload=True)
    info = image_info(disk)
    gce.fail_next_operation("INVALID_IMAGE_TAR", "The tar archive is not a valid image.")
    with pytest.raises(CloudError):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    assert len(objects(storage_client, settings)) == 1


def test_a_rerun_after_a_failed_insert_rebuilds_the_failed_image(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.fail_next_operation("QUOTA_EXCEEDED", "Quota 'IMAGES' exceeded.", 403)
    with pytest.raises(CloudError, match="QUOTA_EXCEEDED"):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    assert gce.image(PROJECT, NAME)["status"] == "FAILED"  # type: ignore[index]

    published = GcpProvider().publish(info, settings, disk, context(settings, info, Journal(journal.path)))

    assert published.changed and gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
    assert len(gce.calls("DELETE", f"/global/images/{NAME}")) == 1
    first, second = (call.split("requestId=")[1] for call in inserts(gce))
    assert first != second and uuid.UUID(first) and uuid.UUID(second)


def test_a_rerun_after_a_failed_insert_is_not_answered_with_the_old_operation(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    """GCE answers a reused requestId with the earlier (FAILED) operation: a re-run needs a fresh one."""
    settings = make_settings()
    info = image_info(disk)
    gce.fail_next_operation("QUOTA_EXCEEDED", "Quota 'IMAGES' exceeded.", 403)
    with pytest.raises(CloudError):
        GcpProvider().publish(info, settings, disk, context(settings, info, journal))
    with gce.lock:  # someone cleaned the FAILED image up by hand
        del gce.state.images[(PROJECT, NAME)]

    GcpProvider().publish(info, settings, disk, context(settings, info, Journal(journal.path)))

    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]


def test_plan_and_status_show_a_failed_image_and_publish_replaces_it(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
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
    gce.add_image(PROJECT, NAME, labels=labels, status="FAILED")

    plan = GcpProvider().plan(info, settings, ctx)
    status = GcpProvider().status(info, settings, ctx)

    assert [(a.kind, a.resource) for a in plan.actions][:3] == [
        ("replace", NAME),
        ("upload", f"gs://{settings.bucket}/imgpub/{NAME}-{ctx.digest}.tar.gz"),
        ("create", NAME),
    ]
    assert "FAILED" in plan.actions[0].detail and not plan.up_to_date and plan.conflict is None
    assert status.drift == [
        f"image {NAME} is FAILED (its creation failed): publish deletes and creates it again"
    ]
    GcpProvider().publish(info, settings, disk, ctx)
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]


def test_a_failed_image_of_another_digest_is_not_a_conflict(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    """A FAILED image was never published: it does not need --replace."""
    settings = make_settings()
    info = image_info(disk)
    labels = {
        LABEL_NAME: "demo-linux",
        LABEL_VERSION: "1-2-3",
        LABEL_EXACT: "1_2e2_2e3",
        LABEL_DIGEST: "0" * 24,
    }
    gce.add_image(PROJECT, NAME, labels=labels, status="FAILED")
    ctx = context(settings, info, journal)

    assert GcpProvider().plan(info, settings, ctx).conflict is None
    GcpProvider().publish(info, settings, disk, ctx)

    assert gce.image(PROJECT, NAME)["labels"][LABEL_DIGEST] == ctx.digest  # type: ignore[index]


def test_an_image_not_yet_visible_after_its_insert_is_waited_for(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.state.lag_after_insert = 3

    published = GcpProvider().publish(info, settings, disk, context(settings, info, journal))

    assert published.artifacts[0].extra["status"] == "READY"
    assert len(inserts(gce)) == 1


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "wait"),
    [
        (429, "rateLimitExceeded", "7", 7.0),
        (503, "backendError", "2", 2.0),
        (403, "userRateLimitExceeded", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past
    ],
)
def test_throttling_is_retried_after_the_time_gce_asks_for(
    make_settings: SettingsFactory,
    gce: FakeGce,
    disk: DiskImage,
    journal: Journal,
    status: int,
    reason: str,
    retry_after: str,
    wait: float,
) -> None:
    settings = make_settings()
    info = image_info(disk)
    retry = RecordingRetry(attempts=3, initial_wait=20.0, max_wait=60.0)
    gce.fail(status, method="POST", path="/global/images", reason=reason, retry_after=retry_after)

    GcpProvider().publish(info, settings, disk, context(settings, info, journal, retry=retry))

    assert retry.waits == [wait]
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]


def test_an_image_left_pending_that_ends_failed_is_created_again(
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
    monkeypatch.setattr("imgpub_gcp.image.POLL_SECONDS", 0.02)
    pending = gce.add_image(PROJECT, NAME, labels=labels, status="PENDING")
    threading.Timer(0.2, lambda: pending.update(status="FAILED")).start()

    published = GcpProvider().publish(info, settings, disk, ctx)

    assert published.changed and len(gce.calls("DELETE", f"/global/images/{NAME}")) == 1
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
