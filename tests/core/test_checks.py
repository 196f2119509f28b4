"""Cross-field rules (checks.py): each names the field, at its line, with what to do."""

from __future__ import annotations

import pytest

from imgpub.errors import ManifestError
from imgpub.manifest import load_manifest
from imgpub.manifest.checks import check_image, problem_loc
from imgpub.provider import ImageInfo, Problem

LOCAL = "- name: out\n  provider: local\n  path: out\n"


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ("boot: bios\ntpm: true\n", "6:8", "image.tpm: a TPM needs UEFI, but boot is bios"),
        (
            "boot: uefi-preferred\nsecure_boot: true\n",
            "6:16",
            "image.secure_boot: Secure Boot needs boot: uefi (not uefi-preferred)",
        ),
        (
            "labels:\n  imgpub-x: y\n",
            "6:5",
            "image.labels.imgpub-x: label keys starting with 'imgpub' are reserved for imgpub",
        ),
        (
            "labels:\n  k: " + "v" * 256 + "\n",
            "6:5",
            "image.labels.k: label value is 256 characters; at most 255",
        ),
    ],
)
def test_image_rules(write_manifest, extra: str, where: str, message: str) -> None:
    path = write_manifest(LOCAL, image_extra=extra)
    with pytest.raises(ManifestError) as err:
        load_manifest(path, env={})
    assert str(err.value) == f"{path}:{where}: {message}"


def test_arm64_uefi_preferred_is_fine(write_manifest) -> None:
    m = load_manifest(write_manifest(LOCAL, image_extra="arch: arm64\nboot: uefi-preferred\n"), env={})
    assert m.image.arch == "arm64"


@pytest.mark.parametrize(
    ("size", "message"), [(0, "the disk image is empty"), (1000, "is not a multiple of 512")]
)
def test_size_rules(write_manifest, size: int, message: str) -> None:
    path = write_manifest(LOCAL)
    m = load_manifest(path, env={})
    with pytest.raises(ManifestError, match=rf"{path}:4:11: image\.source: .*{message}"):
        check_image(m, ImageInfo("demo", "1.0.0", "x86_64", "uefi", size, ""))


@pytest.mark.parametrize(
    ("field", "loc"),
    [
        ("regions[1].kms_key", ("targets", 0, "regions", 1, "kms_key")),
        ("regions.1.kms_key", ("targets", 0, "regions", 1, "kms_key")),
        ('image.labels["app.tier"]', ("targets", 0, "image", "labels", "app.tier")),
        ("tags['a.b'].x", ("targets", 0, "tags", "a.b", "x")),
    ],
)
def test_problem_fields_name_their_place(field: str, loc: tuple[object, ...]) -> None:
    assert problem_loc(("targets", 0), Problem(field, "x")) == loc
