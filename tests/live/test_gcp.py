"""Acceptance runs against a real Google Cloud project: publish the quickstart disk, check the image,
re-run, clean up; two publishes of one manifest at once (separate state dirs) leave one image and no
object; GCS answers an unknown resumable session as imgpub expects; prune deprecates an older version
(pointing to the newer one) and then deletes it. Opt in with
IMGPUB_LIVE_GCP=<project>/<bucket> and Application Default Credentials (`gcloud auth
application-default login`, or GOOGLE_APPLICATION_CREDENTIALS); skipped otherwise.

The identity needs the custom role of providers/gcp/README.md ("Least privilege") on the project and
the bucket. Everything the test made (the image, any object under imgpub/<image>) is deleted at the
end, also when an assertion fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import imgpub
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
from imgpub.lifecycle import matrix, prune
from imgpub.pipeline import RunResult
from imgpub.retry import RetryPolicy
from imgpub_gcp import GcpSettings
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.gcs_session import Session, SessionGone, start_session
from imgpub_gcp.labels import derived_image_name
from imgpub_gcp.versions import LABEL_EXACT, encode
from live.conftest import LiveRun, opt_in


def test_publish_check_rerun_and_clean_up(live_run: LiveRun) -> None:
    project, bucket = opt_in("IMGPUB_LIVE_GCP", "<project>/<bucket>", parts=2)
    name = derived_image_name(live_run.name, live_run.version)
    family = "imgpub-live-test"
    path = live_run.manifest(
        "  - name: gce\n"
        "    provider: gcp\n"
        f"    project: {project}\n"
        f"    bucket: {bucket}\n"
        f"    family: {family}\n"
    )
    state = live_run.folder / "state"
    images, storage = _clients(project)
    try:
        first = imgpub.publish(path, state_dir=state)
        (target,) = first.targets
        assert target.ok, target.error
        assert target.published is not None and target.published.changed
        assert [a.id for a in target.published.artifacts] == [name]

        image = images.get(project=project, image=name)
        assert image.status == "READY" and image.family == family
        assert image.architecture == "X86_64"
        assert {f.type_ for f in image.guest_os_features} >= {"UEFI_COMPATIBLE", "GVNIC"}
        assert dict(image.labels) == {
            "purpose": "imgpub-live-test",
            LABEL_NAME: label_safe(live_run.name),
            LABEL_VERSION: label_safe(live_run.version),
            LABEL_EXACT: encode(live_run.version),
            LABEL_DIGEST: target.digest,
        }
        assert _objects(storage, bucket, name) == []  # the tarball was deleted once the image existed

        second = imgpub.publish(path, state_dir=state)
        assert second.ok and second.targets[0].published is not None
        assert not second.targets[0].published.changed
        status = imgpub.status(path, state_dir=state).targets[0].status
        assert status is not None and status.drift == []
    finally:
        _delete_everything(images, storage, project, bucket, name)


def test_two_publishes_at_once_leave_one_image_and_no_object(live_run: LiveRun) -> None:
    """Two CI jobs for one tag on two machines: real GCS refuses the second finished upload (412,
    ifGenerationMatch) or real GCE the second insert (409), and the loser adopts the winner's work."""
    project, bucket = opt_in("IMGPUB_LIVE_GCP", "<project>/<bucket>", parts=2)
    name = derived_image_name(live_run.name, live_run.version)
    path = live_run.manifest(f"  - {{name: gce, provider: gcp, project: {project}, bucket: {bucket}}}\n")
    images, storage = _clients(project)
    results: dict[str, RunResult] = {}

    def run(machine: str) -> None:
        results[machine] = imgpub.publish(path, state_dir=live_run.folder / machine)

    try:
        threads = [threading.Thread(target=run, args=(m,)) for m in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(r.ok for r in results.values()), [t.error for r in results.values() for t in r.targets]
        assert images.get(project=project, image=name).status == "READY"
        assert _objects(storage, bucket, name) == []
    finally:
        _delete_everything(images, storage, project, bucket, name)


def test_prune_deprecates_with_the_replacement_then_deletes(live_run: LiveRun) -> None:
    """Two versions published; prune (its clock 3 days on) deprecates the older one on real GCE,
    pointing to the newer one's image, and the next prune deletes it; the matrix agrees each time."""
    project, bucket = opt_in("IMGPUB_LIVE_GCP", "<project>/<bucket>", parts=2)
    newer = dataclasses.replace(live_run, version=f"{live_run.version}1")
    old_name = derived_image_name(live_run.name, live_run.version)
    new_name = derived_image_name(newer.name, newer.version)
    target = (
        "  - name: gce\n    provider: gcp\n"
        f"    project: {project}\n    bucket: {bucket}\n"
        "    retention: {keep: 0, deprecate_after: 1d, delete_after: 2d}\n"
    )
    state, later = live_run.folder / "state", (lambda: datetime.now(UTC) + timedelta(days=3))
    images, storage = _clients(project)
    try:
        assert imgpub.publish(live_run.manifest(target), state_dir=state).ok
        path = newer.manifest(target)
        assert imgpub.publish(path, state_dir=state).ok

        first = prune(path, apply=True, now=later, state_dir=state)
        assert first.exit_code == 0, [v.error for v in first.targets[0].versions]
        old = images.get(project=project, image=old_name)
        assert old.deprecated.state == "DEPRECATED"
        assert old.deprecated.replacement == images.get(project=project, image=new_name).self_link
        shown = matrix(path, now=later, state_dir=state)
        assert {r.version: r.state for r in shown.targets[0].releases} == {
            live_run.version: "deprecated",
            newer.version: "active",
        }
        assert shown.in_sync

        second = prune(path, apply=True, now=later, state_dir=state)
        assert {v.version: v.done for v in second.targets[0].versions if v.done} == {
            live_run.version: [f"deleted image {old_name}"]
        }
        assert [r.version for r in matrix(path, now=later).targets[0].releases] == [newer.version]
    finally:
        _delete_everything(images, storage, project, bucket, old_name)
        _delete_everything(images, storage, project, bucket, new_name)


def test_gcs_answers_a_session_it_does_not_know_as_gone(live_run: LiveRun) -> None:
    """imgpub takes 400/404/410 on a session as 'start a new one': check real GCS answers an unknown
    upload_id that way, and a fresh session as open with nothing stored."""
    project, bucket = opt_in("IMGPUB_LIVE_GCP", "<project>/<bucket>", parts=2)
    settings = GcpSettings.model_validate({"name": "gce", "project": project, "bucket": bucket})
    clients, retry = GcpClients(settings, "gce"), RetryPolicy(attempts=3)
    obj = f"imgpub/{live_run.name}-session-probe"
    url = start_session(clients, "gce", retry, (bucket, obj), {"purpose": "imgpub-live-test"}, None, 0)
    state = Session(clients, "gce", retry, url).query()
    assert not state.finished and state.persisted == 0
    unknown = url.split("upload_id=")[0] + "upload_id=imgpub-unknown-session"
    with pytest.raises(SessionGone):
        Session(clients, "gce", retry, unknown).query()


def _clients(project: str) -> tuple[Any, Any]:
    from google.cloud import compute_v1, storage

    return compute_v1.ImagesClient(), storage.Client(project=project)


def _objects(storage: Any, bucket: str, name: str) -> list[str]:
    return [b.name for b in storage.list_blobs(bucket, prefix=f"imgpub/{name}-")]


def _delete_everything(images: Any, storage: Any, project: str, bucket: str, name: str) -> None:
    from google.api_core.exceptions import NotFound

    with contextlib.suppress(NotFound):
        images.delete(project=project, image=name).result(timeout=600)
    for obj in _objects(storage, bucket, name):
        storage.bucket(bucket).delete_blob(obj)
