"""RegisterImage: the AMI's parameters from the image facts and the settings, and waiting for it.

RegisterImage has no ClientToken. When its reply is lost and the retry answers
`InvalidAMIName.Duplicate`, the AMI of that name is looked up: if it carries this run's digest tag,
it was ours and is adopted. Right after RegisterImage or CopyImage, DescribeImages may not know the
new id yet (EC2 is eventually consistent): `InvalidAMIID.NotFound` is waited out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from imgpub.errors import CloudError
from imgpub.identity import TAG_DIGEST
from imgpub.provider import ImageInfo
from imgpub_aws.errors import Caller, error_code, is_transient
from imgpub_aws.settings import AwsSettings
from imgpub_aws.tags import tag_dict, tag_list
from imgpub_aws.volume import block_device

BOOT_MODES = {"bios": "legacy-bios", "uefi": "uefi", "uefi-preferred": "uefi-preferred"}
WAIT_TIMEOUT_SECONDS = 3 * 3600
NOT_YET_VISIBLE = "InvalidAMIID.NotFound"
"""DescribeImages' answer for an id it does not know yet; retried with the retry policy's back-off."""
_RECORDED = ("Architecture", "BootMode", "TpmSupport", "ImdsSupport", "EnaSupport", "SriovNetSupport")
"""The DescribeImages fields that RegisterImage takes back under the same name."""


def register_params(
    image: ImageInfo,
    settings: AwsSettings,
    *,
    name: str,
    snapshot_id: str,
    volume_size: int,
    tags: dict[str, str],
) -> dict[str, Any]:
    """Every field set explicitly: AWS defaults Architecture to i386 and BootMode to the instance type's.

    The snapshot is not tagged here: RegisterImage's TagSpecifications take `image` only ("if you
    specify another value for ResourceType, the request fails"); the upload tagged it already.
    """
    params: dict[str, Any] = {
        "Name": name,
        "Description": (image.description or f"{image.name} {image.version}")[:255],
        "Architecture": image.arch,
        "BootMode": BOOT_MODES[image.boot],
        "VirtualizationType": "hvm",
        "RootDeviceName": settings.root_device_name,
        "EnaSupport": settings.ena_support,
        "BlockDeviceMappings": [block_device(settings, snapshot_id, volume_size)],
        "TagSpecifications": [{"ResourceType": "image", "Tags": tag_list(tags)}],
    }
    if image.tpm:
        params["TpmSupport"] = "v2.0"
    if settings.imds_support:
        params["ImdsSupport"] = settings.imds_support
    if settings.sriov_net_support:
        params["SriovNetSupport"] = settings.sriov_net_support
    if settings.uefi_data is not None:
        params["UefiData"] = base64.b64encode(settings.uefi_data.read_bytes()).decode()
    return params


def recorded_params(image: dict[str, Any], uefi_data: str | None) -> dict[str, Any]:
    """RegisterImage parameters that make `image` (a DescribeImages entry) again from its snapshots."""
    params: dict[str, Any] = {k: image[k] for k in ("Name", *_RECORDED) if image.get(k) is not None}
    params["VirtualizationType"] = image.get("VirtualizationType") or "hvm"
    params["RootDeviceName"] = image["RootDeviceName"]
    if image.get("Description"):
        params["Description"] = image["Description"]
    params["BlockDeviceMappings"] = [
        {**m, "Ebs": {k: v for k, v in m["Ebs"].items() if k not in ("Encrypted", "KmsKeyId")}}
        if "Ebs" in m
        else m
        for m in image.get("BlockDeviceMappings", [])
    ]
    tags = {k: v for k, v in tag_dict(image).items() if not k.startswith("aws:")}
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "image", "Tags": tag_list(tags)}]
    if uefi_data:
        params["UefiData"] = uefi_data
    return params


def register_image(ec2: Any, call: Caller, region: str, params: dict[str, Any]) -> str:
    return make_image(ec2, call, region, "RegisterImage", params)


def make_image(ec2: Any, call: Caller, region: str, operation: str, params: dict[str, Any]) -> str:
    """RegisterImage or CopyImage; `InvalidAMIName.Duplicate` for an AMI that carries our digest is
    our own AMI whose reply was lost (RegisterImage has no ClientToken): adopt it."""
    method = {"RegisterImage": ec2.register_image, "CopyImage": ec2.copy_image}[operation]
    try:
        return str(call(operation, region, lambda: method(**params))["ImageId"])
    except CloudError as exc:
        if exc.code != "InvalidAMIName.Duplicate":
            raise
        adopted = ours_by_name(ec2, call, region, params)
        if adopted is None:
            raise
        return adopted


def ours_by_name(ec2: Any, call: Caller, region: str, params: dict[str, Any]) -> str | None:
    """The AMI that holds this name, when it carries the digest we register (a lost reply's AMI)."""
    wanted = {t["Key"]: t["Value"] for spec in params.get("TagSpecifications", []) for t in spec["Tags"]}
    filters = [{"Name": "name", "Values": [params["Name"]]}]
    images = call(
        "DescribeImages", region, lambda: ec2.describe_images(Owners=["self"], Filters=filters)
    ).get("Images", [])
    for img in images:
        if wanted.get(TAG_DIGEST) and tag_dict(img).get(TAG_DIGEST) == wanted[TAG_DIGEST]:
            return str(img["ImageId"])
    return None


def _not_yet_visible(exc: BaseException) -> bool:
    return is_transient(exc) or error_code(exc) == NOT_YET_VISIBLE


def describe_new(ec2: Any, call: Caller, region: str, image_id: str) -> list[dict[str, Any]]:
    """DescribeImages for an AMI made a moment ago: NotFound is retried until EC2 knows the id."""
    images = call(
        "DescribeImages", region, lambda: ec2.describe_images(ImageIds=[image_id]), _not_yet_visible
    )
    return list(images["Images"])


def wait_available(
    ec2: Any,
    call: Caller,
    region: str,
    image_id: str,
    operation: str = "RegisterImage",
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll DescribeImages until the AMI is available; `failed` or a timeout is a CloudError of the
    `operation` that made the AMI."""
    deadline, delay = time.monotonic() + WAIT_TIMEOUT_SECONDS, 1.0
    while True:
        images = describe_new(ec2, call, region, image_id)
        state = images[0].get("State") if images else "missing"
        if state == "available":
            return dict(images[0])
        if state in ("failed", "missing", "error", "invalid", "deregistered") or time.monotonic() > deadline:
            reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
            raise CloudError(
                call.target, operation, f"image {image_id} is {state} {reason}".strip(), region=region
            )
        sleep(delay)
        delay = min(delay * 2, 30.0)


def deregister(ec2: Any, call: Caller, region: str, image_id: str) -> None:
    call("DeregisterImage", region, lambda: ec2.deregister_image(ImageId=image_id))
