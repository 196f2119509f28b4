"""GcpProvider.check: what the image and the settings cannot do together on GCE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgpub.provider import ImageInfo
from imgpub_gcp import GcpProvider, GcpSettings


def info(**fields: Any) -> ImageInfo:
    base: dict[str, Any] = {
        "name": "demo",
        "version": "1.0",
        "arch": "x86_64",
        "boot": "uefi",
        "virtual_size": 1 << 30,
        "content_digest": "0" * 64,
    }
    return ImageInfo(**{**base, **fields})


def settings(**fields: Any) -> GcpSettings:
    return GcpSettings.model_validate({"name": "gce", "project": "imgpub-test", "bucket": "bkt", **fields})


def problems(image: ImageInfo, s: GcpSettings) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in GcpProvider().check(image, s)]


def test_a_plain_uefi_image_has_no_problems() -> None:
    assert problems(info(), settings()) == []
    assert problems(info(boot="bios"), settings()) == []


def test_arm64_needs_uefi() -> None:
    assert problems(info(arch="arm64", boot="bios"), settings()) == [
        ("boot", "arm64 images on GCE boot with UEFI only; set boot: uefi")
    ]


def test_confidential_and_secure_boot_need_uefi(tmp_path: Path) -> None:
    key = tmp_path / "pk.der"
    key.write_bytes(b"k")
    found = problems(
        info(boot="bios", secure_boot=True),
        settings(guest_os_features=["SEV_CAPABLE"], shielded_instance_initial_state={"pk": str(key)}),
    )
    assert ("guest_os_features", "SEV_CAPABLE needs UEFI boot, but the image boots bios") in found
    assert ("shielded_instance_initial_state", "Secure Boot keys need UEFI boot") in found
    assert ("boot", "Secure Boot and vTPM on GCE need UEFI boot") in found


def test_missing_key_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "db.der"
    assert problems(info(), settings(shielded_instance_initial_state={"dbs": [str(missing)]})) == [
        ("shielded_instance_initial_state", f"{missing}: no such file")
    ]


def test_manifest_labels_are_checked_with_the_target_labels() -> None:
    found = problems(info(labels={"Owner": "me"}), settings(labels={f"k{i}": "" for i in range(62)}))
    assert any("label key 'Owner'" in m for _, m in found)
    assert any("labels, but GCE allows at most 64" in m for _, m in found)


def test_imgpub_labels_are_reserved() -> None:
    assert problems(info(), settings(labels={"imgpub-digest": "x"})) == [
        ("labels", "imgpub-name, imgpub-version and imgpub-digest are set by imgpub")
    ]


def test_long_image_names_are_trimmed_not_rejected() -> None:
    assert problems(info(name="x" * 70), settings()) == []


def test_deprecate_previous_needs_a_family() -> None:
    assert problems(info(), settings(deprecate_previous=True)) == [
        ("deprecate_previous", "needs a family: the previous image is found by family")
    ]
    assert problems(info(), settings(deprecate_previous=True, family="demo")) == []
