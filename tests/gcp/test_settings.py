"""Settings are validated when the manifest is: names, labels, features, members; identity() scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from imgpub_gcp import GcpSettings
from imgpub_gcp.settings import GUEST_OS_FEATURES

BASE = {"name": "gce", "project": "imgpub-test", "bucket": "images"}


def settings(**fields: Any) -> GcpSettings:
    return GcpSettings.model_validate({**BASE, **fields})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("labels", {"Team": "os"}, "label key 'Team' must be 1-63 characters"),
        ("labels", {"9team": "os"}, "starting with a lowercase letter"),
        ("labels", {"team": "OS"}, "label 'team': value 'OS' must be 0-63"),
        ("labels", {"team": "x" * 64}, "must be 0-63 characters"),
        ("labels", {f"k{i}": "v" for i in range(65)}, "65 labels, but GCE allows at most 64"),
        ("image_name", "Demo_Linux", "'Demo_Linux' must match [a-z]([-a-z0-9]*[a-z0-9])?"),
        ("image_name", "demo-", "must match"),
        ("image_name", "d" * 64, "must be 1-63 characters long (it has 64)"),
        ("family", "1demo", "'1demo' must match"),
        ("guest_os_features", ["UEFI"], "unknown guest OS feature 'UEFI'"),
        ("share_members", ["ann@example.com"], "needs a prefix such as user:"),
        ("kms_key", "my-key", "String should match pattern"),
        ("compression_level", 10, "less than or equal to 9"),
        ("regions", ["us"], "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**{field: value})
    (error,) = caught.value.errors()
    assert error["loc"][0] == field
    assert message in str(caught.value)


def test_good_settings_are_accepted() -> None:
    s = settings(
        image_name="demo-1-2-3",
        family="demo",
        labels={"team": "os", "cost_center": "", "tier-1": "a_b"},
        guest_os_features=["SEV_CAPABLE", "VIRTIO_SCSI_MULTIQUEUE"],
        share_members=["group:qa@example.com", "allAuthenticatedUsers"],
        kms_key="projects/p/locations/global/keyRings/r/cryptoKeys/k",
    )
    assert s.provider == "gcp" and s.labels["cost_center"] == ""


def test_identity_leaves_out_what_needs_no_new_upload(tmp_path: Path) -> None:
    a = settings(labels={"team": "os"}, share_members=["user:a@example.com"], bucket="one", keep_upload=True)
    b = settings(deprecate_previous=True, bucket="two", compression_level=9, storage_endpoint="http://x")
    assert a.identity() == b.identity()
    assert settings(family="x").identity() != settings().identity()
    assert settings(guest_os_features=["GVNIC"]).identity() != settings().identity()


def test_identity_follows_secure_boot_key_contents(tmp_path: Path) -> None:
    key = tmp_path / "pk.der"
    key.write_bytes(b"one")
    before = settings(shielded_instance_initial_state={"pk": str(key)}).identity()
    key.write_bytes(b"two")
    after = settings(shielded_instance_initial_state={"pk": str(key)}).identity()
    assert before != after


def test_relative_key_paths_resolve_against_the_manifest(tmp_path: Path) -> None:
    s = GcpSettings.model_validate(
        {**BASE, "shielded_instance_initial_state": {"dbs": ["keys/db.der"]}}, context={"base_dir": tmp_path}
    )
    assert s.shielded_instance_initial_state is not None
    assert s.shielded_instance_initial_state.dbs == [tmp_path / "keys" / "db.der"]


def test_feature_list_matches_the_compute_client() -> None:
    from google.cloud import compute_v1

    names = set(compute_v1.GuestOsFeature.Type.__members__) - {"UNDEFINED_TYPE", "FEATURE_TYPE_UNSPECIFIED"}
    assert names <= GUEST_OS_FEATURES
