"""AzureSettings validation, identity, and the provider's semantic checks (names, versions, boot mode)."""

from __future__ import annotations

import pytest
from azure.mgmt.compute import models as m
from pydantic import ValidationError

from fakes.arm import unknown_fields
from imgpub.provider import ImageInfo
from imgpub_azure import AzureProvider, AzureSettings
from imgpub_azure.names import default_definition, default_image_name, gallery_version_problem

BASE = {
    "name": "az",
    "subscription_id": "00000000-0000-0000-0000-0000000000a1",
    "resource_group": "rg",
    "location": "westeurope",
    "storage_account": "acct",
}


def _image(**kw) -> ImageInfo:
    values = {
        "name": "golden",
        "version": "1.2.3",
        "arch": "x86_64",
        "boot": "uefi",
        "virtual_size": 1 << 30,
        "content_digest": "c",
    }
    values.update(kw)
    return ImageInfo(**values)


def _settings(**kw) -> AzureSettings:
    return AzureSettings.model_validate({**BASE, **kw})


def _fields(problems):
    return {p.field for p in problems}


def test_identity_leaves_out_regions_replicas_tags_and_transport():
    a = _settings(
        tags={"team": "a"},
        concurrency=2,
        gallery={"name": "g", "target_regions": [{"name": "westus"}], "replica_count": 3},
    )
    b = _settings(
        tags={"team": "b"},
        concurrency=9,
        storage_api_version="2025-11-05",
        gallery={"name": "g", "target_regions": [{"name": "eastus"}], "replica_count": 1},
    )
    assert a.identity() == b.identity()
    assert _settings(os_type="Windows").identity() != _settings().identity()


def test_settings_refuse_nothing_to_publish_and_missing_storage_account():
    with pytest.raises(ValidationError, match="nothing to publish"):
        _settings(managed_image=False)
    with pytest.raises(ValidationError, match="storage_account is required"):
        AzureSettings.model_validate({**BASE, "storage_account": None})
    assert _settings(upload="managed-disk", storage_account=None).upload == "managed-disk"
    with pytest.raises(ValidationError):
        _settings(unknown_field=1)


def test_gallery_version_must_be_major_minor_patch():
    problems = AzureProvider().check(_image(version="2024.05-rc1"), _settings(gallery={"name": "g"}))
    assert "gallery.version" in _fields(problems)
    assert gallery_version_problem("1.2.3") is None
    assert "MAJOR.MINOR.PATCH" in (gallery_version_problem("1.2") or "")
    assert "at most" in (gallery_version_problem("1.2.4294967296") or "")
    with pytest.raises(ValidationError, match=r"MAJOR\.MINOR\.PATCH"):
        _settings(gallery={"name": "g", "version": "1.2"})


def test_names_follow_azure_rules():
    assert default_image_name("My Image!", "1.0 beta") == "My-Image-1.0-beta"
    assert default_definition("__odd name__") == "odd-name"
    with pytest.raises(ValidationError, match="not a valid managed image name"):
        _settings(image_name="-bad")
    with pytest.raises(ValidationError, match="gallery names are 1-80 letters"):
        _settings(gallery={"name": "has-hyphen"})
    derived = AzureProvider().check(_image(name="-odd", version="1.2.3.4"), _settings(gallery={"name": "g"}))
    assert {"gallery.version"} <= _fields(derived)


def test_hyper_v_generation_against_boot_mode():
    provider = AzureProvider()
    assert "hyper_v_generation" in _fields(
        provider.check(_image(boot="bios"), _settings(hyper_v_generation="V2"))
    )
    assert "hyper_v_generation" in _fields(
        provider.check(_image(boot="uefi"), _settings(hyper_v_generation="V1"))
    )
    assert not provider.check(_image(boot="uefi-preferred"), _settings(hyper_v_generation="V1"))
    assert not provider.check(_image(boot="bios"), _settings())


def test_arm64_needs_gallery_and_v2():
    provider = AzureProvider()
    problems = _fields(provider.check(_image(arch="arm64"), _settings()))
    assert {"gallery", "managed_image"} <= problems
    ok = _settings(managed_image=False, gallery={"name": "g"})
    assert not provider.check(_image(arch="arm64"), ok)
    assert "hyper_v_generation" in _fields(
        provider.check(_image(arch="arm64"), ok.model_copy(update={"hyper_v_generation": "V1"}))
    )


def test_fake_arm_rejects_members_the_sdk_models_do_not_have():
    body = {
        "location": "x",
        "properties": {"storageProfile": {"osDisk": {"osTyp": "Linux"}}},
        "tags": {"any": "thing"},
    }
    assert unknown_fields(body, m.Image) == ["properties.storageProfile.osDisk.osTyp"]
    version = {
        "location": "x",
        "properties": {"publishingProfile": {"targetRegions": [{"name": "a", "bogus": 1}]}},
    }
    assert unknown_fields(version, m.GalleryImageVersion) == [
        "properties.publishingProfile.targetRegions[0].bogus"
    ]


def test_exports():
    import imgpub_azure

    assert imgpub_azure.__all__ == ["AzureProvider", "AzureSettings"]
    assert AzureProvider.name == "azure" == AzureSettings.model_fields["provider"].default


def test_entry_point_name_matches_provider_name():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="imgpub.providers") if e.name == "azure"]
    assert ep.load() is AzureProvider


def test_importing_the_provider_loads_no_azure_sdk():
    import subprocess
    import sys

    code = "import sys, imgpub_azure; print(sorted(m for m in sys.modules if m.startswith('azure')))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_size_limits_of_each_upload_path():
    provider = AzureProvider()
    small = _image(virtual_size=10 << 20)
    assert "upload" in _fields(provider.check(small, _settings(upload="managed-disk", storage_account=None)))
    assert not provider.check(small, _settings())
    huge = _image(virtual_size=9 << 40)
    assert "upload" in _fields(provider.check(huge, _settings()))


def _values(enum) -> set[str]:
    return {str(e.value) for e in enum}


def _literal(name: str) -> set[str]:
    import typing

    from imgpub_azure import settings

    return set(typing.get_args(getattr(settings, name)))


def test_storage_account_types_are_the_sdk_enums_of_where_they_go():
    """Gallery replicas: StorageAccountType (TargetRegion / publishing profile); a managed image's OS
    disk: StorageAccountTypes less the data-disk-only types; the upload disk: DiskStorageAccountTypes."""
    from imgpub_azure.managed_disk import UPLOAD_DISK_SKU
    from imgpub_azure.settings import GallerySettings

    assert _literal("GalleryStorageAccountType") == _values(m.StorageAccountType)
    assert "PremiumV2_LRS" in _literal("GalleryStorageAccountType")
    assert _literal("OsDiskStorageAccountType") == _values(m.StorageAccountTypes) - {
        "UltraSSD_LRS",
        "PremiumV2_LRS",
    }
    assert UPLOAD_DISK_SKU in _values(m.DiskStorageAccountTypes)
    # and each field maps to that enum in the SDK models
    from fakes.arm.contract import enum_of, members

    assert enum_of(members(m.TargetRegion)["storageAccountType"].hint) is m.StorageAccountType
    assert (
        enum_of(members(m.GalleryImageVersionPublishingProfile)["storageAccountType"].hint)
        is m.StorageAccountType
    )
    assert enum_of(members(m.ImageOSDisk)["storageAccountType"].hint) is m.StorageAccountTypes
    assert enum_of(members(m.DiskSku)["name"].hint) is m.DiskStorageAccountTypes
    gallery = GallerySettings(
        name="g",
        storage_account_type="PremiumV2_LRS",
        target_regions=[{"name": "eastus", "storage_account_type": "PremiumV2_LRS"}],
    )
    assert gallery.target_regions[0].storage_account_type == "PremiumV2_LRS"


def test_security_types_are_the_sdk_enums():
    assert _literal("SecurityType") == (_values(m.SecurityTypes) - {"Standard"}) | _values(
        m.SupportedSecurityOption
    ) | {"ConfidentialVMSupported"}


def test_unset_new_settings_leave_earlier_digests_alone():
    plain = _settings(gallery={"name": "g"}).identity()
    assert "disk_encryption_set" not in plain and "os_disk_storage_account_type" not in plain
    assert "security_type" not in plain["gallery"]
    group = f"/subscriptions/{BASE['subscription_id']}/resourceGroups/k"
    des = f"{group}/providers/Microsoft.Compute/diskEncryptionSets/d"
    assert _settings(disk_encryption_set=des).identity()["disk_encryption_set"] == des
