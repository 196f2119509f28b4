"""Acceptance run against a real Azure subscription: publish the quickstart disk as a managed image
and a gallery image version (in a throwaway gallery it creates), check them, re-run, clean up.

Opt in with IMGPUB_LIVE_AZURE=<subscription id>/<resource group>, IMGPUB_LIVE_AZURE_LOCATION (e.g.
westeurope) and IMGPUB_LIVE_AZURE_STORAGE (a storage account in that resource group and location),
with credentials DefaultAzureCredential finds (`az login`, AZURE_CLIENT_ID/AZURE_TENANT_ID/
AZURE_CLIENT_SECRET, a managed identity); skipped otherwise. The identity needs the custom role of
providers/azure/README.md ("Least privilege") on the resource group, plus gallery create/delete.

Everything the test made (gallery version, definition, gallery, managed image, the page blob, and the
container if it was not there) is deleted at the end, also when an assertion fails.

A second test publishes the same manifest twice at once from two state dirs (two CI jobs): both
succeed, one image and one version exist, no blob or upload disk is left, and a run that waited
for the other's upload blob lease says it adopted what the other published. It checks on the real
services what the stand-ins assume: a leased blob refuses writes without the lease, and ARM answers
a PUT that meets another run's running operation in a way the provider waits out.

A third test is the lifecycle (issue 12): two versions published, `imgpub.lifecycle.prune` (with a
clock two days ahead) deprecates the older one (the gallery version's endOfLifeDate and
excludeFromLatest as Azure stores them, the managed image's `imgpub:deprecated` tag), the version
matrix says so, and a second prune deletes it (version, image), leaving the newer one untouched.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import imgpub
from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub_azure.clients import AzureClients
from imgpub_azure.names import blob_name, default_definition, default_image_name, region_key, text
from imgpub_azure.settings import AzureSettings
from live.conftest import REAL_ENV, LiveRun, opt_in

CONTAINER = "imgpub-live"


def _required(variable: str, example: str) -> str:
    value = REAL_ENV.get(variable, "")
    if not value:
        pytest.skip(f"live test: set {variable} (e.g. {example}) with IMGPUB_LIVE_AZURE to run it")
    return value


def test_publish_check_rerun_and_clean_up(live_run: LiveRun) -> None:
    subscription, group = opt_in("IMGPUB_LIVE_AZURE", "<subscription id>/<resource group>", parts=2)
    location = _required("IMGPUB_LIVE_AZURE_LOCATION", "westeurope")
    account = _required("IMGPUB_LIVE_AZURE_STORAGE", "mystorageaccount")
    publish_check_rerun_and_clean_up(live_run, subscription, group, location, account)


def test_two_publishes_at_once_leave_one_image_and_no_upload(live_run: LiveRun) -> None:
    subscription, group = opt_in("IMGPUB_LIVE_AZURE", "<subscription id>/<resource group>", parts=2)
    location = _required("IMGPUB_LIVE_AZURE_LOCATION", "westeurope")
    account = _required("IMGPUB_LIVE_AZURE_STORAGE", "mystorageaccount")
    gallery = f"imgpub_live_{live_run.name.rsplit('-', 1)[1]}"
    image_name = default_image_name(live_run.name, live_run.version)
    definition = default_definition(live_run.name)
    target: dict[str, Any] = {
        "name": "azure",
        "provider": "azure",
        "subscription_id": subscription,
        "resource_group": group,
        "location": location,
        "storage_account": account,
        "container": CONTAINER,
    }
    path = live_run.manifest(
        "  - "
        + "\n    ".join(f"{k}: {json.dumps(v)}" for k, v in target.items())
        + f"\n    gallery: {{name: {gallery}}}\n"
    )
    clients = AzureClients(AzureSettings.model_validate({**target, "gallery": {"name": gallery}}))
    container_was_there = clients.container(CONTAINER).exists()
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(imgpub.publish, path, state_dir=live_run.folder / f"state-{n}") for n in "ab"]
            results = [run.result() for run in runs]
        targets = [r.targets[0] for r in results]
        assert all(t.ok for t in targets), [t.error for t in targets]
        ids = {a.id.lower() for t in targets if t.published for a in t.published.artifacts}
        assert len(ids) == 2, "one managed image and one gallery image version"
        compute = clients.compute
        assert compute.images.get(group, image_name).properties.provisioning_state == "Succeeded"
        assert not clients.blob(CONTAINER, blob_name(image_name)).exists()
        warnings = [w for t in targets if t.published for w in t.published.warnings]
        assert any("published by another run" in w for w in warnings) or any(
            not t.published.changed for t in targets if t.published
        )
    finally:
        _delete_everything(
            clients, group, gallery, definition, live_run.version, image_name, container_was_there
        )


def test_prune_deprecates_then_deletes_an_older_version(live_run: LiveRun) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    from imgpub.lifecycle import matrix, prune

    subscription, group = opt_in("IMGPUB_LIVE_AZURE", "<subscription id>/<resource group>", parts=2)
    location = _required("IMGPUB_LIVE_AZURE_LOCATION", "westeurope")
    account = _required("IMGPUB_LIVE_AZURE_STORAGE", "mystorageaccount")
    gallery = f"imgpub_live_{live_run.name.rsplit('-', 1)[1]}"
    definition = default_definition(live_run.name)
    old, new = live_run.version, f"{live_run.version}1"
    target: dict[str, Any] = {
        "name": "azure",
        "provider": "azure",
        "subscription_id": subscription,
        "resource_group": group,
        "location": location,
        "storage_account": account,
        "container": CONTAINER,
    }
    policy = "retention: {keep: 0, deprecate_after: 1d, delete_after: 36h}\n"
    targets = (
        "  - "
        + "\n    ".join(f"{k}: {json.dumps(v)}" for k, v in target.items())
        + f"\n    gallery: {{name: {gallery}}}\n"
    )
    clients = AzureClients(AzureSettings.model_validate({**target, "gallery": {"name": gallery}}))
    container_was_there = clients.container(CONTAINER).exists()
    later = datetime.now(UTC) + timedelta(days=2)  # both versions are two days old then
    try:
        for version in (old, new):
            run = LiveRun(live_run.name, version, live_run.folder)
            published = imgpub.publish(run.manifest(targets), state_dir=live_run.folder / "state")
            assert published.ok, [t.error for t in published.targets]
        manifest = LiveRun(live_run.name, new, live_run.folder).manifest(targets, image_extra=policy)

        first = prune(manifest, apply=True, now=lambda: later, state_dir=live_run.folder / "state")

        assert first.exit_code == 0, [v.error for t in first.targets for v in t.versions]
        assert {v.version: v.verdict for v in first.targets[0].versions} == {new: "current", old: "deprecate"}
        compute = clients.compute
        profile = compute.gallery_image_versions.get(
            group, gallery, definition, old
        ).properties.publishing_profile
        assert profile.exclude_from_latest is True and profile.end_of_life_date is not None
        image = compute.images.get(group, default_image_name(live_run.name, old))
        assert "imgpub:deprecated" in (image.tags or {})
        states = {r.version: r.state for r in matrix(manifest, now=lambda: later).targets[0].releases}
        assert states == {old: "deprecated", new: "active"}

        second = prune(manifest, apply=True, now=lambda: later, state_dir=live_run.folder / "state")

        assert {v.version: v.verdict for v in second.targets[0].versions}[old] == "delete"
        assert second.exit_code == 0, [v.error for t in second.targets for v in t.versions]
        with pytest.raises(ResourceNotFoundError):
            compute.gallery_image_versions.get(group, gallery, definition, old)
        with pytest.raises(ResourceNotFoundError):
            compute.images.get(group, default_image_name(live_run.name, old))
        assert compute.gallery_image_versions.get(
            group, gallery, definition, new
        ).properties.provisioning_state == ("Succeeded")
    finally:
        image_old = default_image_name(live_run.name, old)
        with contextlib.suppress(ResourceNotFoundError):
            clients.compute.gallery_image_versions.begin_delete(group, gallery, definition, old).result()
        with contextlib.suppress(ResourceNotFoundError):
            clients.compute.images.begin_delete(group, image_old).result()
        _delete_everything(
            clients,
            group,
            gallery,
            definition,
            new,
            default_image_name(live_run.name, new),
            container_was_there,
        )


def publish_check_rerun_and_clean_up(
    live_run: LiveRun,
    subscription: str,
    group: str,
    location: str,
    account: str,
    extra: dict[str, str] | None = None,
    credential: Any = None,
) -> None:
    """The acceptance run; `extra` target settings and `credential` point it elsewhere (endpoints)."""
    gallery = f"imgpub_live_{live_run.name.rsplit('-', 1)[1]}"
    image_name = default_image_name(live_run.name, live_run.version)
    definition = default_definition(live_run.name)
    target: dict[str, Any] = {
        "name": "azure",
        "provider": "azure",
        "subscription_id": subscription,
        "resource_group": group,
        "location": location,
        "storage_account": account,
        "container": CONTAINER,
        **(extra or {}),
    }
    path = live_run.manifest(
        "  - "
        + "\n    ".join(f"{k}: {json.dumps(v)}" for k, v in target.items())
        + f"\n    gallery: {{name: {gallery}}}\n"
    )
    clients = AzureClients(AzureSettings.model_validate({**target, "gallery": {"name": gallery}}), credential)
    container_was_there = clients.container(CONTAINER).exists()
    state = live_run.folder / "state"
    try:
        first = imgpub.publish(path, state_dir=state)
        (published,) = first.targets
        assert published.ok, published.error
        assert published.published is not None and published.published.changed
        assert [a.kind for a in published.published.artifacts] == ["image", "gallery-image-version"]
        tags = {
            "purpose": "imgpub-live-test",
            TAG_NAME: live_run.name,
            TAG_VERSION: live_run.version,
            TAG_DIGEST: published.digest,
            TAG_MANAGED: "imgpub",
        }

        compute = clients.compute
        image = compute.images.get(group, image_name)
        assert image.properties.provisioning_state == "Succeeded"
        assert text(image.properties.hyper_v_generation) == "V2"
        assert dict(image.tags or {}) == tags
        version = compute.gallery_image_versions.get(
            group, gallery, definition, live_run.version, expand="ReplicationStatus"
        )
        assert version.properties.provisioning_state == "Succeeded"
        assert dict(version.tags or {}) == tags
        summary = version.properties.replication_status.summary
        assert {region_key(s.region): text(s.state) for s in summary} == {location: "Completed"}
        defined = compute.gallery_images.get(group, gallery, definition).properties
        assert defined.provisioning_state == "Succeeded" and text(defined.hyper_v_generation) == "V2"
        assert not clients.blob(CONTAINER, blob_name(image_name)).exists()  # the upload is gone

        second = imgpub.publish(path, state_dir=state)
        assert second.ok and second.targets[0].published is not None
        assert not second.targets[0].published.changed
        status = imgpub.status(path, state_dir=state).targets[0].status
        assert status is not None and status.drift == []
    finally:
        _delete_everything(
            clients, group, gallery, definition, live_run.version, image_name, container_was_there
        )


def _delete_everything(
    clients: AzureClients,
    group: str,
    gallery: str,
    definition: str,
    version: str,
    image: str,
    keep_container: bool,
) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    compute: Any = clients.compute
    steps = [
        lambda: compute.gallery_image_versions.begin_delete(group, gallery, definition, version).result(),
        lambda: compute.gallery_images.begin_delete(group, gallery, definition).result(),
        lambda: compute.galleries.begin_delete(group, gallery).result(),
        lambda: compute.images.begin_delete(group, image).result(),
        lambda: clients.blob(CONTAINER, blob_name(image)).delete_blob(),
    ]
    if not keep_container:
        steps.append(lambda: clients.container(CONTAINER).delete_container())
    for step in steps:
        with contextlib.suppress(ResourceNotFoundError):
            step()
