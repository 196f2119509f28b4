"""CopyImage to other regions, in parallel, each waited for; optional regions are best effort.

A copy is tagged as it is made: CopyImage's TagSpecifications take `image` (the new AMI) and
`snapshot` (every new snapshot). Each region gets its own KMS key (`kms_key_ids`), sent with
`Encrypted=true` as CopyImage requires.

The ClientToken is fresh for each run and the same for every retry within it: EC2 answers a reused
token with the earlier result, which is what a retry after a lost reply needs, but a token kept
across runs would hand back a copy that failed and has been removed since. Across runs the copy is
found by its tags, or, while DescribeImages does not list it yet, by its name: CopyImage answers
`InvalidAMIName.Duplicate`, and an AMI of that name carrying this digest is adopted. That is also
what happens when another run (another machine publishing the same manifest) copies to the same
region at the same time: one copy is made, the other run adopts it (the ledger says so).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from imgpub.errors import TargetError
from imgpub.progress import Progress
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller, error_code, is_transient
from imgpub_aws.inventory import snapshot_ids
from imgpub_aws.ledger import Ledger
from imgpub_aws.register import make_image, wait_available
from imgpub_aws.tags import tag_dict, tag_list

MAX_PARALLEL_COPIES = 8
"""EBS allows 20 concurrent snapshot copies per destination region; 8 regions at once is plenty."""
SNAPSHOT_NOT_YET_VISIBLE = "InvalidSnapshot.NotFound"

Make = Callable[[], str]
"""Makes an AMI (RegisterImage or CopyImage) and returns its id."""
Swap = Callable[[str, Make, str], dict[str, Any]]
"""Runs `make` (the operation named) in a region and returns the available AMI
(replace.Retirement.swap retires the old AMI around it)."""


@dataclass
class CopyOutcome:
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Region -> the available copied image."""
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CopyRequest:
    """What every region's copy shares."""

    source_region: str
    source_image_id: str
    name: str
    description: str
    digest: str
    tags: dict[str, str]
    encrypted: bool
    keys: dict[str, str] = field(default_factory=dict)
    """Region -> KMS key for the copy there; a region without one uses the account's default."""
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Makes the ClientTokens of this run."""

    def token(self, region: str) -> str:
        seed = f"copy:{self.digest}:{region}:{self.source_image_id}:{self.run}"
        return hashlib.sha256(seed.encode()).hexdigest()[:64]

    def params(self, region: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "SourceRegion": self.source_region,
            "SourceImageId": self.source_image_id,
            "Name": self.name,
            "Description": self.description[:255],
            "ClientToken": self.token(region),
            "CopyImageTags": True,
            "TagSpecifications": [
                {"ResourceType": "image", "Tags": tag_list(self.tags)},
                {"ResourceType": "snapshot", "Tags": tag_list(self.tags)},
            ],
        }
        if self.encrypted:
            params["Encrypted"] = True
            if self.keys.get(region):
                params["KmsKeyId"] = self.keys[region]
        return params


def copy_images(
    clients: AwsClients,
    call: Caller,
    progress: Progress,
    request: CopyRequest,
    *,
    required: list[str],
    optional: list[str],
    ledger: Ledger,
    swap: Swap | None = None,
) -> CopyOutcome:
    """Copy to every region; a required region's failure raises after the others finish."""
    out = CopyOutcome()
    regions = [*required, *optional]
    if not regions:
        return out
    progress.stage(f"copy to {', '.join(regions)}")

    def one(region: str) -> dict[str, Any]:
        ec2 = clients.client("ec2", region)
        params = request.params(region)

        def make() -> str:
            return copy_image(ec2, call, region, params, ledger)

        if swap is None:
            image = wait_available(ec2, call, region, make(), "CopyImage")
        else:
            image = swap(region, make, "CopyImage")
        tag_image(ec2, call, region, image, request.tags)
        progress.note(f"copied to {region}: {image['ImageId']}")
        return image

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


def copy_image(ec2: Any, call: Caller, region: str, params: dict[str, Any], ledger: Ledger) -> str:
    return make_image(ec2, call, region, "CopyImage", params, ledger)


def _snapshot_visible_soon(exc: BaseException) -> bool:
    return is_transient(exc) or error_code(exc) == SNAPSHOT_NOT_YET_VISIBLE


def tag_image(ec2: Any, call: Caller, region: str, image: dict[str, Any], tags: dict[str, str]) -> bool:
    """Add the tags the image or any of its snapshots lacks; True when something was tagged."""
    have = tag_dict(image)
    changed = False
    missing = {k: v for k, v in tags.items() if have.get(k) != v}
    if missing:
        call(
            "CreateTags",
            region,
            lambda: ec2.create_tags(Resources=[image["ImageId"]], Tags=tag_list(missing)),
        )
        changed = True
    ids = snapshot_ids(image)
    if not ids:
        return changed
    snaps = call(
        "DescribeSnapshots",
        region,
        lambda: ec2.describe_snapshots(SnapshotIds=ids),
        _snapshot_visible_soon,
    )["Snapshots"]
    for snap in snaps:
        lacking = {k: v for k, v in tags.items() if tag_dict(snap).get(k) != v}
        if lacking:
            resources = [snap["SnapshotId"]]
            call("CreateTags", region, partial(ec2.create_tags, Resources=resources, Tags=tag_list(lacking)))
            changed = True
    return changed
