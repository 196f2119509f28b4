"""CopyImage to other regions, in parallel, each waited for; optional regions are best effort."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from imgpub.errors import TargetError
from imgpub.progress import Progress
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller
from imgpub_aws.register import wait_available
from imgpub_aws.tags import tag_list

MAX_PARALLEL_COPIES = 8


@dataclass
class CopyOutcome:
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Region -> the available copied image."""
    warnings: list[str] = field(default_factory=list)


def copy_token(digest: str, region: str) -> str:
    return hashlib.sha256(f"copy:{digest}:{region}".encode()).hexdigest()[:64]


def copy_images(
    clients: AwsClients,
    call: Caller,
    progress: Progress,
    *,
    source_region: str,
    source_image_id: str,
    name: str,
    description: str,
    digest: str,
    tags: dict[str, str],
    required: list[str],
    optional: list[str],
    encrypted: bool,
) -> CopyOutcome:
    """Copy to every region; a required region's failure raises after the others finish."""
    out = CopyOutcome()
    regions = [*required, *optional]
    if not regions:
        return out
    progress.stage(f"copy to {', '.join(regions)}")

    def one(region: str) -> dict[str, Any]:
        ec2 = clients.client("ec2", region)
        params: dict[str, Any] = {
            "SourceRegion": source_region,
            "SourceImageId": source_image_id,
            "Name": name,
            "Description": description[:255],
            "ClientToken": copy_token(digest, region),
            "CopyImageTags": True,
            "TagSpecifications": [{"ResourceType": "image", "Tags": tag_list(tags)}],
        }
        if encrypted:
            params["Encrypted"] = True
        image_id = str(call("CopyImage", region, lambda: ec2.copy_image(**params))["ImageId"])
        image = wait_available(ec2, call, region, image_id)
        tag_image(ec2, call, region, image, tags)
        progress.note(f"copied to {region}: {image_id}")
        return wait_available(ec2, call, region, image_id)

    errors: list[TargetError] = []
    with ThreadPoolExecutor(min(MAX_PARALLEL_COPIES, len(regions)), thread_name_prefix="imgpub-copy") as pool:
        futures = {region: pool.submit(one, region) for region in regions}
        for region, fut in futures.items():
            try:
                out.images[region] = fut.result()
            except TargetError as exc:
                if region in optional:
                    out.warnings.append(f"optional region {region} skipped: {exc.message}")
                else:
                    errors.append(exc)
    if errors:
        raise errors[0]
    return out


def tag_image(ec2: Any, call: Caller, region: str, image: dict[str, Any], tags: dict[str, str]) -> bool:
    """Tag the image and its snapshots where tags are missing (CopyImage may not copy them)."""
    have = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    missing = {k: v for k, v in tags.items() if have.get(k) != v}
    if not missing:
        return False
    ids = [image["ImageId"], *snapshot_ids(image)]
    call("CreateTags", region, lambda: ec2.create_tags(Resources=ids, Tags=tag_list(missing)))
    return True


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [
        m["Ebs"]["SnapshotId"]
        for m in image.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]
