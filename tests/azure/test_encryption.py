"""Disk encryption sets (customer-managed keys): on the upload disk, the managed image and each
gallery region's replicas, each set in the region it encrypts (the fake ARM checks it exists there)."""

from __future__ import annotations

import pytest

from imgpub.errors import CloudError


def _regions(stack) -> dict[str, str | None]:
    version = stack.arm.get("galleries/g1/images/golden/versions/1.2.3")
    return {
        r["name"]: ((r.get("encryption") or {}).get("osDiskImage") or {}).get("diskEncryptionSetId")
        for r in version["properties"]["publishingProfile"]["targetRegions"]
    }


def test_managed_image_and_gallery_replicas_are_encrypted_per_region(stack, disk, info):
    weu = stack.arm.add_disk_encryption_set("des-weu", "westeurope")
    eus = stack.arm.add_disk_encryption_set("des-eus", "eastus")
    gallery = {
        "name": "g1",
        "target_regions": [
            {"name": "westeurope"},
            {"name": "eastus", "disk_encryption_set": eus},
            {"name": "northeurope"},
        ],
    }
    settings = stack.settings(disk_encryption_set=weu, gallery=gallery)
    image = info()
    warnings = [p for p in stack.provider().check(image, settings) if p.warning]
    assert [(p.field, p.message) for p in warnings] == [
        (
            "gallery.target_regions[2].disk_encryption_set",
            "replicas in northeurope are encrypted with platform-managed keys: disk_encryption_set serves "
            "westeurope only; give this region its own",
        )
    ]

    stack.provider().publish(image, settings, disk, stack.context(settings, image))

    os_disk = stack.arm.get("images/golden-1.2.3")["properties"]["storageProfile"]["osDisk"]
    assert os_disk["diskEncryptionSet"] == {"id": weu}
    assert _regions(stack) == {"westeurope": weu, "eastus": eus, "northeurope": None}
    assert stack.provider().status(image, settings, stack.context(settings, image)).drift == []


def test_the_upload_disk_is_encrypted_with_the_set(stack, disk, info):
    weu = stack.arm.add_disk_encryption_set("des-weu", "westeurope")
    settings = stack.settings(
        upload="managed-disk",
        storage_account=None,
        blob_endpoint=None,
        disk_encryption_set=weu,
        keep_upload=True,
    )
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    encryption = stack.arm.get(f"disks/{stack.upload_disk(settings)}")["properties"]["encryption"]
    assert encryption == {"diskEncryptionSetId": weu, "type": "EncryptionAtRestWithCustomerKey"}


def test_a_set_in_another_region_is_refused_by_azure(stack, disk, info):
    eus = stack.arm.add_disk_encryption_set("des-eus", "eastus")
    settings = stack.settings(disk_encryption_set=eus)
    image = info()
    with pytest.raises(
        CloudError, match=r"create image golden-1\.2\.3 in westeurope failed \[InvalidParameter\]"
    ):
        stack.provider().publish(image, settings, disk, stack.context(settings, image))


def test_replicas_encrypted_otherwise_are_drift(stack, disk, info):
    weu = stack.arm.add_disk_encryption_set("des-weu", "westeurope")
    other = stack.arm.add_disk_encryption_set("des-weu2", "westeurope")
    settings = stack.settings(
        managed_image=False,
        gallery={"name": "g1", "target_regions": [{"name": "westeurope", "disk_encryption_set": weu}]},
    )
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    changed = stack.settings(
        managed_image=False,
        gallery={"name": "g1", "target_regions": [{"name": "westeurope", "disk_encryption_set": other}]},
    )
    drift = stack.provider().status(image, changed, stack.context(changed, image)).drift
    assert drift == [
        f"gallery image version g1/golden/1.2.3: region westeurope is "
        f"encrypted with {weu}, the manifest says {other}"
    ]
