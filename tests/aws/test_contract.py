"""The contract check (contract.py) on both sides: test clients refuse bad requests before sending,
the strict moto server refuses them with the real error code, and the check covers the provider."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from aws import contract as rules
from aws.contract import Contract, ContractViolation
from aws.motoaws import Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub_aws import AwsProvider, volume

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def text(html: str) -> str:
    """A model's documentation as plain text: inline markup dropped, blocks spaced, numbers unpunctuated."""
    plain = re.sub(r"<[^>]+>", " ", re.sub(r"</?(code|i|b|a)( [^>]*)?>", "", html))
    plain = re.sub(r"(\d),(\d)", r"\1\2", re.sub(r"\s+", " ", plain))
    return re.sub(r" ([.,;:])", r"\1", plain)


def ebs_doc(member: str) -> str:
    shape = botocore.session.get_session().get_service_model("ec2").shape_for("EbsBlockDevice")
    return text(shape.members[member].documentation)


def test_volume_ranges_are_the_ones_botocore_documents() -> None:
    """imgpub_aws.volume and the contract both quote EbsBlockDevice's documentation: when AWS changes
    a range, this fails and names it."""
    iops = {
        k: (int(a), int(b)) for k, a, b in re.findall(r"(gp3|io1|io2): (\d+) - (\d+) IOPS", ebs_doc("Iops"))
    }
    assert iops == volume.IOPS == rules.IOPS
    assert "required for io1 and io2" in ebs_doc("Iops")
    low, high = re.search(r"Minimum value of (\d+)\. Maximum value of (\d+)", ebs_doc("Throughput")).groups()  # type: ignore[union-attr]
    assert (int(low), int(high)) == volume.THROUGHPUT["gp3"] == rules.THROUGHPUT
    assert "valid only for gp3" in ebs_doc("Throughput")
    sizes = dict(
        re.findall(r"(gp2|gp3|io1|io2|st1 and sc1|standard): (\d+ - \d+) GiB", ebs_doc("VolumeSize"))
    )
    parsed = {k: tuple(int(x) for x in v.split(" - ")) for k, v in sizes.items()}
    parsed["st1"] = parsed["sc1"] = parsed.pop("st1 and sc1")
    assert parsed == volume.SIZES == rules.SIZES


def test_the_prose_rules_are_still_in_the_model_s_documentation() -> None:
    model = botocore.session.get_session().get_service_model("ec2")

    def doc(op: str, member: str) -> str:
        return text(model.operation_model(op).input_shape.members[member].documentation)

    assert "the value for ResourceType must be image. If you specify another value" in doc(
        "RegisterImage", "TagSpecifications"
    )
    assert "To tag the new snapshots, the value for ResourceType must be snapshot" in doc(
        "CopyImage", "TagSpecifications"
    )
    assert "If you specify a KMS key, you must also set the encrypted state to true" in doc(
        "CopyImage", "KmsKeyId"
    )
    assert "must exist in the destination Region" in doc("CopyImage", "KmsKeyId")
    assert "Base64 representation of the non-volatile UEFI variable store" in doc("RegisterImage", "UefiData")


def test_a_bad_request_is_stopped_before_it_is_sent(moto: Moto, contract: Contract) -> None:
    ec2 = moto.client("ec2")
    with pytest.raises(ContractViolation, match=r"ResourceType: 'snapshot': this operation tags only image"):
        ec2.register_image(
            Name="img",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}
            ],
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "b"}]}],
        )
    assert moto.requests("RegisterImage") == [], "nothing reached the server"
    assert len(contract.broken) == 1
    contract.broken.clear()  # seen: this test is about it


@pytest.fixture
def made(moto: Moto) -> dict[str, str]:
    """A completed snapshot and an AMI registered from it, in us-east-1."""
    ebs, ec2 = moto.client("ebs"), moto.client("ec2")
    snap = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=0)
    ami = ec2.register_image(
        Name="made",
        Architecture="x86_64",
        BootMode="uefi",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    return {"snap": snap, "ami": ami}


def bdm(snap: str, **ebs: Any) -> list[dict[str, Any]]:
    return [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, **ebs}}]


def register(snap: str, **kw: Any) -> dict[str, Any]:
    return {"Name": "new-image", "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": bdm(snap), **kw}


def copy(ami: str, **kw: Any) -> dict[str, Any]:
    return {"Name": "copy", "SourceImageId": ami, "SourceRegion": "us-east-1", **kw}


TAG = [{"Key": "a", "Value": "b"}]
BAD = [
    # (name, service, operation, params from `made`, the error code AWS answers)
    (
        "register-tags-snapshot",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], TagSpecifications=[{"ResourceType": "snapshot", "Tags": TAG}]),
        "InvalidParameterValue",
    ),
    (
        "register-io1-without-iops",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BlockDeviceMappings=bdm(m["snap"], VolumeType="io1", VolumeSize=8)),
        "InvalidParameterCombination",
    ),
    (
        "register-throughput-on-gp2",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BlockDeviceMappings=bdm(m["snap"], VolumeType="gp2", Throughput=250)),
        "InvalidParameterCombination",
    ),
    (
        "register-iops-out-of-range",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BlockDeviceMappings=bdm(m["snap"], VolumeType="gp3", Iops=100)),
        "InvalidParameterValue",
    ),
    (
        "register-encrypted-from-snapshot",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BlockDeviceMappings=bdm(m["snap"], Encrypted=True)),
        "InvalidParameterCombination",
    ),
    (
        "register-tpm-on-bios",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BootMode="legacy-bios", TpmSupport="v2.0"),
        "InvalidParameterCombination",
    ),
    (
        "register-unknown-boot-mode",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BootMode="efi"),
        "InvalidParameterValue",
    ),
    (
        "register-unknown-volume-type",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BlockDeviceMappings=bdm(m["snap"], VolumeType="gp9")),
        "InvalidParameterValue",
    ),
    (
        "register-bad-name",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], Name="golden!"),
        "InvalidAMIName.Malformed",
    ),
    (
        "register-no-name",
        "ec2",
        "register_image",
        lambda m: {k: v for k, v in register(m["snap"]).items() if k != "Name"},
        "MissingParameter",
    ),
    (
        "register-uefi-not-base64",
        "ec2",
        "register_image",
        lambda m: register(m["snap"], BootMode="uefi", UefiData="not base64!"),
        "InvalidParameterValue",
    ),
    (
        "copy-key-without-encrypted",
        "ec2",
        "copy_image",
        lambda m: copy(m["ami"], KmsKeyId=KEY),
        "InvalidParameterDependency",
    ),
    (
        "copy-tags-volume",
        "ec2",
        "copy_image",
        lambda m: copy(m["ami"], TagSpecifications=[{"ResourceType": "volume", "Tags": TAG}]),
        "InvalidParameterValue",
    ),
    ("copy-malformed-source", "ec2", "copy_image", lambda m: copy("image-1"), "InvalidAMIID.Malformed"),
    (
        "tags-aws-prefix",
        "ec2",
        "create_tags",
        lambda m: {"Resources": [m["ami"]], "Tags": [{"Key": "aws:owner", "Value": "x"}]},
        "InvalidParameterValue",
    ),
    (
        "tags-over-50",
        "ec2",
        "create_tags",
        lambda m: {"Resources": [m["ami"]], "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]},
        "TagLimitExceeded",
    ),
    (
        "share-malformed-account",
        "ec2",
        "modify_image_attribute",
        lambda m: {"ImageId": m["ami"], "LaunchPermission": {"Add": [{"UserId": "1234"}]}},
        "InvalidUserID.Malformed",
    ),
    (
        "unshare-unknown-group",
        "ec2",
        "modify_image_attribute",
        lambda m: {"ImageId": m["ami"], "LaunchPermission": {"Remove": [{"Group": "everyone"}]}},
        "InvalidParameterValue",
    ),
    (
        "deprecate-in-the-past",
        "ec2",
        "enable_image_deprecation",
        lambda m: {"ImageId": m["ami"], "DeprecateAt": datetime.now(UTC) - timedelta(days=1)},
        "InvalidParameterValue",
    ),
    (
        "deprecate-over-ten-years-ahead",
        "ec2",
        "enable_image_deprecation",
        lambda m: {"ImageId": m["ami"], "DeprecateAt": datetime.now(UTC) + timedelta(days=3700)},
        "InvalidParameterValue",
    ),
    (
        "delete-snapshot-malformed-id",
        "ec2",
        "delete_snapshot",
        lambda m: {"SnapshotId": "snapshot-1"},
        "InvalidSnapshotID.Malformed",
    ),
    (
        "describe-images-unknown-filter",
        "ec2",
        "describe_images",
        lambda m: {
            "Owners": ["self"],
            "Filters": [{"Name": "block-device-mapping.snapshotid", "Values": ["x"]}],
        },
        "InvalidParameterValue",
    ),
    (
        "describe-snapshots-unknown-filter",
        "ec2",
        "describe_snapshots",
        lambda m: {"OwnerIds": ["self"], "Filters": [{"Name": "state", "Values": ["completed"]}]},
        "InvalidParameterValue",
    ),
    (
        "deregister-malformed-id",
        "ec2",
        "deregister_image",
        lambda m: {"ImageId": "ami-XYZ"},
        "InvalidAMIID.Malformed",
    ),
    (
        "import-qcow2",
        "ec2",
        "import_snapshot",
        lambda m: {"DiskContainer": {"Format": "QCOW2", "UserBucket": {"S3Bucket": "b-1", "S3Key": "k"}}},
        "InvalidParameterValue",
    ),
    (
        "start-timeout-too-short",
        "ebs",
        "start_snapshot",
        lambda m: {"VolumeSize": 1, "Timeout": 5},
        "ValidationException",
    ),
    (
        "start-alias-as-key-arn",
        "ebs",
        "start_snapshot",
        lambda m: {"VolumeSize": 1, "Encrypted": True, "KmsKeyArn": "alias/images"},
        "ValidationException",
    ),
    (
        "start-encrypted-with-parent",
        "ebs",
        "start_snapshot",
        lambda m: {"VolumeSize": 1, "Encrypted": True, "ParentSnapshotId": m["snap"]},
        "ValidationException",
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "params", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_the_strict_server_refuses_what_aws_refuses(
    moto: Moto, made: dict[str, str], contract: Contract, service: str, method: str, params: Any, code: str
) -> None:
    """Sent raw (no botocore validation, no client-side contract): the server's own check answers."""
    request = params(made)
    operation = "".join(p.title() for p in method.split("_"))
    assert any(v.code == code for v in rules.violations(service, operation, request, "us-east-1")), (
        "the client-side check knows the rule too"
    )
    with pytest.raises(ClientError) as caught:
        getattr(moto.raw_client(service), method)(**request)
    assert caught.value.response["Error"]["Code"] == code


def test_every_request_of_a_full_publish_is_checked(
    moto: Moto, settings_for: Any, disk: DiskImage, tmp_path: Path, contract: Contract
) -> None:
    settings = settings_for(
        regions=["eu-west-1"],
        share_accounts=["210987654321"],
        share_snapshots=True,
        deprecate_after="30d",
        encrypted=True,
        kms_key_id=KEY,
        kms_key_ids={"eu-west-1": KEY.replace("us-east-1", "eu-west-1")},
        volume_type="io2",
        iops=4000,
        volume_size=8,
        tags={"team": "os"},
    )
    AwsProvider().publish(
        image_info(disk, tpm=True, labels={"app": "web"}), settings, disk, context(tmp_path)
    )
    sent = {f"{'ebs' if r['service'] == 'ebs' else r['service']}.{r['action']}" for r in moto.requests()}
    assert {
        "ebs.StartSnapshot",
        "ebs.PutSnapshotBlock",
        "ebs.CompleteSnapshot",
        "ec2.RegisterImage",
        "ec2.CopyImage",
        "ec2.ModifyImageAttribute",
        "ec2.ModifySnapshotAttribute",
        "ec2.EnableImageDeprecation",
    } <= set(contract.checked)
    assert sent <= set(contract.checked), "every request that reached the server was checked first"
