"""Acceptance run against a real Google Cloud project: publish the quickstart disk, check the image,
re-run, clean up. Opt in with IMGPUB_LIVE_GCP=<project>/<bucket> and Application Default Credentials
(`gcloud auth application-default login`, or GOOGLE_APPLICATION_CREDENTIALS); skipped otherwise.

The identity needs the custom role of providers/gcp/README.md ("Least privilege") on the project and
the bucket. Everything the test made (the image, any object under imgpub/<image>) is deleted at the
end, also when an assertion fails.
"""

from __future__ import annotations

import contextlib
from typing import Any

import imgpub
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
from imgpub_gcp.labels import derived_image_name
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
