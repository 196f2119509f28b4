"""Trusted Launch: the gallery definition's SecurityType follows the image's tpm / secure_boot (or
gallery.security_type); an existing definition is compared with the manifest; managed images cannot
carry Trusted Launch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgpub.errors import ImageConflictError
from imgpub.provider import ImageInfo
from imgpub_azure import AzureProvider, AzureSettings

SUB = "00000000-0000-0000-0000-0000000000a1"
BASE = {
    "name": "az",
    "subscription_id": SUB,
    "resource_group": "rg",
    "location": "westeurope",
    "storage_account": "acct",
}


def _image(**kw) -> ImageInfo:
    values = {"name": "golden", "version": "1.2.3", "arch": "x86_64", "boot": "uefi", "virtual_size": 1 << 30}
    return ImageInfo(**{**values, "content_digest": "c", **kw})


def _check(image: ImageInfo, **settings) -> dict[str, tuple[str, bool]]:
    problems = AzureProvider().check(image, AzureSettings.model_validate({**BASE, **settings}))
    return {p.field: (p.message, p.warning) for p in problems}


def _features(stack, definition: str = "golden") -> dict[str, str]:
    props = stack.arm.get(f"galleries/g1/images/{definition}")["properties"]
    return {f["name"]: f["value"] for f in props.get("features") or []}


@pytest.mark.parametrize(
    ("tpm", "secure_boot", "security_type", "expected"),
    [
        (True, False, None, "TrustedLaunchSupported"),
        (False, True, None, "TrustedLaunchSupported"),
        (True, True, "TrustedLaunch", "TrustedLaunch"),
        (False, False, "ConfidentialVMSupported", "ConfidentialVMSupported"),
        (True, False, "ConfidentialVM", "ConfidentialVM"),
    ],
)
def test_the_definition_gets_its_security_type(stack, disk, info, tpm, secure_boot, security_type, expected):
    gallery = {"name": "g1", **({"security_type": security_type} if security_type else {})}
    settings = stack.settings(managed_image=False, gallery=gallery)
    image = info(tpm=tpm, secure_boot=secure_boot)
    plan = stack.provider().plan(image, settings, stack.context(settings, image))
    (create,) = [a for a in plan.actions if a.resource == "image definition g1/golden"]
    assert create.detail == f"V2 x64, SecurityType {expected}"
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert _features(stack)["SecurityType"] == expected
    assert stack.arm.get("galleries/g1/images/golden")["properties"]["hyperVGeneration"] == "V2"


def test_no_tpm_no_secure_boot_leaves_the_security_type_to_azure(stack, disk, info):
    settings = stack.settings(managed_image=False, gallery={"name": "g1"})
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert "SecurityType" not in _features(stack)


def test_a_trusted_launch_version_is_made_from_the_vhd_not_the_managed_image(stack, disk, info):
    settings = stack.settings(gallery={"name": "g1"})
    image = info(tpm=True)
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    storage = stack.arm.get("galleries/g1/images/golden/versions/1.2.3")["properties"]["storageProfile"]
    assert "osDiskImage" in storage and "source" not in storage
    assert stack.arm.get("images/golden-1.2.3") is not None


def test_a_definition_whose_features_differ_is_drift_and_a_conflict(stack, disk, info):
    provider = stack.provider()
    plain = stack.settings(
        managed_image=False, gallery={"name": "g1", "features": {"DiskControllerTypes": "SCSI"}}
    )
    first = info(version="1.0.0")
    provider.publish(first, plain, disk, stack.context(plain, first))

    trusted = info(version="1.0.1", tpm=True)
    changed = stack.settings(
        managed_image=False, gallery={"name": "g1", "features": {"DiskControllerTypes": "SCSI"}}
    )
    ctx = stack.context(changed, trusted)
    plan = provider.plan(trusted, changed, ctx)
    assert plan.conflict == (
        "image definition g1/golden differs from the manifest "
        "(feature SecurityType is (not set), the manifest "
        "wants TrustedLaunchSupported)"
    )
    assert plan.conflict_hint is not None and "use a new gallery.image_definition name" in plan.conflict_hint
    assert ("replace", "image definition g1/golden") in [(a.kind, a.resource) for a in plan.actions]
    assert (
        "image definition g1/golden differs from the manifest: "
        "feature SecurityType is (not set), the manifest "
        "wants TrustedLaunchSupported"
    ) in provider.status(trusted, changed, ctx).drift
    with pytest.raises(ImageConflictError) as refused:
        provider.publish(trusted, changed, disk, ctx)
    assert str(refused.value).endswith(f"; {plan.conflict_hint}")
    assert "publish a new version" not in str(refused.value)

    renamed = stack.settings(managed_image=False, gallery={"name": "g1", "image_definition": "golden-tl"})
    provider.publish(trusted, renamed, disk, stack.context(renamed, trusted))
    assert _features(stack, "golden-tl")["SecurityType"] == "TrustedLaunchSupported"


def test_replace_recreates_a_definition_that_holds_only_this_version(stack, disk, info):
    provider = stack.provider()
    plain = stack.settings(
        managed_image=False, gallery={"name": "g1", "features": {"DiskControllerTypes": "SCSI"}}
    )
    image = info()
    provider.publish(image, plain, disk, stack.context(plain, image))
    nvme = stack.settings(
        managed_image=False, gallery={"name": "g1", "features": {"DiskControllerTypes": "SCSI,NVMe"}}
    )
    ctx = stack.context(nvme, image, replace=True)
    assert (
        "feature DiskControllerTypes is SCSI, the manifest wants SCSI,NVMe"
        in provider.plan(image, nvme, ctx).conflict
    )
    provider.publish(image, nvme, disk, ctx)
    assert _features(stack)["DiskControllerTypes"] == "SCSI,NVMe"
    assert stack.arm.count("DELETE", r"/galleries/g1/images/golden$") == 1
    assert provider.plan(image, nvme, stack.context(nvme, image)).up_to_date


def test_a_feature_written_otherwise_is_the_same_feature():
    from azure.mgmt.compute import models as m

    from imgpub_azure.definition import DefinitionSpec, definition_differences

    existing = m.GalleryImage(
        location="westeurope",
        properties=m.GalleryImageProperties(
            os_type="Linux",
            os_state="Generalized",
            hyper_v_generation="V2",
            identifier=m.GalleryImageIdentifier(publisher="p", offer="o", sku="s"),
            features=[m.GalleryImageFeature(name="DiskControllerTypes", value="SCSI, NVMe")],
        ),
    )
    spec = DefinitionSpec(
        "d", "Linux", "Generalized", "V2", "x64", "p", "o", "s", {"diskcontrollertypes": "scsi,nvme"}
    )
    assert definition_differences(existing, spec) == []  # architecture x64 is Azure's default
    arm = DefinitionSpec("d", "Linux", "Generalized", "V2", "Arm64", "p", "o2", "s")
    assert definition_differences(existing, arm) == [
        "architecture is x64, the manifest wants Arm64",
        "offer is o, the manifest wants o2",
    ]


def test_managed_images_cannot_carry_trusted_launch():
    gallery = {"name": "g"}
    assert _check(_image(secure_boot=True), gallery=gallery)["managed_image"] == (
        "managed images cannot carry Trusted Launch "
        "(image.secure_boot is true); set managed_image: false and "
        "publish to a gallery",
        False,
    )
    message, warning = _check(_image(), gallery={**gallery, "security_type": "TrustedLaunch"})[
        "managed_image"
    ]
    assert not warning and "gallery.security_type is TrustedLaunch" in message
    assert _check(_image(tpm=True), gallery=gallery)["managed_image"][1] is True  # a warning: no vTPM there
    assert "managed_image" not in _check(_image(secure_boot=True), managed_image=False, gallery=gallery)
    assert "managed_image" not in _check(
        _image(), gallery={**gallery, "security_type": "TrustedLaunchSupported"}
    )


def test_a_security_type_needs_generation_2():
    problems = _check(
        _image(boot="bios"), managed_image=False, gallery={"name": "g", "security_type": "TrustedLaunch"}
    )
    assert problems["gallery.security_type"] == (
        "TrustedLaunch needs hyperVGeneration V2 (boot: uefi), not V1",
        False,
    )


def test_security_type_is_not_a_free_feature():
    with pytest.raises(ValidationError, match=r"set the SecurityType feature with gallery\.security_type"):
        AzureSettings.model_validate(
            {**BASE, "gallery": {"name": "g", "features": {"SecurityType": "TrustedLaunch"}}}
        )
    with pytest.raises(ValidationError, match="security_type"):
        AzureSettings.model_validate({**BASE, "gallery": {"name": "g", "security_type": "Trusted"}})
