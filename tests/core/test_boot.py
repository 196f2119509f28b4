"""How the image boots when the manifest does not say, and refusing a disk that cannot boot as said."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import imgpub
from imaging import BIOS_BOOT_TYPE, LINUX_TYPE, MiB, gpt_raw, gpt_tables, pattern, sparse_raw
from imgpub.cli import app
from imgpub.disk import ImageFormatError
from imgpub.errors import ManifestError
from imgpub.pipeline import plan, publish

LOCAL = "- name: out\n  provider: local\n  path: out\n  formats: [raw]\n"


def mbr_disk(path: Path, *, boot_code: bool) -> Path:
    mbr = bytearray(512)
    if boot_code:
        mbr[:3] = b"\xeb\x63\x90"
    entry = bytes([0x80 if boot_code else 0, 0, 2, 0, 0x83, 0, 0, 0])
    mbr[446:462] = entry + (2048).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    return sparse_raw(path, 4 * MiB, [(0, bytes(mbr)), (MiB, pattern(4096, 1))])


def manifest(tmp_path: Path, extra: str = "", source: str = "disk.raw") -> Path:
    path = tmp_path / "imgpub.yaml"
    path.write_text(f"image:\n  name: demo\n  version: 1.0.0\n  source: {source}\n{extra}targets:\n{LOCAL}")
    return path


@pytest.mark.parametrize(
    ("esp", "bios", "boot"), [(True, False, "uefi"), (True, True, "uefi-preferred"), (False, True, "bios")]
)
def test_boot_comes_from_the_partition_table(tmp_path: Path, esp: bool, bios: bool, boot: str) -> None:
    gpt_raw(tmp_path / "disk.raw", 4 * MiB, [(3 * MiB, pattern(4096, 1))], esp=esp, bios_boot=bios)
    result = plan(manifest(tmp_path))
    assert (result.image.boot, result.image.boot_source) == (boot, "the partition table")
    shown = CliRunner().invoke(app, ["plan", str(manifest(tmp_path))])
    assert f"boot {boot} (from the partition table; set image.boot to choose)" in shown.stdout


def test_a_manifest_boot_is_taken_as_said(tmp_path: Path, disk: Path) -> None:
    result = plan(manifest(tmp_path, "  boot: uefi\n", source=str(disk)))
    assert (result.image.boot, result.image.boot_source) == ("uefi", "image.boot")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "  boot: uefi\n",
            "5:9: image.boot: boot uefi needs an EFI system partition, but this MBR disk has none; fix the "
            "disk, set image.boot to match it, or set image.boot_check: warn for an unusual layout",
        ),
        ("  arch: arm64\n  boot: uefi\n", "6:9: image.boot: boot uefi needs an EFI system partition"),
    ],
)
def test_uefi_without_an_esp_is_refused(tmp_path: Path, extra: str, message: str) -> None:
    mbr_disk(tmp_path / "disk.raw", boot_code=True)
    path = manifest(tmp_path, extra)
    with pytest.raises(ManifestError) as err:
        imgpub.validate(path)
    assert str(err.value).startswith(f"{path}:{message}")


def test_bios_on_gpt_without_boot_code_is_refused(tmp_path: Path) -> None:
    gpt_raw(tmp_path / "disk.raw", 4 * MiB, [(3 * MiB, pattern(4096, 1))])
    path = manifest(tmp_path, "  boot: bios\n")
    with pytest.raises(ManifestError) as err:
        publish(path)
    assert str(err.value).startswith(
        f"{path}:5:9: image.boot: boot bios needs BIOS boot code, but this GPT disk has neither a BIOS boot "
        "partition nor boot code in its protective MBR"
    )
    assert not (tmp_path / "out").exists(), "nothing is published"


def test_an_mbr_disk_without_boot_code_cannot_boot_bios(tmp_path: Path) -> None:
    mbr_disk(tmp_path / "disk.raw", boot_code=False)
    with pytest.raises(ManifestError, match="no boot code in its MBR and no active partition"):
        imgpub.validate(manifest(tmp_path, "  boot: bios\n"))
    mbr_disk(tmp_path / "disk.raw", boot_code=True)
    assert imgpub.validate(manifest(tmp_path, "  boot: bios\n")).warnings == ()


def test_boot_check_warn_publishes_with_a_warning(tmp_path: Path) -> None:
    gpt_raw(tmp_path / "disk.raw", 4 * MiB, [(3 * MiB, pattern(4096, 1))])
    path = manifest(tmp_path, "  boot: bios\n  boot_check: warn\n")
    result = publish(path)
    assert result.exit_code == 0
    assert len(result.warnings) == 1 and "boot bios needs BIOS boot code" in result.warnings[0]


def test_no_boot_and_no_hint_says_to_set_it(tmp_path: Path) -> None:
    sparse_raw(tmp_path / "disk.raw", 4 * MiB, [(MiB, pattern(4096, 1))])
    path = manifest(tmp_path, "  format: raw\n")
    with pytest.raises(ManifestError) as err:
        imgpub.validate(path)
    assert str(err.value).endswith(
        "image.boot: boot is not set and the disk does not say (no partition table); set image.boot"
    )


def test_a_derived_boot_still_obeys_the_image_rules(tmp_path: Path) -> None:
    """BIOS-only disk, boot left out, tpm asked for: the TPM rule names where bios came from."""
    parts = [(BIOS_BOOT_TYPE, 34, 2047), (LINUX_TYPE, 2048, 8191 - 34)]
    sparse_raw(tmp_path / "disk.raw", 4 * MiB, [*gpt_tables(4 * MiB, parts, boot_code=True)])
    with pytest.raises(
        ManifestError, match=r"a TPM needs UEFI, but boot is bios \(from the partition table\)"
    ):
        imgpub.validate(manifest(tmp_path, "  tpm: true\n"))


# ---- OVA: which disk, its firmware, its digests ----------------------------------------------------
def two_disk_ova(tmp_path: Path, firmware: str | None = "efi", algorithm: str = "SHA256") -> Path:
    from disk.sources import ova, ovf

    system = gpt_raw(tmp_path / "system.raw", 4 * MiB, [(3 * MiB, pattern(4096, 7))])
    data = sparse_raw(tmp_path / "data.raw", 2 * MiB, [(0, pattern(4096, 8))])
    descriptor = ovf(
        [("data.raw", 2 * MiB, "byte"), ("system.raw", 4 * MiB, "byte")],
        firmware=firmware,
        disk_format="http://www.vmware.com/interfaces/specifications/vmdk.html#sparse",
    )
    return ova(tmp_path / "vm.ova", descriptor, {"data.raw": data, "system.raw": system}, algorithm=algorithm)


def test_an_ova_with_two_disks_needs_image_disk(tmp_path: Path) -> None:
    two_disk_ova(tmp_path)
    path = manifest(tmp_path, source="vm.ova")
    with pytest.raises(ImageFormatError, match=r"holds 2 disks: 0 data\.raw .*1 system\.raw"):
        publish(path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("firmware", "boot"), [("efi", "uefi"), ("bios", "bios")])
def test_the_chosen_disk_boots_as_the_ovf_says(tmp_path: Path, firmware: str, boot: str) -> None:
    two_disk_ova(tmp_path, firmware)
    path = manifest(tmp_path, "  disk: system.raw\n  boot_check: warn\n", source="vm.ova")
    result = publish(path)
    assert result.exit_code == 0, result.targets[0].error
    assert (result.image.boot, result.image.boot_source) == (boot, "the OVF firmware")
    published = tmp_path / "out" / "demo" / "1.0.0" / "disk.raw"
    assert published.read_bytes() == (tmp_path / "system.raw").read_bytes()
    by_index = publish(manifest(tmp_path, "  disk: 1\n  boot_check: warn\n", source="vm.ova"))
    assert by_index.targets[0].digest == result.targets[0].digest


def test_a_wrong_digest_in_the_ova_publishes_nothing(tmp_path: Path) -> None:
    ova_path = two_disk_ova(tmp_path)
    blob = bytearray(ova_path.read_bytes())
    at = blob.index(pattern(4096, 7))  # the system disk's data, inside the OVA
    blob[at] ^= 0xFF
    ova_path.write_bytes(bytes(blob))
    with pytest.raises(ImageFormatError, match=r"system\.raw"):
        publish(manifest(tmp_path, "  disk: 1\n", source="vm.ova"))
    assert not (tmp_path / "out").exists()
