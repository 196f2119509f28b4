"""A reply lost after the server acted: the retry must find what the first attempt did and go on
from there, without a second resource, a second upload, or a failure ARM's own answer would cause
(a PUT while the first one's operation still runs is refused with 409 AnotherOperationInProgress;
a DELETE of what is already gone may answer 404).

The fake ARM and the storage proxy carry the request out, then reset the connection."""

from __future__ import annotations

import pytest
from azure.mgmt.compute import models

from imgpub.errors import CloudError
from imgpub.identity import TAG_DIGEST
from imgpub_azure.clients import AzureClients

VERSION = r"/galleries/g1/images/golden/versions/1\.2\.3$"
IMAGE = r"/images/golden-1\.2\.3$"
UPLOAD_DISK = r"/disks/golden-1\.2\.3-upload(-\w+)?$"


def _publish(stack, disk, info, **overrides):
    settings = stack.settings(**overrides)
    image = info()
    ctx = stack.context(settings, image)
    published = stack.provider().publish(image, settings, disk, ctx)
    assert stack.provider().plan(image, settings, stack.context(settings, image)).up_to_date
    assert stack.provider().status(image, settings, stack.context(settings, image)).drift == []
    return published, ctx


def _succeeded(stack, rest: str, digest: str | None = None) -> None:
    res = stack.arm.get(rest)
    assert res is not None and res["properties"]["provisioningState"] == "Succeeded", res
    if digest is not None:
        assert res["tags"][TAG_DIGEST] == digest


GALLERY = {"gallery": {"name": "g1"}}
DISK_UPLOAD = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}


@pytest.mark.parametrize(
    ("overrides", "method", "pattern", "skip"),
    [
        pytest.param({}, "PUT", IMAGE, 0, id="image-put"),
        pytest.param(GALLERY, "PUT", r"/galleries/g1$", 0, id="gallery-put"),
        pytest.param(GALLERY, "PUT", r"/galleries/g1/images/golden$", 0, id="definition-put"),
        pytest.param(GALLERY, "PUT", VERSION, 0, id="version-put"),
        pytest.param(DISK_UPLOAD, "PUT", UPLOAD_DISK, 0, id="disk-put"),
        pytest.param({}, "GET", r"/locations/westeurope/operations/", 0, id="image-last-poll"),
        pytest.param(GALLERY, "GET", r"/locations/westeurope/operations/", 3, id="version-poll"),
        pytest.param(DISK_UPLOAD, "POST", r"/beginGetAccess$", 0, id="grant-access"),
        pytest.param(DISK_UPLOAD, "POST", r"/endGetAccess$", 0, id="revoke-access"),
        pytest.param(DISK_UPLOAD, "DELETE", UPLOAD_DISK, 0, id="disk-delete"),
        pytest.param(DISK_UPLOAD, "GET", r"/fake/operations/", 0, id="grant-poll"),
    ],
)
def test_a_lost_arm_reply_is_taken_up_by_the_retry(stack, disk, info, overrides, method, pattern, skip):
    stack.arm.lose_reply(method, pattern, skip=skip)

    published, ctx = _publish(stack, disk, info, **overrides)

    assert stack.arm.losses.lost, "a reply was lost"
    if overrides.get("managed_image", True):
        _succeeded(stack, "images/golden-1.2.3", ctx.digest)
        assert stack.arm.count("PUT", IMAGE) == 1
    if "gallery" in overrides:
        _succeeded(stack, "galleries/g1/images/golden/versions/1.2.3", ctx.digest)
        assert stack.arm.count("PUT", VERSION) == 1
        assert stack.arm.count("PUT", r"/galleries/g1$") == 1
    assert not [k for k in stack.arm.resources if "/disks/" in k], "the upload disk is gone"
    assert stack.arm.count("PUT", r"/disks/") <= 1
    assert not published.warnings


def test_a_delete_retried_after_it_finished_takes_404_as_done(stack, disk, info):
    """The poll that saw the upload disk's delete finish is lost; the DELETE sent again answers 404
    (the disk is gone), which is what the run wanted."""
    stack.arm.missing_delete_status = 404
    # two polls each for grant and revoke, then the delete's first (202) and second (done) poll
    stack.arm.lose_reply("GET", r"/fake/operations/", skip=5)

    _publish(stack, disk, info, **DISK_UPLOAD)

    ((_, path),) = stack.arm.losses.lost
    assert stack.arm.operations.all[path.rsplit("/", 1)[1]].kind == "delete"
    assert stack.arm.count("DELETE", UPLOAD_DISK) == 2
    assert not [k for k in stack.arm.resources if "/disks/" in k]


@pytest.mark.parametrize(
    ("method", "query", "after"),
    [
        pytest.param("PUT", r"^$", 0, id="create-page-blob"),
        pytest.param("PUT", r"comp=page", 3, id="put-page"),
        pytest.param("PUT", r"comp=metadata", 0, id="commit"),
        pytest.param("DELETE", r"^$", 0, id="delete-blob"),
    ],
)
def test_a_lost_storage_reply_is_taken_up_by_the_retry(stack, disk, info, method, query, after):
    stack.proxy.lose_reply(method, query, after=after)

    _, ctx = _publish(stack, disk, info)

    assert stack.proxy.lost, "a reply was lost"
    _succeeded(stack, "images/golden-1.2.3", ctx.digest)
    pages = stack.proxy.pages()
    assert len(pages) - len({(p.path, p.range) for p in pages}) <= 1, "at most the lost page went twice"
    from azure.storage.blob import ContainerClient

    from fakes.azurite import API_VERSION, connection_string

    left = ContainerClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, api_version=API_VERSION
    )
    assert [b.name for b in left.list_blobs()] == []


def test_a_run_stopped_right_after_its_disk_put_is_continued(stack, disk, info):
    """A run killed right after its upload disk's PUT left the disk Creating: the re-run waits for
    it before asking for write access (which a disk still being created refuses)."""
    settings, image = stack.settings(**DISK_UPLOAD), info()
    ctx = stack.context(settings, image)
    ctx.journal.set("run_id", "0123456789abcdef")
    name = stack.upload_disk(settings)
    body = models.Disk(
        location="westeurope",
        tags={TAG_DIGEST: ctx.digest},
        sku=models.DiskSku(name="Standard_LRS"),
        properties=models.DiskProperties(
            os_type="Linux",
            hyper_v_generation="V2",
            creation_data=models.CreationData(create_option="Upload", upload_size_bytes=(25 << 20) + 512),
        ),
    )
    compute = AzureClients(settings, stack.credential).compute
    compute.disks.begin_create_or_update("rg", name, body, polling=False)  # then the run was killed
    assert stack.arm.get(f"disks/{name}")["properties"]["provisioningState"] == "Creating"

    stack.provider().publish(image, settings, disk, ctx)

    _succeeded(stack, "images/golden-1.2.3", ctx.digest)
    assert stack.arm.count("PUT", UPLOAD_DISK) == 1 and stack.arm.get(f"disks/{name}") is None
    assert any("waiting for that operation" in n for n in ctx.progress.notes)


def test_a_run_stopped_right_after_revoking_access_does_not_upload_again(stack, disk, info):
    """Killed after revokeAccess (the disk holds the whole image) but before the journal said so:
    the re-run takes the disk as it is instead of deleting it and uploading everything again."""
    settings, image = stack.settings(**DISK_UPLOAD), info()
    stack.arm.inject("PUT", IMAGE, 400, times=1, code="InvalidParameter")
    with pytest.raises(CloudError, match="create image"):
        stack.provider().publish(image, settings, disk, stack.context(settings, image))
    ctx = stack.context(settings, image)
    ctx.journal.set("upload", {**ctx.journal.get("upload"), "done": False})  # as the killed run left it
    stack.proxy.requests.clear()

    stack.provider().publish(image, settings, disk, ctx)

    assert stack.proxy.pages() == [], "nothing was uploaded again"
    assert stack.arm.count("PUT", UPLOAD_DISK) == 1
    _succeeded(stack, "images/golden-1.2.3", ctx.digest)


def test_a_lost_reply_of_the_delete_that_replaces_an_image(stack, disk, info):
    """--replace: the old image's DELETE is carried out but its reply is lost; the retry finds it
    being deleted (or gone), waits, and the new image is made once."""
    settings, provider = stack.settings(), stack.provider()
    old, new = info(content_digest="one"), info(content_digest="two")
    provider.publish(old, settings, disk, stack.context(settings, old, state="old"))
    stack.arm.lose_reply("DELETE", IMAGE)

    ctx = stack.context(settings, new, replace=True)
    provider.publish(new, settings, disk, ctx)

    assert stack.arm.losses.lost
    _succeeded(stack, "images/golden-1.2.3", ctx.digest)
    assert stack.arm.count("PUT", IMAGE) == 2  # the old image's, then the new one's
