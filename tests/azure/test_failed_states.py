"""A resource whose operation failed (provisioningState Failed) is never published: the next run
deletes and recreates it (without --replace: it is imgpub's own broken attempt), `plan` says so and
`status` reports it. Images, gallery versions, definitions, galleries and upload disks alike."""

from __future__ import annotations

import pytest

from imgpub.errors import CloudError, ImageConflictError
from imgpub.identity import TAG_DIGEST


def _state(stack, rest: str) -> str:
    return stack.arm.get(rest)["properties"]["provisioningState"]


def _fail_once(stack, pattern: str) -> None:
    stack.arm.fail(pattern, "InternalExecutionError", "the operation failed inside Azure", times=1)


def test_a_failed_managed_image_is_deleted_and_recreated(stack, disk, info):
    settings, image, provider = stack.settings(), info(), stack.provider()
    _fail_once(stack, r"/images/golden-1\.2\.3$")
    with pytest.raises(CloudError, match="the operation failed inside Azure"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert _state(stack, "images/golden-1.2.3") == "Failed"

    ctx = stack.context(settings, image)
    status = provider.status(image, settings, ctx)
    assert "image golden-1.2.3 is in provisioningState Failed (not usable)" in status.drift
    plan = provider.plan(image, settings, ctx)
    assert plan.conflict is None and not plan.existing
    (replace,) = [a for a in plan.actions if a.kind == "replace"]
    assert replace.resource == "image golden-1.2.3" and "Failed" in replace.detail
    assert [a.kind for a in plan.actions] == ["upload", "replace", "create", "delete"]

    published = provider.publish(image, settings, disk, ctx)

    assert published.changed
    assert _state(stack, "images/golden-1.2.3") == "Succeeded"
    assert stack.arm.count("DELETE", r"/images/golden-1\.2\.3$") == 1
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date
    assert provider.status(image, settings, stack.context(settings, image)).drift == []


def test_a_failed_image_of_another_digest_still_needs_replace(stack, disk, info):
    settings, provider = stack.settings(), stack.provider()
    first = info(content_digest="one")
    _fail_once(stack, r"/images/golden-1\.2\.3$")
    with pytest.raises(CloudError):
        provider.publish(first, settings, disk, stack.context(settings, first))
    other = info(content_digest="two")
    plan = provider.plan(other, settings, stack.context(settings, other))
    assert plan.conflict and "provisioningState Failed" in plan.conflict
    with pytest.raises(ImageConflictError):
        provider.publish(other, settings, disk, stack.context(settings, other))
    ctx = stack.context(settings, other, replace=True)
    provider.publish(other, settings, disk, ctx)
    assert stack.arm.get("images/golden-1.2.3")["tags"][TAG_DIGEST] == ctx.digest


def test_a_failed_gallery_version_is_recreated(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    image, provider = info(), stack.provider()
    _fail_once(stack, r"/versions/1\.2\.3$")
    with pytest.raises(CloudError, match="create image version"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert _state(stack, "galleries/g1/images/golden/versions/1.2.3") == "Failed"

    ctx = stack.context(settings, image)
    assert "gallery image version g1/golden/1.2.3 is in provisioningState Failed (not usable)" in (
        provider.status(image, settings, ctx).drift
    )
    plan = provider.plan(image, settings, ctx)
    assert plan.conflict is None
    assert ("replace", "gallery image version g1/golden/1.2.3") in [
        (a.kind, a.resource) for a in plan.actions
    ]

    provider.publish(image, settings, disk, ctx)

    assert _state(stack, "galleries/g1/images/golden/versions/1.2.3") == "Succeeded"
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date


def test_a_failed_definition_is_deleted_and_recreated(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    image, provider = info(), stack.provider()
    _fail_once(stack, r"/galleries/g1/images/golden$")
    with pytest.raises(CloudError, match="create image definition"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert _state(stack, "galleries/g1/images/golden") == "Failed"

    ctx = stack.context(settings, image)
    assert "image definition g1/golden is in provisioningState Failed (not usable)" in (
        provider.status(image, settings, ctx).drift
    )
    plan = provider.plan(image, settings, ctx)
    assert plan.conflict is None
    assert ("replace", "image definition g1/golden") in [(a.kind, a.resource) for a in plan.actions]

    provider.publish(image, settings, disk, ctx)

    assert _state(stack, "galleries/g1/images/golden") == "Succeeded"
    assert _state(stack, "galleries/g1/images/golden/versions/1.2.3") == "Succeeded"
    assert stack.arm.count("DELETE", r"/galleries/g1/images/golden$") == 1
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date


def test_a_failed_gallery_is_put_again(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    image, provider = info(), stack.provider()
    _fail_once(stack, r"/galleries/g1$")
    with pytest.raises(CloudError, match="create gallery"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    ctx = stack.context(settings, image)
    assert (
        "gallery g1 is in provisioningState Failed (not usable)"
        in provider.status(image, settings, ctx).drift
    )
    plan = provider.plan(image, settings, ctx)
    assert ("create", "gallery g1") in [(a.kind, a.resource) for a in plan.actions]
    provider.publish(image, settings, disk, ctx)
    assert _state(stack, "galleries/g1") == "Succeeded"
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date


def test_a_failed_upload_disk_is_recreated(stack, disk, info):
    settings = stack.settings(upload="managed-disk", storage_account=None, blob_endpoint=None)
    image, provider = info(), stack.provider()
    _fail_once(stack, r"/disks/")
    with pytest.raises(CloudError, match="create upload disk"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert _state(stack, f"disks/{stack.upload_disk(settings)}") == "Failed"

    provider.publish(image, settings, disk, stack.context(settings, image))

    assert _state(stack, "images/golden-1.2.3") == "Succeeded"
    assert (
        stack.arm.count("DELETE", r"/disks/golden-1\.2\.3-upload-\w+$") == 2
    )  # the failed one, then the used one
    assert stack.arm.get(f"disks/{stack.upload_disk(settings)}") is None
