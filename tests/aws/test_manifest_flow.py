"""The aws target through imgpub's public API: manifest validation, publish, re-run, one-line failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import imgpub
from aws.motoaws import Moto
from imgpub.disk import DiskImage
from imgpub.errors import ManifestError


def manifest(folder: Path, disk: DiskImage, target: str, boot: str = "uefi") -> Path:
    folder = folder / "manifest"
    folder.mkdir()
    shutil.copy(disk.path, folder / "disk.raw")
    path = folder / "imgpub.yaml"
    path.write_text(
        "image:\n"
        "  name: demo\n"
        "  version: 2.0.0\n"
        "  source: disk.raw\n"
        f"  boot: {boot}\n"
        "targets:\n"
        "  - name: ami\n"
        "    provider: aws\n"
        "    region: us-east-1\n" + target
    )
    return path


def test_bad_account_id_fails_at_load_with_file_line_and_field(tmp_path: Path, disk: DiskImage) -> None:
    path = manifest(tmp_path, disk, "    share_accounts: ['1234']\n")
    with pytest.raises(ManifestError) as caught:
        imgpub.load_manifest(path)
    message = str(caught.value)
    assert f"{path}:" in message and "share_accounts" in message and "\n" not in message


def test_publish_then_rerun_through_the_api(tmp_path: Path, disk: DiskImage, moto: Moto) -> None:
    path = manifest(tmp_path, disk, f"    endpoint_url: {moto.url}\n    regions: [eu-west-1]\n")
    loaded = imgpub.validate(path)
    first = imgpub.publish(loaded)
    second = imgpub.publish(loaded)
    assert first.ok and second.ok, (first.targets[0].error, second.targets[0].error)
    assert first.targets[0].published is not None and first.targets[0].published.changed
    assert second.targets[0].published is not None and not second.targets[0].published.changed
    assert len(moto.requests("RegisterImage")) == 1 and len(moto.requests("CopyImage")) == 1
    assert imgpub.status(loaded).targets[0].status.drift == []  # type: ignore[union-attr]


def test_missing_credentials_fail_the_target_with_one_line(
    tmp_path: Path, disk: DiskImage, moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = manifest(tmp_path, disk, f"    endpoint_url: {moto.url}\n")
    (target,) = imgpub.publish(path).targets
    assert not target.ok and target.exit_code == 1
    assert target.error is not None and "\n" not in target.error
    assert "no usable AWS credentials" in target.error


def test_tpm_without_plain_uefi_is_rejected_by_validate(tmp_path: Path, disk: DiskImage) -> None:
    """The core allows a TPM with uefi-preferred; AWS's TpmSupport needs BootMode uefi exactly."""
    path = manifest(tmp_path, disk, "", boot="uefi-preferred")
    path.write_text(
        path.read_text().replace(
            "  boot: uefi-preferred\n", "  boot: uefi-preferred\n  boot_check: warn\n  tpm: true\n"
        )
    )
    with pytest.raises(ManifestError) as caught:
        imgpub.validate(path)
    assert "TpmSupport v2.0 needs boot: uefi on AWS" in str(caught.value) and "\n" not in str(caught.value)
