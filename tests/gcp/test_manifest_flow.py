"""The gcp target through imgpub's public API: manifest validation, publish, re-run, one-line failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import imgpub
from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy
from gcp.stack import PROJECT
from imgpub.errors import ManifestError


def manifest(folder: Path, raw: Path, target: str) -> Path:
    shutil.copy(raw, folder / "disk.raw")
    path = folder / "imgpub.yaml"
    path.write_text(
        "image:\n"
        "  name: demo\n"
        "  version: 2.0.0\n"
        "  source: disk.raw\n"
        "  format: raw\n"
        "  boot: uefi\n"
        "targets:\n"
        "  - name: gce\n"
        "    provider: gcp\n"
        f"    project: {PROJECT}\n" + target
    )
    return path


def test_bad_labels_fail_at_load_with_file_line_and_field(tmp_path: Path, raw_path: Path) -> None:
    path = manifest(tmp_path, raw_path, "    bucket: bkt\n    labels:\n      Team: os\n")
    with pytest.raises(ManifestError) as caught:
        imgpub.load_manifest(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:13:7: targets[0].labels: ")
    assert "labels" in message and "label key 'Team'" in message and "\n" not in message


def test_bad_family_fails_at_load(tmp_path: Path, raw_path: Path) -> None:
    path = manifest(tmp_path, raw_path, "    bucket: bkt\n    family: Demo_Family\n")
    with pytest.raises(ManifestError, match="family"):
        imgpub.load_manifest(path)


def test_publish_then_rerun_through_the_api(
    tmp_path: Path,
    raw_path: Path,
    gce: FakeGce,
    bucket: str,
    gcs: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")
    path = manifest(
        tmp_path,
        raw_path,
        f"    bucket: {bucket}\n    storage_endpoint: {gcs.url}\n    compute_endpoint: {gce.url}\n",
    )
    loaded = imgpub.validate(path)

    first = imgpub.publish(loaded)
    second = imgpub.publish(loaded)

    assert first.ok and second.ok, (first.targets[0].error, second.targets[0].error)
    assert first.targets[0].published is not None and first.targets[0].published.changed
    assert second.targets[0].published is not None and not second.targets[0].published.changed
    assert gce.image(PROJECT, "demo-2-0-0") is not None
    assert imgpub.status(loaded).targets[0].status.drift == []  # type: ignore[union-attr]


def test_missing_credentials_fail_the_target_with_one_line(
    tmp_path: Path, raw_path: Path, gce: FakeGce, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    path = manifest(tmp_path, raw_path, f"    bucket: bkt\n    compute_endpoint: {gce.url}\n")
    result = imgpub.publish(path)
    (target,) = result.targets
    assert not target.ok and target.exit_code == 1
    assert target.error is not None and "\n" not in target.error
    assert "no usable Google credentials" in target.error


def test_validate_runs_the_provider_checks(tmp_path: Path, raw_path: Path) -> None:
    path = manifest(tmp_path, raw_path, "    bucket: bkt\n    guest_os_features: [SEV_CAPABLE]\n")
    path.write_text(path.read_text().replace("boot: uefi", "boot: bios"))
    with pytest.raises(ManifestError) as caught:
        imgpub.validate(path)
    assert "SEV_CAPABLE needs UEFI boot" in str(caught.value)
    assert "guest_os_features" in str(caught.value)


def test_names_gcp_refuses_fail_at_load_naming_file_line_and_field(tmp_path: Path, raw_path: Path) -> None:
    path = manifest(tmp_path, raw_path, "    bucket: Bad_Bucket!\n")
    path.write_text(path.read_text().replace(f"project: {PROJECT}", "project: My_Project"))
    with pytest.raises(ManifestError) as caught:
        imgpub.load_manifest(path)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"{path}:10:14: targets[0].project: a project ID must be 6-30 ")


def test_a_global_image_key_warns_that_the_upload_gets_the_bucket_encryption(
    tmp_path: Path, raw_path: Path
) -> None:
    key = "projects/imgpub-keys/locations/global/keyRings/images/cryptoKeys/golden"
    path = manifest(tmp_path, raw_path, f"    bucket: bkt\n    kms_key: {key}\n")
    (warning,) = imgpub.validate(path).warnings
    assert warning.startswith(
        f"{path}:12:14: targets[0].kms_key: is in location 'global', which Cloud Storage"
    )
