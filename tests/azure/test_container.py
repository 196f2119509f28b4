"""A missing upload container is shown by `plan` and created, private, by `publish` (not a late
ContainerNotFound)."""

from __future__ import annotations

import os
import uuid

from azure.storage.blob import ContainerClient

from fakes.azurite import API_VERSION


def _container(name: str) -> ContainerClient:
    conn = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    return ContainerClient.from_connection_string(conn, name, api_version=API_VERSION)


def test_a_missing_container_is_planned_and_created_private(stack, disk, info):
    name = f"new-{uuid.uuid4().hex[:12]}"
    settings = stack.settings(container=name)
    image, provider = info(), stack.provider()
    assert not _container(name).exists()

    plan = provider.plan(image, settings, stack.context(settings, image))
    assert (plan.actions[0].kind, plan.actions[0].resource) == ("create", f"container {name}")
    assert plan.actions[0].detail == "private blob container"
    provider.publish(image, settings, disk, stack.context(settings, image))

    props = _container(name).get_container_properties()
    assert props.public_access is None  # private: no anonymous read of the disk image
    assert stack.arm.get("images/golden-1.2.3")["properties"]["provisioningState"] == "Succeeded"
    assert list(_container(name).list_blobs()) == []  # the temporary blob is gone, the container stays
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date


def test_an_existing_container_is_not_planned(stack, info):
    settings = stack.settings()
    image = info()
    plan = stack.provider().plan(image, settings, stack.context(settings, image))
    assert [a.kind for a in plan.actions] == ["upload", "create", "delete"]


def test_a_container_made_meanwhile_is_fine(stack, disk, info):
    name = f"race-{uuid.uuid4().hex[:12]}"
    settings = stack.settings(container=name)
    image, provider = info(), stack.provider()
    ctx = stack.context(settings, image)
    plan = provider.plan(image, settings, ctx)
    assert plan.actions[0].resource == f"container {name}"
    _container(name).create_container()  # another run got there first
    provider.publish(image, settings, disk, ctx)
    assert stack.arm.get("images/golden-1.2.3") is not None
