"""AwsSettings: one `provider: aws` target in the manifest."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from imgpub.provider import ManifestPath, TargetSettings
from imgpub_aws.kms import key_form_problem
from imgpub_aws.names import REGION_PATTERN, bucket_problem, external_id_problem, role_arn_problem
from imgpub_aws.volume import VolumeType

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


def _form(problem: Callable[[str], str | None]) -> AfterValidator:
    """A validator that refuses a value `problem` finds fault with (its text is the error)."""

    def check(value: str) -> str:
        text = problem(value)
        if text is not None:
            raise ValueError(text)
        return value

    return AfterValidator(check)


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
Region = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": f"^{REGION_PATTERN}$"})]
"""Checked by AwsProvider.check against botocore's region lists (typos are errors with a suggestion,
unknown well-formed regions warnings): the schema's pattern only helps editors."""
KmsKey = Annotated[str, _form(key_form_problem)]


class AwsSettings(TargetSettings):
    """Publish the image as an AMI: EBS direct upload (or S3 + ImportSnapshot), register, copy, share."""

    provider: Literal["aws"] = "aws"
    region: Region = Field(description="Region where the snapshot is uploaded and the AMI registered.")
    regions: list[Region] = Field(default_factory=list, description="Regions the AMI is copied to.")
    optional_regions: list[Region] = Field(
        default_factory=list, description="Regions copied best effort: a failure is a warning."
    )
    profile: str | None = Field(default=None, description="Named profile from the AWS config files.")
    role_arn: Annotated[str, _form(role_arn_problem)] | None = Field(
        default=None, description="Role assumed for this target: arn:aws:iam::<account>:role/<name>."
    )
    external_id: Annotated[str, _form(external_id_problem)] | None = Field(
        default=None, description="ExternalId for assuming role_arn."
    )
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="One endpoint for every service (moto, LocalStack); AWS_ENDPOINT_URL_* also work.",
    )
    upload: Literal["ebs-direct", "s3-import"] = "ebs-direct"
    s3_bucket: Annotated[str, _form(bucket_problem)] | None = Field(
        default=None, description="Bucket for upload: s3-import."
    )
    s3_prefix: str = Field(default="imgpub/", max_length=900, description="Key prefix for upload: s3-import.")
    encrypted: bool = False
    kms_key_id: KmsKey | None = Field(
        default=None,
        description="KMS key for the home region's snapshot (a key ARN for ebs-direct; needs encrypted).",
    )
    kms_key_ids: dict[str, KmsKey] = Field(
        default_factory=dict,
        description="KMS key per region for the copies (and the home region when kms_key_id is unset): "
        "key ARN, alias ARN, alias/<name> or key id. Shared encrypted images need one in every region.",
    )
    volume_type: VolumeType = "gp3"
    volume_size: int | None = Field(default=None, ge=1, le=65536, description="Root volume GiB (>= image).")
    iops: int | None = Field(
        default=None, ge=1, description="Provisioned IOPS: needed for io1/io2, optional for gp3."
    )
    throughput: int | None = Field(default=None, ge=1, description="gp3 throughput in MiB/s (125-2000).")
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
            "kms_key_ids",
        }
        data = self.model_dump(mode="json", exclude={"name", *placement})
        data["kms_key_id"] = self.kms_key_id or self.kms_key_ids.get(self.region)
        for added in ("iops", "throughput"):  # settings added later: unset, they leave digests as they were
            if data[added] is None:
                del data[added]
        if self.uefi_data is not None and self.uefi_data.is_file():
            data["uefi_data"] = hashlib.sha256(self.uefi_data.read_bytes()).hexdigest()
        return data

    @property
    def all_regions(self) -> list[str]:
        """Home region first, then required copies, then optional ones (unique, in order)."""
        return list(dict.fromkeys([self.region, *self.regions, *self.optional_regions]))
