"""A reply lost after the server acted (issue 10, item 2): the retry, or the next run, finds what the
first attempt did and takes it as done: the insert's operation (its requestId), an image already
deleted, labels or a policy already set (a stale fingerprint or etag), an object already finished or
deleted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy, Rule
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION
from imgpub.journal import Journal
from imgpub.provider import Context, ImageInfo
from imgpub.retry import RetryPolicy
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.gcs_upload import QUANTUM
from imgpub_gcp.versions import LABEL_EXACT

SettingsFactory = Callable[..., GcpSettings]
NAME = "demo-linux-1-2-3"


def ours(ctx: Context) -> dict[str, str]:
    return {
        LABEL_NAME: "demo-linux",
        LABEL_VERSION: "1-2-3",
        LABEL_EXACT: "1_2e2_2e3",
        LABEL_DIGEST: ctx.digest,
    }


def request_ids(gce: FakeGce, method: str, path: str) -> list[str]:
    return [call.split("requestId=")[1] for call in gce.calls(method, path)]


def objects(storage_client: Any, settings: GcpSettings) -> list[str]:
    return [b.name for b in storage_client.list_blobs(settings.bucket)]


def test_a_lost_insert_reply_whose_retries_ran_out_is_adopted_by_the_next_run(
    make_settings: SettingsFactory, gce: FakeGce, gcs: FaultProxy, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    gce.fail(503, method="POST", path="/global/images", lose_reply=True)
    once = RetryPolicy(attempts=1)

    with pytest.raises(CloudError, match="create image demo-linux-1-2-3 failed") as caught:
        GcpProvider().publish(info, settings, disk, context(settings, info, journal, retry=once))
    assert caught.value.retryable
    sent = gcs.put_bytes()

    published = GcpProvider().publish(info, settings, disk, context(settings, info, Journal(journal.path)))

    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
    assert len(gce.calls("POST", "/global/images?")) == 1 and gcs.put_bytes() == sent
    assert published.artifacts[0].id == NAME


def test_a_lost_delete_reply_is_retried_with_its_request_id(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings()
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, NAME, labels=ours(ctx), status="FAILED")
    gce.fail(503, method="DELETE", path=f"/global/images/{NAME}", lose_reply=True)

    GcpProvider().publish(info, settings, disk, ctx)

    first, second = request_ids(gce, "DELETE", f"/global/images/{NAME}")
    assert first == second and uuid.UUID(first)
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]


def test_an_image_already_deleted_by_someone_else_is_deleted(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    """Between the survey and the delete, another run deleted the FAILED image: 404 is 'done'."""
    settings = make_settings()
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, NAME, labels=ours(ctx), status="FAILED")

    def another_run_deletes_it(method: str, path: str) -> None:
        if method == "DELETE":
            with gce.lock:
                gce.state.images.pop((PROJECT, NAME), None)

    gce.on_request = another_run_deletes_it

    published = GcpProvider().publish(info, settings, disk, ctx)

    assert published.changed and gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]


def test_a_lost_set_labels_reply_is_not_a_stale_fingerprint_error(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    """setLabels has no requestId: the retry's fingerprint is stale (412) since the first one acted."""
    settings = make_settings(labels={"team": "os"})
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, NAME, labels=ours(ctx))
    gce.fail(503, method="POST", path="/setLabels", lose_reply=True)

    published = GcpProvider().publish(info, settings, disk, ctx)

    assert published.changed and len(gce.calls("POST", "/setLabels")) == 2
    assert gce.image(PROJECT, NAME)["labels"] == {**ours(ctx), "team": "os"}  # type: ignore[index]


def test_labels_another_run_changed_meanwhile_are_set_again(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(labels={"team": "os"})
    info = image_info(disk)
    ctx = context(settings, info, journal)
    image = gce.add_image(PROJECT, NAME, labels=ours(ctx))

    def another_run_relabels(method: str, path: str) -> None:
        if "/setLabels" in path and len(gce.calls("POST", "/setLabels")) == 1:
            with gce.lock:
                image.update(labels={**ours(ctx), "team": "other"}, labelFingerprint="changed=")

    gce.on_request = another_run_relabels

    GcpProvider().publish(info, settings, disk, ctx)

    assert len(gce.calls("POST", "/setLabels")) == 2
    assert gce.image(PROJECT, NAME)["labels"]["team"] == "os"  # type: ignore[index]


def test_a_lost_deprecate_reply_is_retried_with_its_request_id(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(family="demo-linux", deprecate_previous=True)
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, "demo-linux-1-2-2", family="demo-linux")
    gce.add_image(PROJECT, NAME, family="demo-linux", labels=ours(ctx))
    gce.fail(503, method="POST", path="/deprecate", lose_reply=True)

    GcpProvider().publish(info, settings, disk, ctx)

    first, second = request_ids(gce, "POST", "/deprecate")
    assert first == second and uuid.UUID(first)
    assert gce.image(PROJECT, "demo-linux-1-2-2")["deprecated"]["state"] == "DEPRECATED"  # type: ignore[index]


def test_a_lost_set_iam_policy_reply_is_not_a_stale_etag_error(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(share_members=["group:qa@example.com"])
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, NAME, labels=ours(ctx))
    gce.fail(503, method="POST", path="/setIamPolicy", lose_reply=True)

    GcpProvider().publish(info, settings, disk, ctx)

    assert len(gce.calls("POST", "/setIamPolicy")) == 2
    assert gce.policy(PROJECT, NAME)["bindings"] == [
        {"role": "roles/compute.imageUser", "members": ["group:qa@example.com"]}
    ]


def test_a_policy_another_run_changed_meanwhile_keeps_both_changes(
    make_settings: SettingsFactory, gce: FakeGce, disk: DiskImage, journal: Journal
) -> None:
    settings = make_settings(share_members=["group:qa@example.com"])
    info = image_info(disk)
    ctx = context(settings, info, journal)
    gce.add_image(PROJECT, NAME, labels=ours(ctx))
    other = {"role": "roles/compute.imageUser", "members": ["user:ann@example.com"]}

    def another_run_shares(method: str, path: str) -> None:
        if "/setIamPolicy" in path and len(gce.calls("POST", "/setIamPolicy")) == 1:
            with gce.lock:
                gce.state.policies[(PROJECT, NAME)] = {"version": 1, "etag": "BBBB", "bindings": [other]}

    gce.on_request = another_run_shares

    GcpProvider().publish(info, settings, disk, ctx)

    members = gce.policy(PROJECT, NAME)["bindings"][0]["members"]
    assert sorted(members) == ["group:qa@example.com", "user:ann@example.com"]


def test_a_lost_reply_to_the_finishing_chunk_and_to_the_object_delete(
    make_settings: SettingsFactory,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    journal: Journal,
    storage_client: Any,
) -> None:
    """GCS finished the object (a conditional upload: ifGenerationMatch=0) and later deleted it, and
    both replies were lost: neither retry fails nor repeats the upload."""
    settings = make_settings()
    info: ImageInfo = image_info(disk)
    gcs.rules.append(Rule("PUT", "upload_id=", "lose-reply", finishing=True))
    gcs.rules.append(Rule("DELETE", "/o/", "lose-reply"))

    published = GcpProvider(upload_chunk=4 * QUANTUM).publish(
        info, settings, disk, context(settings, info, journal)
    )

    size = published.artifacts[0].extra["object_size"]
    assert published.artifacts[0].extra["bytes_sent"] == size == gcs.put_bytes()
    assert [m for m, _, _ in gcs.seen].count("DELETE") == 2 and gcs.rules[1].times == 0
    assert objects(storage_client, settings) == [] and gcs.rejected == []
    assert gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
