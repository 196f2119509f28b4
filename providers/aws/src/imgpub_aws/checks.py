"""What AWS would refuse in a target, found before anything is sent (AwsProvider.check).

Each rule is AWS's own (botocore's models and their documentation, the EC2/EBS/S3/IAM user guides);
every error names the field, and a region botocore does not know yet is only a warning.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from imgpub.provider import ImageInfo, Problem
from imgpub_aws.kms import kms_problems
from imgpub_aws.names import AMI_NAME, partition_of, region_problems
from imgpub_aws.settings import AwsSettings
from imgpub_aws.tags import ami_name, tag_problems
from imgpub_aws.volume import volume_problems

__all__ = ["problems"]

GIB = 1 << 30
UEFI_DATA_MAX = 64000 * 3 // 4
"""RegisterImage UefiData is at most 64,000 base64 characters: 48,000 bytes of variable store."""
DEPRECATE_MAX = timedelta(days=3652)
DEPRECATE_PUBLIC = timedelta(days=730)
"""EnableImageDeprecation's DeprecateAt: "The upper limit ... is 10 years from now, except for public
AMIs, where the upper limit is 2 years from the creation date"."""
SECURE_BOOT = (
    "secure_boot: true needs uefi_data on AWS: Secure Boot keys (PK, KEK, db) reach an AMI only through "
    "RegisterImage's UefiData (a variable store from GetInstanceUefiData or python-uefivars); without "
    "it instances boot with Secure Boot off"
)


def problems(image: ImageInfo, settings: AwsSettings) -> list[Problem]:
    out = [*_boot_problems(image, settings), *_region_problems(settings)]
    name = ami_name(image, settings)
    if not AMI_NAME.match(name):
        out.append(Problem("ami_name", f"{name!r}: AMI names are 3-128 of letters, digits and ()[] ./-'@_"))
    min_gib = max(1, math.ceil(image.virtual_size / GIB)) if image.virtual_size else 1
    if settings.volume_size is not None and settings.volume_size < min_gib:
        out.append(
            Problem("volume_size", f"{settings.volume_size} GiB is smaller than the image ({min_gib} GiB)")
        )
    else:
        out += volume_problems(settings, min_gib)
    out += kms_problems(settings)
    if settings.public and settings.encrypted:
        out.append(Problem("public", "encrypted AMIs cannot be made public"))
    if settings.upload == "s3-import" and not settings.s3_bucket:
        out.append(Problem("s3_bucket", "upload: s3-import needs s3_bucket"))
    out += _deprecation_problems(settings)
    out += tag_problems(image, settings)
    if settings.share_snapshots and not settings.share_accounts:
        out.append(Problem("share_snapshots", "share_snapshots needs share_accounts"))
    return out


def _boot_problems(image: ImageInfo, settings: AwsSettings) -> list[Problem]:
    out = []
    if image.tpm and image.boot != "uefi":
        out.append(
            Problem("image.tpm", f"TpmSupport v2.0 needs boot: uefi on AWS (image boot is {image.boot})")
        )
    if image.arch == "arm64" and image.boot != "uefi":
        out.append(Problem("image.boot", f"arm64 (Graviton) AMIs boot UEFI only, not {image.boot}"))
    if image.secure_boot and settings.uefi_data is None:
        out.append(Problem("image.secure_boot", SECURE_BOOT))
    if settings.uefi_data is not None:
        if image.boot == "bios":
            out.append(Problem("uefi_data", "uefi_data needs boot: uefi or uefi-preferred"))
        if not settings.uefi_data.is_file():
            out.append(Problem("uefi_data", f"{settings.uefi_data}: no such file"))
        elif settings.uefi_data.stat().st_size > UEFI_DATA_MAX:
            out.append(
                Problem(
                    "uefi_data", f"{settings.uefi_data}: RegisterImage takes at most {UEFI_DATA_MAX} bytes"
                )
            )
    return out


def _deprecation_problems(settings: AwsSettings) -> list[Problem]:
    """EnableImageDeprecation: not in the past, at most 10 years ahead, 2 years for public AMIs
    (counted from the AMI's creation, which is about now for a new one)."""
    after = settings.deprecate_after
    if after is None:
        return []
    now = datetime.now(UTC)
    if isinstance(after, datetime):
        when = after if after.tzinfo else after.replace(tzinfo=UTC)
        if when < now:
            return [Problem("deprecate_after", f"{after.isoformat()} is in the past")]
        ahead = when - now
    else:
        ahead = after
    limit, why = (DEPRECATE_PUBLIC, "public AMIs") if settings.public else (DEPRECATE_MAX, "AMIs")
    if ahead > limit:
        years = limit.days // 365
        return [Problem("deprecate_after", f"EC2 deprecates {why} at most {years} years ahead")]
    return []


def _region_problems(settings: AwsSettings) -> list[Problem]:
    out = [
        *region_problems("region", [settings.region]),
        *region_problems("regions", settings.regions),
        *region_problems("optional_regions", settings.optional_regions),
    ]
    every = [settings.region, *settings.regions, *settings.optional_regions]
    dupes = sorted({r for r in every if every.count(r) > 1})
    if dupes:
        out.append(Problem("regions", f"regions listed twice (or equal to region): {', '.join(dupes)}"))
    home = partition_of(settings.region)
    foreign = [r for r in every if partition_of(r) != home]
    if foreign:
        out.append(
            Problem(
                "regions",
                f"{', '.join(foreign)} not in partition {home} of {settings.region}: "
                "CopyImage stays within a partition; publish to the other partition as another target",
            )
        )
    if settings.role_arn and not settings.role_arn.startswith(f"arn:{home}:"):
        out.append(
            Problem("role_arn", f"{settings.region} is in partition {home}: the role ARN starts arn:{home}:")
        )
    return out
