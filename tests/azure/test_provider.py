"""AzureProvider end to end against Azurite and the fake ARM: upload, image, gallery, re-runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from azure.storage.blob import BlobClient

from imgpub.disk.write_vhd import vhd_disk_size
from imgpub.errors import CloudError, ConfigurationError, ImageConflictError
from imgpub.identity import TAG_DIGEST


def _download_vhd(stack, name: str, dest: Path) -> Path:
    blob = BlobClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"],
        stack.container,
        name,
        api_version="2025-11-05",
    )
    with open(dest, "wb") as f:
        blob.download_blob().readinto(f)
    return dest


def test_publish_managed_image_from_sparse_page_blob(stack, disk, info, raw_disk, tmp_path):
    settings = stack.settings(keep_upload=True)
    image = info()
    ctx = stack.context(settings, image)

    published = stack.provider().publish(image, settings, disk, ctx)

    assert published.changed and not published.warnings
    created = stack.arm.get("images/golden-1.2.3")
    assert created is not None and created["tags"][TAG_DIGEST] == ctx.digest
    assert created["properties"]["hyperVGeneration"] == "V2"
    blob_uri = created["properties"]["storageProfile"]["osDisk"]["blobUri"]
    assert blob_uri.endswith(f"/{stack.container}/golden-1.2.3.vhd") and "sig=" not in blob_uri
    vhd = _download_vhd(stack, "golden-1.2.3.vhd", tmp_path / "blob.vhd")
    assert vhd.stat().st_size == vhd_disk_size(disk.virtual_size) + 512
    info_out = subprocess.run(
        ["qemu-img", "info", "-f", "vpc", "--output=json", vhd], check=True, capture_output=True, text=True
    ).stdout
    assert f'"virtual-size": {vhd_disk_size(disk.virtual_size)}' in info_out
    subprocess.run(
        ["qemu-img", "compare", "-f", "vpc", "-F", "raw", vhd, raw_disk], check=True, capture_output=True
    )
    # Only non-zero pages went over the wire: the explicit MiB of zeros at 9 MiB and the holes did not.
    pages = stack.proxy.pages()
    assert pages and all(p.length <= 4 << 20 for p in pages)
    sent = sum(p.length for p in pages)
    assert sent < disk.allocation.data_bytes
    for p in pages:
        start = int(p.range.split("=")[1].split("-")[0])
        assert not (9 << 20 <= start < 10 << 20)


def test_rerun_is_a_noop(stack, disk, info):
    settings = stack.settings()
    image = info()
    provider = stack.provider()
    provider.publish(image, settings, disk, stack.context(settings, image))
    puts_before = len(stack.proxy.pages())
    arm_puts = stack.arm.count("PUT", "/images/")

    ctx = stack.context(settings, image)
    plan = provider.plan(image, settings, ctx)
    again = provider.publish(image, settings, disk, ctx)

    assert plan.up_to_date and plan.existing
    assert not again.changed
    assert len(stack.proxy.pages()) == puts_before
    assert stack.arm.count("PUT", "/images/") == arm_puts
    assert again.artifacts[0].kind == "image"


def test_temporary_blob_removed_after_image(stack, disk, info):
    settings = stack.settings()
    image = info()
    provider = stack.provider()
    provider.publish(image, settings, disk, stack.context(settings, image))
    blob = BlobClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"],
        stack.container,
        "golden-1.2.3.vhd",
        api_version="2025-11-05",
    )
    assert not blob.exists()


def test_conflict_needs_replace(stack, disk, info):
    settings = stack.settings()
    provider = stack.provider()
    first = info(content_digest="content-1")
    provider.publish(first, settings, disk, stack.context(settings, first))
    other = info(content_digest="content-2")
    ctx = stack.context(settings, other)

    plan = provider.plan(other, settings, ctx)
    assert plan.conflict and "golden-1.2.3" in plan.conflict
    with pytest.raises(ImageConflictError, match="--replace"):
        provider.publish(other, settings, disk, ctx)

    replaced = provider.publish(other, settings, disk, stack.context(settings, other, replace=True))
    assert replaced.changed
    assert stack.arm.get("images/golden-1.2.3")["tags"][TAG_DIGEST] == ctx.digest


def test_gallery_created_with_definition_and_version(stack, disk, info):
    settings = stack.settings(
        managed_image=False,
        gallery={
            "name": "golden_gallery",
            "security_type": "TrustedLaunchSupported",
            "features": {"DiskControllerTypes": "SCSI,NVMe"},
            "target_regions": [{"name": "westeurope"}, {"name": "westus", "replica_count": 2}],
            "exclude_from_latest": True,
            "end_of_life": "2030-01-01",
        },
    )
    image = info()
    ctx = stack.context(settings, image)

    published = stack.provider().publish(image, settings, disk, ctx)

    assert not published.warnings
    definition = stack.arm.get("galleries/golden_gallery/images/golden")
    props = definition["properties"]
    assert props["hyperVGeneration"] == "V2" and props["architecture"] == "x64"
    assert {"name": "SecurityType", "value": "TrustedLaunchSupported"} in props["features"]
    assert props["identifier"] == {"publisher": "imgpub", "offer": "golden", "sku": "x64-gen2"}
    version = stack.arm.get("galleries/golden_gallery/images/golden/versions/1.2.3")
    profile = version["properties"]["publishingProfile"]
    assert [r["name"] for r in profile["targetRegions"]] == ["westeurope", "westus"]
    assert profile["targetRegions"][1]["regionalReplicaCount"] == 2
    assert profile["excludeFromLatest"] is True
    assert profile["endOfLifeDate"].startswith("2030-01-01")
    source = version["properties"]["storageProfile"]["osDiskImage"]["source"]
    assert source["storageAccountId"].endswith("/storageAccounts/devstoreaccount1")
    kinds = [a.kind for a in published.artifacts]
    assert kinds == ["gallery-image-version"]
    assert stack.provider().plan(image, settings, stack.context(settings, image)).up_to_date


def test_gallery_version_from_managed_image(stack, disk, info):
    settings = stack.settings(gallery={"name": "g1"})
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    version = stack.arm.get("galleries/g1/images/golden/versions/1.2.3")
    assert version["properties"]["storageProfile"]["source"]["id"].endswith("/images/golden-1.2.3")


def test_replication_failure_in_one_region_is_reported(stack, disk, info):
    stack.arm.fail_replication["westus"] = "Replication failed: quota exceeded in westus"
    settings = stack.settings(
        managed_image=False,
        gallery={"name": "g1", "target_regions": [{"name": "westeurope"}, {"name": "westus"}]},
    )
    image = info()
    ctx = stack.context(settings, image)

    published = stack.provider().publish(image, settings, disk, ctx)

    assert len(published.warnings) == 1
    assert "westus" in published.warnings[0] and "quota exceeded" in published.warnings[0]
    status = stack.provider().status(image, settings, ctx)
    assert any("westus" in d for d in status.drift)
    assert ("replicate", 200) in ctx.progress.stages


def test_missing_gallery_without_create_if_missing(stack, disk, info):
    settings = stack.settings(gallery={"name": "nogallery", "create_if_missing": False})
    image = info()
    with pytest.raises(ConfigurationError, match="nogallery does not exist"):
        stack.provider().plan(image, settings, stack.context(settings, image))


def test_managed_disk_upload(stack, disk, info, raw_disk, tmp_path):
    settings = stack.settings(
        upload="managed-disk", storage_account=None, blob_endpoint=None, keep_upload=True
    )
    image = info()
    ctx = stack.context(settings, image)

    stack.provider().publish(image, settings, disk, ctx)

    created = stack.arm.get("images/golden-1.2.3")
    disk_id = created["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
    assert disk_id.endswith(f"/disks/{stack.upload_disk(settings)}")
    upload_disk = stack.arm.get(f"disks/{stack.upload_disk(settings)}")
    assert upload_disk["properties"]["diskState"] == "Unattached"
    size = upload_disk["properties"]["creationData"]["uploadSizeBytes"]
    assert size == vhd_disk_size(disk.virtual_size) + 512
    assert "sig=" not in ctx.journal.path.read_text()
    compare_blob = BlobClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"],
        stack.arm.disk_container,
        f"{stack.upload_disk(settings)}.vhd",
        api_version="2025-11-05",
    )
    dest = tmp_path / "disk.vhd"
    with open(dest, "wb") as f:
        compare_blob.download_blob().readinto(f)
    subprocess.run(["qemu-img", "compare", "-f", "vpc", "-F", "raw", dest, raw_disk], check=True)


def test_new_region_updates_the_version_without_upload(stack, disk, info):
    gallery = {"name": "g1", "target_regions": [{"name": "westeurope"}]}
    settings = stack.settings(managed_image=False, gallery=gallery)
    image = info()
    provider = stack.provider()
    provider.publish(image, settings, disk, stack.context(settings, image))
    pages = len(stack.proxy.pages())

    wider = stack.settings(
        managed_image=False,
        gallery={**gallery, "target_regions": [{"name": "westeurope"}, {"name": "northeurope"}]},
    )
    ctx = stack.context(wider, image)
    assert ctx.digest == stack.context(settings, image).digest  # regions are not part of the identity
    plan = provider.plan(image, wider, ctx)
    assert [(a.kind, a.region) for a in plan.actions] == [("copy", "northeurope")]

    provider.publish(image, wider, disk, ctx)

    version = stack.arm.get("galleries/g1/images/golden/versions/1.2.3")
    regions = [r["name"] for r in version["properties"]["publishingProfile"]["targetRegions"]]
    assert regions == ["westeurope", "northeurope"]
    assert "osDiskImage" in version["properties"]["storageProfile"]
    assert len(stack.proxy.pages()) == pages
    assert provider.plan(image, wider, stack.context(wider, image)).up_to_date


def test_status_reports_drift(stack, disk, info):
    settings = stack.settings(gallery={"name": "g1"})
    image = info()
    ctx = stack.context(settings, image)
    before = stack.provider().status(image, settings, ctx)
    assert {"image golden-1.2.3 is missing", "gallery image version g1/golden/1.2.3 is missing"} <= set(
        before.drift
    )

    stack.provider().publish(image, settings, disk, ctx)
    after = stack.provider().status(image, settings, ctx)
    assert not after.drift
    assert [a.kind for a in after.artifacts] == ["image", "gallery-image-version"]
    assert after.artifacts[1].extra["regions"] == {"westeurope": "Completed"}


def test_gallery_version_conflict_and_replace(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    provider = stack.provider()
    first = info(content_digest="one")
    provider.publish(first, settings, disk, stack.context(settings, first))
    second = info(content_digest="two")
    with pytest.raises(ImageConflictError, match=r"gallery image version g1/golden/1\.2\.3"):
        provider.publish(second, settings, disk, stack.context(settings, second))
    ctx = stack.context(settings, second, replace=True)
    provider.publish(second, settings, disk, ctx)
    assert stack.arm.get("galleries/g1/images/golden/versions/1.2.3")["tags"][TAG_DIGEST] == ctx.digest
    assert stack.arm.count("DELETE", "/versions/1.2.3") == 1


def test_managed_disk_upload_resumes_after_interruption(stack, disk, info, raw_disk, tmp_path):
    settings = stack.settings(upload="managed-disk", storage_account=None, blob_endpoint=None, concurrency=1)
    image = info()
    provider = stack.provider()
    stack.proxy.fail("PUT", "comp=page", 500, times=1000, after=2, code="InternalError")
    with pytest.raises(CloudError, match=r"page\(s\) failed"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert stack.arm.get(f"disks/{stack.upload_disk(settings)}")["properties"]["diskState"] == "ActiveUpload"
    first = {r.range for r in stack.proxy.pages()}
    assert len(first) == 2

    stack.proxy.rules.clear()
    stack.proxy.requests.clear()
    provider.publish(image, settings, disk, stack.context(settings, image))

    second = {r.range for r in stack.proxy.pages()}
    assert second and not (first & second)
    assert stack.arm.get("images/golden-1.2.3") is not None
    assert stack.arm.get(f"disks/{stack.upload_disk(settings)}") is None  # removed once the image exists
    assert stack.arm.count("POST", "/beginGetAccess") == 2


def test_stopped_run_continues_without_uploading_again(stack, disk, info):
    settings = stack.settings(gallery={"name": "g1"})
    image = info()
    provider = stack.provider()
    stack.arm.inject("PUT", r"/versions/", 500, times=1000)
    with pytest.raises(CloudError, match="create image version"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    assert stack.arm.get("images/golden-1.2.3") is not None
    stack.arm.faults.clear()
    stack.proxy.requests.clear()

    ctx = stack.context(settings, image)
    plan = provider.plan(image, settings, ctx)
    assert [a.kind for a in plan.actions] == ["create", "delete"]
    provider.publish(image, settings, disk, ctx)

    assert stack.proxy.pages() == []
    assert stack.arm.get("galleries/g1/images/golden/versions/1.2.3") is not None
    writes = [r for r in stack.proxy.requests if r.method == "PUT" and r.path.endswith(".vhd")]
    assert [r.query for r in writes] == ["comp=lease"]  # the lease to remove the blob, no upload
    assert provider.plan(image, settings, stack.context(settings, image)).up_to_date


def test_arm_scope_follows_the_resource_manager_endpoint(stack, disk, info):
    settings = stack.settings()
    image = info()
    stack.provider().plan(image, settings, stack.context(settings, image))
    assert set(stack.credential.scopes) == {f"{stack.arm.url}/.default"}


def test_failed_long_running_operation_is_one_line(stack, disk, info):
    stack.arm.fail("/images/", "InvalidParameter", "unsupported virtual size")
    settings = stack.settings()
    image = info()
    with pytest.raises(CloudError) as caught:
        stack.provider().publish(image, settings, disk, stack.context(settings, image))
    message = str(caught.value)
    assert "create image golden-1.2.3" in message and "unsupported virtual size" in message
    assert "\n" not in message


def test_existing_definition_of_another_generation_is_a_conflict(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    bios = info(boot="bios", version="1.0.0")
    stack.provider().publish(bios, settings, disk, stack.context(settings, bios))
    uefi = info(boot="uefi", version="1.0.1")
    ctx = stack.context(settings, uefi)
    plan = stack.provider().plan(uefi, settings, ctx)
    assert plan.conflict is not None
    assert "image definition g1/golden differs from the manifest" in plan.conflict
    assert "hyperVGeneration is V1, the manifest wants V2" in plan.conflict
    assert "use a new gallery.image_definition name" in (plan.conflict_hint or "")
    with pytest.raises(ImageConflictError):
        stack.provider().publish(uefi, settings, disk, ctx)
    drift = stack.provider().status(uefi, settings, ctx).drift
    assert any(d.startswith("image definition g1/golden differs from the manifest:") for d in drift)
    # --replace cannot delete a definition that holds another version: one line, nothing deleted
    with pytest.raises(
        ConfigurationError, match=r"it holds versions 1\.0\.0; use a new gallery.image_definition"
    ):
        stack.provider().publish(uefi, settings, disk, stack.context(settings, uefi, replace=True))
    assert stack.arm.get("galleries/g1/images/golden/versions/1.0.0") is not None
