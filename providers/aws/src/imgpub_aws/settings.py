"""AwsSettings: one `provider: aws` target in the manifest."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from imgpub.provider import ManifestPath, TargetSettings

_DURATION = re.compile(r"^\s*(\d+)\s*([dwm]?)\s*$")
_UNITS = {"": 1, "d": 1, "w": 7, "m": 30}


def _duration_or_datetime(value: Any) -> Any:
    """'365d', '52w', '12m' (30-day months), a bare day count, or an ISO datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(days=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(days=int(match.group(1)) * _UNITS[match.group(2) or ""])
        if re.match(r"^\s*\d+\s*[a-z]+\s*$", value):
            raise ValueError(f"{value!r}: give days ('365d'), weeks ('52w'), months ('12m') or a datetime")
    return value


Deprecation = Annotated[timedelta | datetime, BeforeValidator(_duration_or_datetime)]
AccountId = Annotated[str, Field(pattern=r"^\d{12}$")]
OrgArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
]
OuArn = Annotated[
    str,
    Field(
        pattern=r"^arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$"
    ),
]
Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]


class AwsSettings(TargetSettings):
    """Publish the image as an AMI: EBS direct upload (or S3 + ImportSnapshot), register, copy, share."""

    provider: Literal["aws"] = "aws"
    region: Region = Field(description="Region where the snapshot is uploaded and the AMI registered.")
    regions: list[Region] = Field(default_factory=list, description="Regions the AMI is copied to.")
    optional_regions: list[Region] = Field(
        default_factory=list, description="Regions copied best effort: a failure is a warning."
    )
    profile: str | None = Field(default=None, description="Named profile from the AWS config files.")
    role_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
        description="Role assumed for this target.",
    )
    external_id: str | None = Field(default=None, description="ExternalId for assuming role_arn.")
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="One endpoint for every service (moto, LocalStack); AWS_ENDPOINT_URL_* also work.",
    )
    upload: Literal["ebs-direct", "s3-import"] = "ebs-direct"
    s3_bucket: str | None = Field(default=None, description="Bucket for upload: s3-import.")
    s3_prefix: str = Field(default="imgpub/", description="Key prefix for upload: s3-import.")
    encrypted: bool = False
    kms_key_id: str | None = Field(
        default=None, description="KMS key ARN for the snapshot (needs encrypted)."
    )
    volume_type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = "gp3"
    volume_size: int | None = Field(default=None, ge=1, le=65536, description="Root volume GiB (>= image).")
    root_device_name: str = Field(default="/dev/xvda", pattern=r"^/dev/(xvd|sd|nvme)[a-z0-9]+$")
    uefi_data: ManifestPath | None = Field(
        default=None,
        description="UEFI variable store (GetInstanceUefiData format) for custom Secure Boot keys.",
    )
    imds_support: Literal["v2.0"] | None = "v2.0"
    ena_support: bool = True
    sriov_net_support: Literal["simple"] | None = None
    share_accounts: list[AccountId] = Field(default_factory=list)
    share_organizations: list[OrgArn] = Field(default_factory=list)
    share_ous: list[OuArn] = Field(default_factory=list)
    share_snapshots: bool = Field(
        default=False, description="Also grant createVolumePermission on snapshots."
    )
    public: bool = False
    deprecate_after: Deprecation | None = Field(
        default=None, description="'365d' after the AMI's creation, or a fixed UTC datetime."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    concurrency: int = Field(default=32, ge=1, le=256, description="Parallel block uploads.")
    ami_name: str | None = Field(default=None, description="Default: '<name>-<version>', sanitised.")

    def identity(self) -> dict[str, Any]:
        placement = {
            "region",
            "regions",
            "optional_regions",
            "profile",
            "role_arn",
            "external_id",
            "endpoint_url",
            "upload",
            "s3_bucket",
            "s3_prefix",
            "share_accounts",
            "share_organizations",
            "share_ous",
            "share_snapshots",
            "public",
            "deprecate_after",
            "tags",
            "concurrency",
        }
        data = self.model_dump(mode="json", exclude={"name", *placement})
        if self.uefi_data is not None and self.uefi_data.is_file():
            data["uefi_data"] = hashlib.sha256(self.uefi_data.read_bytes()).hexdigest()
        return data

    @property
    def all_regions(self) -> list[str]:
        """Home region first, then required copies, then optional ones (unique, in order)."""
        return list(dict.fromkeys([self.region, *self.regions, *self.optional_regions]))
