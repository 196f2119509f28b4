"""RegisterImage: the AMI's parameters from the image facts and the settings, and waiting for it."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from imgpub.errors import CloudError
from imgpub.provider import ImageInfo
from imgpub_aws.errors import Caller
from imgpub_aws.settings import AwsSettings
from imgpub_aws.tags import tag_list

BOOT_MODES = {"bios": "legacy-bios", "uefi": "uefi", "uefi-preferred": "uefi-preferred"}
WAIT_TIMEOUT_SECONDS = 3 * 3600


def register_params(
    image: ImageInfo,
    settings: AwsSettings,
    *,
    name: str,
    snapshot_id: str,
    volume_size: int,
    tags: dict[str, str],
) -> dict[str, Any]:
    """Every field set explicitly: AWS defaults Architecture to i386 and BootMode to the instance type's."""
    params: dict[str, Any] = {
        "Name": name,
        "Description": (image.description or f"{image.name} {image.version}")[:255],
        "Architecture": image.arch,
        "BootMode": BOOT_MODES[image.boot],
        "VirtualizationType": "hvm",
        "RootDeviceName": settings.root_device_name,
        "EnaSupport": settings.ena_support,
        "BlockDeviceMappings": [
            {
                "DeviceName": settings.root_device_name,
                "Ebs": {
                    "SnapshotId": snapshot_id,
                    "VolumeSize": max(volume_size, settings.volume_size or 0),
                    "VolumeType": settings.volume_type,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "image", "Tags": tag_list(tags)},
            {"ResourceType": "snapshot", "Tags": tag_list(tags)},
        ],
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


def register_image(ec2: Any, call: Caller, region: str, params: dict[str, Any]) -> str:
    return str(call("RegisterImage", region, lambda: ec2.register_image(**params))["ImageId"])


def wait_available(
    ec2: Any, call: Caller, region: str, image_id: str, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Poll DescribeImages until the AMI is available; `failed` or a timeout is a CloudError."""
    deadline, delay = time.monotonic() + WAIT_TIMEOUT_SECONDS, 1.0
    while True:
        images = call("DescribeImages", region, lambda: ec2.describe_images(ImageIds=[image_id]))["Images"]
        state = images[0].get("State") if images else "missing"
        if state == "available":
            return dict(images[0])
        if state in ("failed", "missing", "error", "deregistered") or time.monotonic() > deadline:
            reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
            raise CloudError(
                call.target, "RegisterImage", f"image {image_id} is {state} {reason}".strip(), region=region
            )
        sleep(delay)
        delay = min(delay * 2, 30.0)
