"""AwsProvider.check: what AWS would refuse, found before anything is sent (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import imgpub
from imgpub.errors import ManifestError
from imgpub.provider import ImageInfo, Problem
from imgpub_aws import AwsProvider, AwsSettings

KEY = "arn:aws:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
GIB = 1 << 30


def info(**kw: Any) -> ImageInfo:
    base: dict[str, Any] = {
        "name": "golden",
        "version": "1.0",
        "arch": "x86_64",
        "boot": "uefi",
        "virtual_size": 2 * GIB,
        "content_digest": "x",
    }
    return ImageInfo(**{**base, **kw})


def problems(image: ImageInfo | None = None, **settings: Any) -> dict[str, Problem]:
    s = AwsSettings.model_validate({"name": "t", "region": "us-east-1", **settings})
    return {p.field: p for p in AwsProvider().check(image or info(), s)}


def errors(image: ImageInfo | None = None, **settings: Any) -> dict[str, str]:
    return {f: p.message for f, p in problems(image, **settings).items() if not p.warning}


def test_a_plain_target_has_no_problem() -> None:
    assert problems() == {}
    assert problems(region="us-gov-west-1", regions=["us-gov-east-1"]) == {}
    assert problems(region="cn-north-1", role_arn="arn:aws-cn:iam::123456789012:role/p") == {}


# ---------------------------------------------------------------- regions (botocore's lists)
def test_a_misspelt_region_is_an_error_with_a_suggestion() -> None:
    assert (
        errors(region="ca-cnetral-1")["region"]
        == "unknown region 'ca-cnetral-1'; did you mean 'ca-central-1'?"
    )
    assert "did you mean 'eu-west-1'" in errors(regions=["euwest1"])["regions[0]"]
    assert "is not a region name" in errors(optional_regions=["Mars"])["optional_regions[0]"]


def test_a_new_well_formed_region_is_a_warning() -> None:
    (problem,) = problems(regions=["eu-west-9"]).values()
    assert problem.warning and problem.field == "regions[0]"
    assert "not in the regions botocore lists for EC2; publishing anyway" in problem.message


def test_copies_stay_in_one_partition() -> None:
    assert "CopyImage stays within a partition" in errors(regions=["cn-north-1"])["regions"]
    assert (
        "arn:aws-us-gov:"
        in errors(region="us-gov-west-1", role_arn="arn:aws:iam::123456789012:role/p")["role_arn"]
    )


# ---------------------------------------------------------------- KMS keys
def test_keys_per_region_must_be_in_their_region_and_partition() -> None:
    home = KEY.format(region="us-east-1")
    ok = {"encrypted": True, "kms_key_id": home, "regions": ["eu-west-1"]}
    assert errors(**ok, kms_key_ids={"eu-west-1": KEY.format(region="eu-west-1")}) == {}
    assert errors(**ok, kms_key_ids={"eu-west-1": "alias/images"}) == {}
    wrong = errors(**ok, kms_key_ids={"eu-west-1": KEY.format(region="eu-west-2")})
    assert (
        wrong["kms_key_ids.eu-west-1"]
        == "the key is in eu-west-2; the AMI in eu-west-1 needs a key in eu-west-1"
    )
    other = errors(**ok, kms_key_ids={"ap-south-1": "alias/x"})
    assert "ap-south-1 is not one of this target's regions" in other["kms_key_ids.ap-south-1"]
    gov = errors(region="us-gov-west-1", encrypted=True, kms_key_id=KEY.format(region="us-gov-west-1"))
    assert "partition aws-us-gov" in gov["kms_key_id"]


def test_the_ebs_direct_upload_takes_a_key_arn_only() -> None:
    """StartSnapshot's KmsKeyArn pattern is arn:aws...:kms:...:key/...; ImportSnapshot takes any form."""
    message = errors(encrypted=True, kms_key_id="alias/images")["kms_key_id"]
    assert "StartSnapshot) takes a key ARN" in message
    assert "kms_key_id" not in errors(
        encrypted=True, kms_key_id="alias/images", upload="s3-import", s3_bucket="b-1"
    )
    assert (
        "StartSnapshot"
        in errors(encrypted=True, kms_key_ids={"us-east-1": "alias/x"})["kms_key_ids.us-east-1"]
    )


def test_keys_need_encrypted() -> None:
    found = errors(kms_key_id=KEY.format(region="us-east-1"), kms_key_ids={"us-east-1": "alias/x"})
    assert found == {
        "kms_key_id": "kms_key_id needs encrypted: true",
        "kms_key_ids": "kms_key_ids needs encrypted: true",
    }


def test_sharing_an_encrypted_image_needs_a_customer_key_in_every_region() -> None:
    base = {"encrypted": True, "regions": ["eu-west-1", "ap-south-1"], "share_accounts": ["210987654321"]}
    found = errors(
        **base, kms_key_id=KEY.format(region="us-east-1"), kms_key_ids={"eu-west-1": "alias/aws/ebs"}
    )
    assert (
        "default aws/ebs key); no such key for eu-west-1, ap-south-1: set kms_key_ids"
        in found["share_accounts"]
    )
    ou = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-abcdefgh"
    assert "no such key for us-east-1" in errors(encrypted=True, share_ous=[ou])["share_ous"]
    every = {r: KEY.format(region=r) for r in ("us-east-1", "eu-west-1", "ap-south-1")}
    assert errors(**base, kms_key_ids=every) == {}
    assert errors(encrypted=True, regions=["eu-west-1"]) == {}, "not shared: the default key is fine"


# ---------------------------------------------------------------- the root volume
@pytest.mark.parametrize(
    ("settings", "field", "text"),
    [
        (
            {"volume_type": "io1"},
            "volume_type",
            "io1 volumes need iops (100-64,000): RegisterImage requires it",
        ),
        ({"volume_type": "io2", "iops": 300000}, "iops", "io2 takes 100-256,000 IOPS, not 300000"),
        ({"volume_type": "gp3", "iops": 2000}, "iops", "gp3 takes 3,000-80,000 IOPS, not 2000"),
        ({"volume_type": "gp2", "iops": 3000}, "iops", "iops is for gp3, io1, io2 volumes, not gp2"),
        (
            {"volume_type": "gp2", "throughput": 250},
            "throughput",
            "throughput is for gp3 volumes only, not gp2",
        ),
        ({"throughput": 2001}, "throughput", "gp3 takes 125-2,000 MiB/s, not 2001"),
        (
            {"volume_type": "st1"},
            "volume_type",
            "st1 volumes cannot be boot volumes; use gp3, gp2, io1 or io2",
        ),
        (
            {"volume_type": "io1", "iops": 200},
            "volume_type",
            "io1 volumes are 4-16384 GiB; the root volume would be 2 GiB",
        ),
        ({"volume_type": "standard", "volume_size": 2000}, "volume_size", "standard volumes are 1-1024 GiB"),
    ],
)
def test_volume_rules(settings: dict[str, Any], field: str, text: str) -> None:
    assert text in errors(**settings)[field]


def test_good_volumes() -> None:
    assert errors(volume_type="io2", iops=16000, volume_size=8) == {}
    assert errors(volume_type="gp3", iops=6000, throughput=500) == {}


def test_deprecation_limits() -> None:
    assert errors(deprecate_after="3650d") == {}
    assert "at most 10 years ahead" in errors(deprecate_after="3660d")["deprecate_after"]
    assert (
        "public AMIs at most 2 years ahead" in errors(deprecate_after="800d", public=True)["deprecate_after"]
    )
    assert "at most 10 years" in errors(deprecate_after="2099-01-01T00:00:00Z")["deprecate_after"]
    assert "in the past" in errors(deprecate_after="2001-01-01T00:00:00Z")["deprecate_after"]


# ---------------------------------------------------------------- Secure Boot, UEFI data
def test_secure_boot_needs_uefi_data(tmp_path: Path) -> None:
    found = errors(info(secure_boot=True))
    assert found["image.secure_boot"].startswith("secure_boot: true needs uefi_data on AWS")
    store = tmp_path / "vars.bin"
    store.write_bytes(b"\1" * 100)
    assert errors(info(secure_boot=True), uefi_data=str(store)) == {}
    store.write_bytes(b"\1" * 48001)
    assert "at most 48000 bytes" in errors(info(secure_boot=True), uefi_data=str(store))["uefi_data"]


# ---------------------------------------------------------------- tags and labels
def test_labels_and_tags_follow_aws_tag_rules() -> None:
    assert errors(info(labels={"team": "os", "note": "a#b"}), tags={"cost": "R&D", "ok": "x y:z/1"}) == {}
    assert "keys are 1-127 characters" in errors(tags={"k" * 128: "v"})[f"tags.{'k' * 128}"]
    assert "reserved" in errors(tags={"AWS:x": "1"})["tags.AWS:x"]
    assert "values are at most 255" in errors(info(labels={"long": "v" * 256}))["image.labels.long"]


def test_a_dotted_key_is_quoted_so_the_error_points_at_it(tmp_path: Path) -> None:
    assert "at most 255" in errors(info(labels={"app.tier": "v" * 256}))['image.labels["app.tier"]']
    assert "reserved" in errors(tags={"aws:cost.center": "1"})['tags["aws:cost.center"]']
    manifest = tmp_path / "imgpub.yaml"
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    manifest.write_text(
        "image:\n  name: demo\n  version: '1.0'\n  source: disk.raw\n  format: raw\n  boot: uefi\n"
        "  boot_check: warn\n"
        "targets:\n  - name: ami\n    provider: aws\n    region: eu-west-1\n"
        "    tags:\n      team: os\n      aws:cost.center: 'R&D'\n"
    )
    with pytest.raises(ManifestError) as caught:
        imgpub.validate(manifest)
    assert str(caught.value).startswith(f'{manifest}:14:24: targets[0].tags["aws:cost.center"]: ')
    assert "reserved" in str(caught.value)


def test_a_key_in_labels_and_tags_must_agree() -> None:
    clash = errors(info(labels={"team": "os"}), tags={"team": "platform"})["tags.team"]
    assert clash == (
        "image.labels sets team='os' and tags sets team='platform'; a tag has one value, so keep one of them"
    )
    assert errors(info(labels={"team": "os"}), tags={"team": "os"}) == {}


def test_labels_and_tags_count_against_the_50_tag_limit() -> None:
    labels = {f"l{i}": "v" for i in range(30)}
    tags = {f"t{i}": "v" for i in range(15)}
    assert errors(info(labels=labels), tags=tags) == {}
    message = errors(info(labels=labels), tags={**tags, "one-more": "v"})["tags"]
    assert (
        "make 46 tags; AWS allows 50 per AMI and snapshot, 5 of them kept for imgpub, so at most 45"
        in message
    )
