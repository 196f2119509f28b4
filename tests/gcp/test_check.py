"""GcpProvider.check: what the image and the settings cannot do together on GCE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def problems_and_warnings(image: ImageInfo, s: GcpSettings) -> list[tuple[str, str, bool]]:
    return [(p.field, p.message, p.warning) for p in GcpProvider().check(image, s)]


def test_image_labels_gce_cannot_carry_are_named_not_rewritten() -> None:
    """The core allows '.' in keys and 255-character values; GCE does not."""
    found = problems(info(labels={"app.tier": "web", "note": "x" * 255, "Owner": "me"}), settings())
    assert found == [
        (
            'image.labels["app.tier"]',
            "label key 'app.tier' must be 1-63 characters of lowercase letters, digits, '_' and '-', "
            "starting with a lowercase letter, as GCE labels must be",
        ),
        (
            "image.labels.note",
            "label 'note': value 'xxxxxxxxxxxxxxxxxxxx'... (255 characters) must be 0-63 characters of "
            "lowercase letters, digits, '_' and '-', as GCE labels must be",
        ),
        (
            "image.labels.Owner",
            "label key 'Owner' must be 1-63 characters of lowercase letters, digits, '_' and '-', "
            "starting with a lowercase letter, as GCE labels must be",
        ),
    ]


def test_the_label_count_includes_the_image_labels_and_imgpubs_own() -> None:
    found = problems(info(labels={"owner": "me"}), settings(labels={f"k{i}": "" for i in range(60)}))
    assert found == [("labels", "65 labels with image.labels and imgpub's own 4, but GCE allows at most 64")]
    assert problems(info(), settings(labels={f"k{i}": "" for i in range(60)})) == []


def test_gvnic_off_contradicts_a_gvnic_feature() -> None:
    assert problems(info(), settings(gvnic=False, guest_os_features=["GVNIC"])) == [
        ("gvnic", "is false, but guest_os_features lists GVNIC; keep one of them")
    ]
    assert problems(info(), settings(gvnic=False)) == []


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("us", None),
        ("europe-west1", None),
        ("nam4", None),
        ("us-west8", None),
        (
            "US",
            (
                "'US' is not a region name: a lowercase region such as 'us-central1', dual-region such as "
                "'nam4' or multi-region such as 'us'; did you mean 'us'?",
                False,
            ),
        ),
        ("europe-wset1", ("unknown region 'europe-wset1'; did you mean 'europe-west1'?", False)),
        ("us_central1", ("'us_central1' is not a region name", False)),
        ("europe-west99", ("region 'europe-west99' is not in", True)),
    ],
)
def test_storage_locations_are_gcs_locations(location: str, expected: tuple[str, bool] | None) -> None:
    found = problems_and_warnings(info(), settings(storage_locations=["eu", location]))
    if expected is None:
        assert found == []
    else:
        ((field, message, warning),) = found
        assert field == "storage_locations[1]" and message.startswith(expected[0]) and warning == expected[1]


KEY = "projects/imgpub-keys/locations/{}/keyRings/images/cryptoKeys/golden"


def test_a_global_key_cannot_encrypt_the_upload() -> None:
    assert problems_and_warnings(info(), settings(upload_kms_key=KEY.format("global"))) == [
        (
            "upload_kms_key",
            "is in location 'global', which Cloud Storage cannot use: the key must be in the bucket's "
            "location (a region, dual-region or multi-region such as 'us'), or 'bucket-default'",
            False,
        )
    ]
    ((field, message, warning),) = problems_and_warnings(info(), settings(kms_key=KEY.format("global")))
    assert field == "kms_key" and warning and "set upload_kms_key for a bucket that requires CMEK" in message
    both = settings(kms_key=KEY.format("global"), upload_kms_key=KEY.format("us"))
    assert problems_and_warnings(info(), both) == []


def test_key_locations_are_checked_for_typos() -> None:
    assert problems(info(), settings(kms_key=KEY.format("globl"))) == [
        ("kms_key", "unknown region 'globl'; did you mean 'global'?")
    ]
    assert problems(info(), settings(upload_kms_key=KEY.format("europe-wst1"))) == [
        ("upload_kms_key", "unknown region 'europe-wst1'; did you mean 'europe-west1'?")
    ]
    assert problems(info(), settings(kms_key=KEY.format("nam6"))) == []  # a KMS multi-region


def test_imgpub_labels_are_reserved() -> None:
    assert problems(info(), settings(labels={"imgpub-digest": "x"})) == [
        ("labels", "imgpub-name, imgpub-version, imgpub-version-exact and imgpub-digest are set by imgpub")
    ]
    assert problems(info(), settings(labels={"imgpub-version-exact": "x"}))[0][0] == "labels"


def test_a_version_too_long_to_keep_exactly_is_a_warning() -> None:
    """'.' takes 3 characters once escaped: 40 of them cannot fit a 63-character label value."""
    found = GcpProvider().check(info(version="1." * 20), settings())
    assert [(p.field, p.warning) for p in found] == [("image.version", True)]
    assert "too long to keep exactly in the GCE label imgpub-version-exact" in found[0].message


def test_long_image_names_are_trimmed_not_rejected() -> None:
    assert problems(info(name="x" * 70), settings()) == []


def test_deprecate_previous_needs_a_family() -> None:
    assert problems(info(), settings(deprecate_previous=True)) == [
        ("deprecate_previous", "needs a family: the previous image is found by family")
    ]
    assert problems(info(), settings(deprecate_previous=True, family="demo")) == []
