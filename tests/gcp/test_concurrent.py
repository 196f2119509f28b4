"""Two publishes of one manifest from two machines (separate state dirs) at once (issue 10, item 1, the
cloud's side): the object name comes from the digest, so both runs upload, insert and clean up the same
names. Neither deletes what the other made; the one that finds the work done by the other adopts it.

The interleavings are forced: run B runs whole while run A's request is held at the stand-in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy
from gcp.stack import PROJECT, context, image_info
from imgpub.disk import DiskImage
from imgpub.journal import Journal
from imgpub.progress import RecordingProgress
from imgpub.provider import ImageInfo, Published
from imgpub.retry import FAST
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.gcs_upload import QUANTUM, UPLOADER, UPLOADER_KEY, GcsUpload

SettingsFactory = Callable[..., GcpSettings]
NAME = "demo-linux-1-2-3"


def objects(storage_client: Any, settings: GcpSettings) -> list[Any]:
    return list(storage_client.list_blobs(settings.bucket))


def publish(settings: GcpSettings, info: ImageInfo, disk: DiskImage, state: Path) -> Published:
    return GcpProvider().publish(info, settings, disk, context(settings, info, Journal(state / "gce.json")))


def once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


def test_the_other_runs_clean_up_never_deletes_the_object_this_runs_insert_reads(
    make_settings: SettingsFactory,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    """A uploaded; as A's insert reaches GCE, B finds A's object, creates the image from it and finishes.
    B leaves A's object (A's to delete); A's insert is answered 409 and adopts B's image."""
    settings = make_settings()
    info = image_info(disk)
    results: list[Published] = []
    run_b = once(lambda: results.append(publish(settings, info, disk, tmp_path / "b")))

    def at_a_insert(method: str, path: str) -> None:
        if method == "POST" and "/global/images?" in path:
            run_b()

    gce.on_request = at_a_insert

    a = publish(settings, info, disk, tmp_path / "a")

    (b,) = results
    assert a.warnings == [f"image {NAME} was published by another run at the same time; this run adopted it"]
    assert b.warnings == [] and gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
    assert len(gce.calls("POST", "/global/images?")) == 2 and len(gce.state.images) == 1
    assert objects(storage_client, settings) == []  # A deleted its own object once the image was READY
    assert gcs.rejected == [] and len(gcs.upload_ids()) == 1


def test_the_run_that_finishes_its_upload_second_uses_the_first_runs_object(
    make_settings: SettingsFactory,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    """Both upload the same object name. B (keep_upload) finishes first; A's finishing chunk is refused
    by its precondition (ifGenerationMatch=0): A neither overwrites B's object nor deletes it, and
    adopts B's image."""
    settings = make_settings()
    keeping = make_settings(keep_upload=True)
    info = image_info(disk)
    results: list[Published] = []
    generations: list[int] = []

    def b() -> None:
        results.append(publish(keeping, info, disk, tmp_path / "b"))
        generations.extend(blob.generation for blob in objects(storage_client, settings))

    run_b = once(b)

    def at_a_finishing_chunk(method: str, path: str) -> None:
        _, _, content_range = gcs.seen[-1]
        if method == "PUT" and "upload_id=" in path and content_range.split("/")[-1] != "*":
            run_b()

    gcs.on_request = at_a_finishing_chunk

    a = publish(settings, info, disk, tmp_path / "a")

    assert len(results) == 1
    (kept,) = objects(storage_client, settings)
    assert kept.metadata[UPLOADER] == Journal(tmp_path / "b" / "gce.json").get(UPLOADER_KEY)
    assert [kept.generation] == generations  # not overwritten by A
    assert a.warnings == [f"image {NAME} was published by another run at the same time; this run adopted it"]
    assert len(gce.state.images) == 1 and gce.image(PROJECT, NAME)["status"] == "READY"  # type: ignore[index]
    assert len(gcs.upload_ids()) == 2 and gcs.rejected == []


def test_a_run_that_finds_the_image_published_by_another_leaves_its_object(
    make_settings: SettingsFactory,
    gce: FakeGce,
    gcs: FaultProxy,
    disk: DiskImage,
    storage_client: Any,
    tmp_path: Path,
) -> None:
    """B starts when A's image is READY but A has not deleted its object yet: B changes nothing and
    leaves A's object to A."""
    settings = make_settings()
    info = image_info(disk)
    results: list[Published] = []
    run_b = once(lambda: results.append(publish(settings, info, disk, tmp_path / "b")))
    gcs.on_request = lambda method, path: run_b() if method == "DELETE" else None

    a = publish(settings, info, disk, tmp_path / "a")

    (b,) = results
    assert a.changed and not b.changed
    assert [m for m, _, _ in gcs.seen].count("DELETE") == 1  # A's, never B's
    assert objects(storage_client, settings) == [] and len(gce.state.images) == 1


def test_an_object_another_run_wrote_and_deleted_under_this_upload_is_uploaded_again(
    make_settings: SettingsFactory, gcs: FaultProxy, storage_client: Any, tmp_path: Path
) -> None:
    """A's finishing chunk is refused (B's object is there); by the time A looks, B has deleted it:
    A uploads again rather than give up or use nothing."""
    settings = make_settings()
    data = bytes(range(256)) * 4096
    meta = {"imgpub-digest": "abc123"}
    blob = storage_client.bucket(settings.bucket).blob("race.tar.gz")
    steps: list[str] = []

    def b_writes_then_deletes(method: str, path: str) -> None:
        _, _, content_range = gcs.seen[-1]
        if not steps and method == "PUT" and content_range.endswith(f"/{len(data)}"):
            blob.metadata = {**meta, UPLOADER: "b"}
            blob.upload_from_string(b"B's bytes")
            steps.append("written")
        elif steps == ["written"] and method == "GET" and "race.tar.gz" in path:
            blob.delete()
            steps.append("deleted")

    gcs.on_request = b_writes_then_deletes
    journal = Journal(tmp_path / "a.json")
    upload = GcsUpload(GcpClients(settings, "gce"), "gce", journal, FAST, RecordingProgress(), 2 * QUANTUM)

    result = upload.run(settings.bucket, "race.tar.gz", meta, lambda: iter([data]))

    assert steps == ["written", "deleted"] and result.ours and not result.reused
    assert len(gcs.upload_ids()) == 2
    stored = storage_client.bucket(settings.bucket).get_blob("race.tar.gz")
    assert stored.download_as_bytes() == data and stored.metadata[UPLOADER] == journal.get(UPLOADER_KEY)
