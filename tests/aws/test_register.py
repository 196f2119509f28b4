"""RegisterImage parameters from the image facts and the settings (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from imgpub.provider import ImageInfo
from imgpub_aws import AwsSettings
from imgpub_aws.ebs_upload import GIB, volume_gib
from imgpub_aws.register import recorded_params, register_params
from imgpub_aws.tags import ami_name


def info(**kw: Any) -> ImageInfo:
    base: dict[str, Any] = {
        "name": "golden",
        "version": "1.0",
        "arch": "x86_64",
        "boot": "bios",
        "virtual_size": 3 * GIB + 1,
        "content_digest": "x",
    }
    return ImageInfo(**{**base, **kw})


@pytest.mark.parametrize(
    ("boot", "mode"), [("bios", "legacy-bios"), ("uefi", "uefi"), ("uefi-preferred", "uefi-preferred")]
)
def test_boot_modes(boot: str, mode: str) -> None:
    s = AwsSettings(name="t", region="us-east-1")
    p = register_params(info(boot=boot), s, name="n-1", snapshot_id="snap-1", volume_size=4, tags={})
    assert p["BootMode"] == mode and "TpmSupport" not in p and "UefiData" not in p


def test_optional_fields_are_left_out_when_unset() -> None:
    s = AwsSettings(
        name="t",
        region="us-east-1",
        imds_support=None,
        ena_support=False,
        volume_type="gp2",
        root_device_name="/dev/sda1",
        volume_size=20,
        sriov_net_support="simple",
    )
    p = register_params(
        info(arch="arm64", boot="uefi", tpm=True),
        s,
        name="n",
        snapshot_id="snap-9",
        volume_size=4,
        tags={"a": "b"},
    )
    assert "ImdsSupport" not in p and p["EnaSupport"] is False and p["SriovNetSupport"] == "simple"
    assert p["Architecture"] == "arm64" and p["TpmSupport"] == "v2.0"
    assert p["RootDeviceName"] == "/dev/sda1"
    assert p["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sda1",
            "Ebs": {
                "SnapshotId": "snap-9",
                "VolumeSize": 20,
                "VolumeType": "gp2",
                "DeleteOnTermination": True,
            },
        }
    ]
    assert p["TagSpecifications"][0] == {"ResourceType": "image", "Tags": [{"Key": "a", "Value": "b"}]}


@pytest.mark.parametrize(("size", "gib"), [(1, 1), (GIB, 1), (GIB + 1, 2), (8 * GIB, 8), (8 * GIB + 512, 9)])
def test_volume_size_rounds_up_to_whole_gib(size: int, gib: int) -> None:
    assert volume_gib(size) == gib


def test_default_ami_name_is_sanitised() -> None:
    s = AwsSettings(name="t", region="us-east-1")
    assert ami_name(info(name="web server+gpu", version="1.0~rc1"), s) == "web server-gpu-1.0-rc1"
    assert ami_name(info(name="x" * 200), s) == ("x" * 200 + "-1.0")[:128]
    assert ami_name(info(), AwsSettings(name="t", region="us-east-1", ami_name="Mine (v1)")) == "Mine (v1)"
    assert ami_name(info(), AwsSettings(name="t", region="us-east-1", image_name="base")) == "base-1.0"


def test_only_the_image_is_tagged_by_register_image() -> None:
    """RegisterImage: "the value for ResourceType must be image ... another value ... fails"."""
    s = AwsSettings(name="t", region="us-east-1")
    p = register_params(info(), s, name="n-1", snapshot_id="snap-1", volume_size=4, tags={"a": "b"})
    assert [spec["ResourceType"] for spec in p["TagSpecifications"]] == ["image"]


def test_iops_and_throughput_reach_the_block_device_mapping() -> None:
    io2 = AwsSettings(name="t", region="us-east-1", volume_type="io2", iops=16000)
    p = register_params(info(), io2, name="n-1", snapshot_id="snap-1", volume_size=4, tags={})
    assert p["BlockDeviceMappings"][0]["Ebs"] == {
        "SnapshotId": "snap-1",
        "VolumeSize": 4,
        "VolumeType": "io2",
        "Iops": 16000,
        "DeleteOnTermination": True,
    }
    gp3 = AwsSettings(name="t", region="us-east-1", iops=4000, throughput=250)
    ebs = register_params(info(), gp3, name="n-1", snapshot_id="snap-1", volume_size=4, tags={})[
        "BlockDeviceMappings"
    ][0]["Ebs"]
    assert (ebs["Iops"], ebs["Throughput"]) == (4000, 250)
    plain = register_params(
        info(), AwsSettings(name="t", region="us-east-1"), name="n", snapshot_id="s", volume_size=4, tags={}
    )
    assert (
        "Iops" not in plain["BlockDeviceMappings"][0]["Ebs"]
        and "Throughput" not in plain["BlockDeviceMappings"][0]["Ebs"]
    )


def test_recorded_params_register_an_image_again_from_its_description() -> None:
    described = {
        "ImageId": "ami-0123456789abcdef0",
        "Name": "golden-1.0",
        "Description": "Golden",
        "Architecture": "arm64",
        "BootMode": "uefi",
        "TpmSupport": "v2.0",
        "ImdsSupport": "v2.0",
        "EnaSupport": True,
        "VirtualizationType": "hvm",
        "RootDeviceName": "/dev/xvda",
        "State": "available",
        "CreationDate": "2030-01-01T00:00:00.000Z",
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "SnapshotId": "snap-1",
                    "VolumeSize": 8,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "KmsKeyId": "k",
                },
            }
        ],
        "Tags": [{"Key": "imgpub:digest", "Value": "d"}, {"Key": "aws:backup", "Value": "x"}],
    }
    p = recorded_params(described, "VUVGSQ==")
    assert p == {
        "Name": "golden-1.0",
        "Description": "Golden",
        "Architecture": "arm64",
        "BootMode": "uefi",
        "TpmSupport": "v2.0",
        "ImdsSupport": "v2.0",
        "EnaSupport": True,
        "VirtualizationType": "hvm",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1", "VolumeSize": 8, "VolumeType": "gp3"}}
        ],
        "TagSpecifications": [{"ResourceType": "image", "Tags": [{"Key": "imgpub:digest", "Value": "d"}]}],
        "UefiData": "VUVGSQ==",
    }
