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


KEY = "projects/imgpub-keys/locations/us/keyRings/images/cryptoKeys/golden"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("labels", {"Team": "os"}, "label key 'Team' must be 1-63 characters"),
        ("labels", {"9team": "os"}, "starting with a lowercase letter"),
        ("labels", {"team": "OS"}, "label 'team': value 'OS' must be 0-63"),
        ("labels", {"team": "x" * 64}, "(64 characters) must be 0-63 characters"),
        ("labels", {f"k{i}": "v" for i in range(65)}, "65 labels, but GCE allows at most 64"),
        ("image_name", "Demo_Linux", "must match [a-z]([-a-z0-9]*[a-z0-9])?"),
        ("image_name", "Demo_Linux", "; did you mean 'demo-linux'?"),
        ("image_name", "demo-", "must match"),
        ("image_name", "d" * 64, "must be 1-63 characters long (it has 64)"),
        ("family", "1demo", "'1demo' must match"),
        ("project", "My_Project", "a project ID must be 6-30 lowercase letters, digits and hyphens"),
        ("project", "My_Project", "; did you mean 'my-project'?"),
        ("project", "proj-", "starting with a letter and not ending with a hyphen"),
        ("project", "imgpb", "6-30"),
        ("project", "example.com:My-Project", "domain-scoped ID such as example.com:my-project"),
        ("bucket", "Bad_Bucket!", "a bucket name may hold only lowercase letters, digits, '-', '_' and '.'"),
        ("bucket", "Bad_Bucket!", "; did you mean 'bad_bucket'?"),
        ("bucket", "ab", "must be 3-63 characters long (it has 2)"),
        ("bucket", "b" * 64, "must be 3-63 characters long (it has 64)"),
        ("bucket", "a." + "b" * 64, "each dot-separated part 1-63"),
        ("bucket", "images..example.com", "each dot-separated part 1-63"),
        ("bucket", "-images", "must start and end with a letter or digit"),
        ("bucket", "192.168.5.4", "must not be an IP address"),
        ("bucket", "goog-images", "must not start with 'goog'"),
        ("bucket", "my-g00gle-images", "or contain 'google' (or a look-alike)"),
        ("guest_os_features", ["UEFI"], "unknown guest OS feature 'UEFI'"),
        ("share_members", ["ann@example.com"], "an IAM member needs a prefix such as user:"),
        ("share_members", ["user:ann"], "user: needs an email address"),
        ("share_members", ["serviceaccount:ci@p.iam.gserviceaccount.com"], "did you mean 'serviceAccount'?"),
        ("share_members", ["domain:example"], "domain: needs a domain name"),
        ("share_members", ["allUsers"], "GCE does not share images with allUsers"),
        ("kms_key", "my-key", "must be a Cloud KMS key name: projects/<project>/locations/<location>/"),
        ("kms_key", f"{KEY}/cryptoKeyVersions/1", f"names a key version; name the key itself ({KEY})"),
        ("kms_key", KEY.replace("imgpub-keys", "p"), "project 'p' must be 6-30"),
        ("kms_key", KEY.replace("/us/", "/US/"), "location 'US' must be a lowercase location name"),
        ("kms_key", KEY.replace("golden", "gold.en"), "key ID 'gold.en' must be 1-63 letters"),
        ("upload_kms_key", "none", "must be a Cloud KMS key name"),
        ("licenses", ["enable-vmx"], "must be projects/<project>/global/licenses/<name>"),
        (
            "licenses",
            ["projects/vm-options/global/licenses/Enable_VMX"],
            "license name 'Enable_VMX' must match",
        ),
        ("licenses", ["https://example.com/projects/vm-options/global/licenses/x"], "must be projects/"),
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
        share_members=[
            "group:qa@example.com",
            "user:ann.lee+ci@example.co.uk",
            "serviceAccount:ci@my-project.iam.gserviceaccount.com",
            "domain:example.com",
            "allAuthenticatedUsers",
            "principalSet://iam.googleapis.com/locations/global/workforcePools/p/group/g",
        ],
        kms_key=KEY,
        upload_kms_key="bucket-default",
        licenses=[
            "projects/vm-options/global/licenses/enable-vmx",
            "https://compute.googleapis.com/compute/v1/projects/windows-cloud/global/licenses/windows-server-2022-dc",
            "https://www.googleapis.com/compute/v1/projects/example.com:licensing/global/licenses/x",
        ],
        gvnic=False,
    )
    assert s.provider == "gcp" and s.labels["cost_center"] == "" and not s.gvnic


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project", "example.com:imgpub-test"),
        ("project", "a23456"),
        ("project", "a" * 30),
        ("bucket", "my_images-1"),
        ("bucket", "images.example.com"),
        ("bucket", ".".join(["b" * 63] * 3) + ".cd"),
        ("bucket", "abc"),
    ],
)
def test_names_at_the_edge_of_the_rules_are_accepted(field: str, value: str) -> None:
    assert getattr(settings(**{field: value}), field) == value


def test_the_upload_key_is_the_image_key_unless_said_otherwise() -> None:
    regional = KEY
    global_key = KEY.replace("/us/", "/global/")
    assert settings().upload_key() is None
    assert settings(kms_key=regional).upload_key() == regional
    assert settings(kms_key=global_key).upload_key() is None  # Cloud Storage cannot use a global key
    assert settings(kms_key=global_key, upload_kms_key=regional).upload_key() == regional
    assert settings(kms_key=regional, upload_kms_key="bucket-default").upload_key() is None


def test_identity_leaves_out_what_needs_no_new_upload(tmp_path: Path) -> None:
    a = settings(labels={"team": "os"}, share_members=["user:a@example.com"], bucket="one", keep_upload=True)
    b = settings(deprecate_previous=True, bucket="two", compression_level=9, storage_endpoint="http://x")
    assert a.identity() == b.identity()
    assert settings(family="x").identity() != settings().identity()
    assert settings(guest_os_features=["GVNIC"]).identity() != settings().identity()
    assert settings(upload_kms_key=KEY).identity() == settings().identity()


def test_gvnic_is_in_the_identity_only_when_switched_off() -> None:
    """Manifests written before the setting existed keep their digests."""
    assert "gvnic" not in settings().identity() and "upload_kms_key" not in settings().identity()
    assert settings(gvnic=False).identity() == {**settings().identity(), "gvnic": False}


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
