"""RegisterImage: the AMI's parameters from the image facts and the settings, and waiting for it.

RegisterImage has no ClientToken. When its reply is lost and the retry answers
`InvalidAMIName.Duplicate`, the AMI of that name is looked up: if it carries this digest tag, it was
ours and is kept. The same answer on the first attempt means another run (another CI machine
publishing the same manifest) registered it first: it is adopted, and the ledger says so. Right
after RegisterImage or CopyImage, DescribeImages may not know the new id yet (EC2 is eventually
consistent): `InvalidAMIID.NotFound` is waited out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from imgpub.errors import CloudError, TargetError
from imgpub.identity import TAG_DIGEST
from imgpub.provider import ImageInfo
from imgpub_aws.errors import Caller, error_code, is_transient, with_note
from imgpub_aws.ledger import Ledger
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


def register_image(ec2: Any, call: Caller, region: str, params: dict[str, Any], ledger: Ledger) -> str:
    return make_image(ec2, call, region, "RegisterImage", params, ledger)


_TAKEN = ("InvalidAMIName.Duplicate",)
"""The name is held: by our own AMI whose reply was lost, by another run's, or by a stranger's."""
_SNAPSHOT_GONE = ("InvalidSnapshot.NotFound",)
"""RegisterImage of a snapshot found by its digest tag that its run deleted since (it lost the race to
another run's AMI, which then holds the name)."""


def make_image(
    ec2: Any, call: Caller, region: str, operation: str, params: dict[str, Any], ledger: Ledger
) -> str:
    """RegisterImage or CopyImage; the new (or adopted) AMI's id, recorded in the `ledger`.

    When the name is taken (or the snapshot is gone) and the AMI of that name carries our digest, it
    is adopted: ours when RegisterImage answered that on a retry (the first attempt acted, its reply
    was lost: RegisterImage has no ClientToken), else another run's (CopyImage retries reuse their
    ClientToken, which EC2 answers with the earlier copy, never with Duplicate)."""
    method = {"RegisterImage": ec2.register_image, "CopyImage": ec2.copy_image}[operation]
    attempts = 0

    def send() -> Any:
        nonlocal attempts
        attempts += 1
        return method(**params)

    try:
        image_id = str(call(operation, region, send)["ImageId"])
    except CloudError as exc:
        gone = operation == "RegisterImage" and exc.code in _SNAPSHOT_GONE
        if exc.code not in _TAKEN and not gone:
            raise
        holder = image_named(ec2, call, region, params["Name"])
        wanted = _digest(params)
        if holder is None or not wanted or tag_dict(holder).get(TAG_DIGEST) != wanted:
            raise _taken(exc, holder) from exc
        image_id = str(holder["ImageId"])
        if attempts > 1 and operation == "RegisterImage" and not gone:
            ledger.made(image_id)
        else:
            ledger.adopt(region, image_id, operation)
        return image_id
    ledger.made(image_id)
    return image_id


def _digest(params: dict[str, Any]) -> str | None:
    tags = {t["Key"]: t["Value"] for spec in params.get("TagSpecifications", []) for t in spec["Tags"]}
    return tags.get(TAG_DIGEST)


def _taken(exc: CloudError, holder: dict[str, Any] | None) -> TargetError:
    """The error for a name held by an AMI that is not this image: say which, and what it is."""
    if holder is None:
        return exc
    digest = tag_dict(holder).get(TAG_DIGEST)
    if digest is None:
        return with_note(exc, f"{holder['ImageId']} has no imgpub tags")
    return with_note(
        exc,
        f"{holder['ImageId']} has imgpub:digest {digest}, other content (another run publishing "
        "another image under this name and version?)",
    )


def image_named(ec2: Any, call: Caller, region: str, name: str) -> dict[str, Any] | None:
    """This account's AMI of that name (names are unique per account and region), or None."""
    filters = [{"Name": "name", "Values": [name]}]
    images = call(
        "DescribeImages", region, lambda: ec2.describe_images(Owners=["self"], Filters=filters)
    ).get("Images", [])
    live = [i for i in images if i.get("State") != "deregistered"]
    return dict(live[0]) if live else None


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
