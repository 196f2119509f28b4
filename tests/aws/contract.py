"""botocore's service models as the contract for every AWS request imgpub sends.

`violations(service, operation, params, region)` checks request parameters (the Python structure a
boto3 client method takes) against the operation's input shape in botocore's model: required
members, unknown members, types, enums, min/max lengths and values, and patterns. Then the rules the
model's documentation states only in prose, each encoded below next to the sentence it comes from,
with the error code the real service answers.

Both sides use it: tests/aws/conftest.py checks every request any client sends in the AWS tests
(before it goes), and the strict moto server (moto_patches.py) checks what it receives and answers
with the real error code, so a request that skips the client check is still refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session

__all__ = ["Contract", "ContractViolation", "Violation", "violations"]


@dataclass(frozen=True)
class Violation:
    code: str
    """The error code the real service answers with."""
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.code}]"


class ContractViolation(AssertionError):
    """A request that breaks the service's contract; raised before the request is sent."""


class Contract:
    """What the contract check saw in one test (tests/aws/conftest.py fails the test on `broken`; a
    test that breaks the contract on purpose clears it)."""

    def __init__(self) -> None:
        self.checked: list[str] = []
        """`service.Operation` of every request checked."""
        self.broken: list[str] = []
        """The violations found, even where the code under test swallowed the error."""


SHAPE_CODES = {"ec2": "InvalidParameterValue", "ebs": "ValidationException", "s3": "InvalidArgument"}
MISSING_CODES = {"ec2": "MissingParameter", "ebs": "ValidationException", "s3": "InvalidArgument"}
"""The codes for a request the model refuses (other services: ValidationError, as STS and IAM)."""


@functools.cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def violations(
    service: str, operation: str, params: Mapping[str, Any], region: str | None = None
) -> list[Violation]:
    """The documented rules' violations first (their error codes are the specific ones), then the
    model's."""
    op = _model(service).operation_model(operation)
    out: list[Violation] = []
    for rule in RULES.get((service, operation), ()):
        out += rule(params, region or "")
    if op.input_shape is not None:
        _Shapes(service, out).check(op.input_shape, params, operation)
    return out


# ---------------------------------------------------------------- the model's shapes
class _Shapes:
    def __init__(self, service: str, out: list[Violation]) -> None:
        self.code = SHAPE_CODES.get(service, "ValidationError")
        self.missing = MISSING_CODES.get(service, "ValidationError")
        self.out = out

    def bad(self, where: str, message: str, code: str | None = None) -> None:
        self.out.append(Violation(code or self.code, where, message))

    def check(self, shape: Any, value: Any, where: str) -> None:
        kind = shape.type_name
        getattr(self, f"_{kind}", self._other)(shape, value, where)

    def _structure(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            return self.bad(where, f"expected a structure, got {type(value).__name__}")
        for name in shape.required_members:
            if value.get(name) is None:
                self.bad(f"{where}.{name}", "required member is missing", self.missing)
        for name, item in value.items():
            if name not in shape.members:
                self.bad(f"{where}.{name}", f"unknown member (the model has {sorted(shape.members)})")
            elif item is not None:
                self.check(shape.members[name], item, f"{where}.{name}")
        return None

    def _list(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, list | tuple):
            return self.bad(where, f"expected a list, got {type(value).__name__}")
        self._bounds(shape, len(value), where, "items")
        for i, item in enumerate(value):
            self.check(shape.member, item, f"{where}[{i}]")
        return None

    def _map(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            return self.bad(where, f"expected a map, got {type(value).__name__}")
        for key, item in value.items():
            self.check(shape.key, key, f"{where}<key>")
            self.check(shape.value, item, f"{where}[{key!r}]")
        return None

    def _string(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, str):
            return self.bad(where, f"expected a string, got {type(value).__name__}")
        if shape.enum and value not in shape.enum:
            self.bad(where, f"{value!r} is not one of {shape.enum}")
        self._bounds(shape, len(value), where, "characters")
        pattern = shape.metadata.get("pattern")
        if pattern and not _matches(pattern, value):
            self.bad(where, f"{value!r} does not match the model's pattern {pattern!r}")
        return None

    def _integer(self, shape: Any, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            return self.bad(where, f"expected an integer, got {type(value).__name__}")
        self._bounds(shape, value, where, "")
        return None

    _long = _integer

    def _float(self, shape: Any, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(where, f"expected a number, got {type(value).__name__}")

    _double = _float

    def _boolean(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, bool):
            self.bad(where, f"expected a boolean, got {type(value).__name__}")

    def _blob(self, shape: Any, value: Any, where: str) -> None:
        if not (isinstance(value, bytes | bytearray | str) or hasattr(value, "read")):
            self.bad(where, f"expected bytes, got {type(value).__name__}")

    def _timestamp(self, shape: Any, value: Any, where: str) -> None:
        if not isinstance(value, datetime | str | int | float):
            self.bad(where, f"expected a timestamp, got {type(value).__name__}")

    def _other(self, shape: Any, value: Any, where: str) -> None:
        self.bad(where, f"shape type {shape.type_name} is not checked here; teach contract.py")

    def _bounds(self, shape: Any, size: int, where: str, unit: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.bad(where, f"{size} {unit} is below the minimum {low}".replace("  ", " "))
        if high is not None and size > high:
            self.bad(where, f"{size} {unit} is above the maximum {high}".replace("  ", " "))


_UNICODE_CLASS = re.compile(r"\[((?:\\p\{[A-Z]\}|\\.|[^\]\\])+)\]([+*])")


def _matches(pattern: str, value: str) -> bool:
    """The model's patterns are Java regexes matched in full; `\\p{L}` classes (IAM and STS tags)
    are read as Unicode categories."""
    unicode_class = _UNICODE_CLASS.fullmatch(pattern)
    if unicode_class and "\\p{" in pattern:
        body, repeat = unicode_class.groups()
        categories = set(re.findall(r"\\p\{([A-Z])\}", body))
        literals = set(re.sub(r"\\(.)", r"\1", re.sub(r"\\p\{[A-Z]\}", "", body)))
        ok = all(unicodedata.category(c)[0] in categories or c in literals for c in value)
        return ok and (repeat == "*" or bool(value))
    return re.fullmatch(pattern, value, re.DOTALL) is not None


# ---------------------------------------------------------------- rules the model says in prose
Rule = Callable[[Mapping[str, Any], str], list[Violation]]
V = Violation


def _tag_rules(where: str, tags: list[Mapping[str, Any]]) -> list[Violation]:
    """ec2 Tag: "Tag keys ... accept a maximum of 127 Unicode characters. May not begin with aws:";
    "Tag values ... accept a maximum of 256 Unicode characters"; at most 50 tags per resource."""
    out = []
    if len(tags) > 50:
        out.append(V("TagLimitExceeded", where, f"{len(tags)} tags; a resource takes at most 50"))
    for i, tag in enumerate(tags):
        key, value = str(tag.get("Key", "")), str(tag.get("Value", ""))
        if key.lower().startswith("aws:"):
            out.append(
                V("InvalidParameterValue", f"{where}[{i}].Key", f"{key!r}: the aws: prefix is reserved")
            )
        if not 1 <= len(key) <= 127 or len(value) > 256:
            out.append(
                V("InvalidParameterValue", f"{where}[{i}]", "keys are 1-127 characters, values <= 256")
            )
    return out


def _tag_specifications(
    where: str, specs: list[Mapping[str, Any]], allowed: tuple[str, ...]
) -> list[Violation]:
    """RegisterImage: "To tag the AMI, the value for ResourceType must be image. If you specify another
    value for ResourceType, the request fails." CopyImage: image or snapshot ("If you specify other
    values for ResourceType, the request fails")."""
    out = []
    for i, spec in enumerate(specs):
        if spec.get("ResourceType") not in allowed:
            out.append(
                V(
                    "InvalidParameterValue",
                    f"{where}[{i}].ResourceType",
                    f"{spec.get('ResourceType')!r}: this operation tags only {' or '.join(allowed)}",
                )
            )
        out += _tag_rules(f"{where}[{i}].Tags", list(spec.get("Tags", [])))
    return out


IOPS = {"gp3": (3000, 80000), "io1": (100, 64000), "io2": (100, 256000)}
THROUGHPUT = (125, 2000)
SIZES = {
    "gp2": (1, 16384),
    "gp3": (1, 65536),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
"""EbsBlockDevice documentation in botocore's EC2 model (test_contract.py compares them with it)."""


def _ebs(where: str, ebs: Mapping[str, Any], *, registering: bool) -> list[Violation]:
    """EbsBlockDevice: Iops "is required for io1 and io2 volumes", with the ranges per type;
    Throughput "is valid only for gp3 volumes" (125-2,000); VolumeSize ranges per type; Encrypted:
    "If you are creating a block device mapping from an existing ... snapshot, you must omit this
    parameter"; KmsKeyId "is only supported on ... RunInstances, RequestSpotFleet, and
    RequestSpotInstances"."""
    out = []
    kind = ebs.get("VolumeType") or "gp2"
    iops, throughput, size = ebs.get("Iops"), ebs.get("Throughput"), ebs.get("VolumeSize")
    combo = "InvalidParameterCombination"
    if iops is None and kind in ("io1", "io2"):
        out.append(V(combo, f"{where}.Iops", f"Iops is required for {kind} volumes"))
    if iops is not None and kind not in IOPS:
        out.append(V(combo, f"{where}.Iops", f"Iops is not supported for {kind} volumes"))
    elif iops is not None and not IOPS[kind][0] <= iops <= IOPS[kind][1]:
        out.append(V("InvalidParameterValue", f"{where}.Iops", f"{kind} takes {IOPS[kind]} IOPS, not {iops}"))
    if throughput is not None and kind != "gp3":
        out.append(V(combo, f"{where}.Throughput", f"Throughput is valid only for gp3, not {kind}"))
    elif throughput is not None and not THROUGHPUT[0] <= throughput <= THROUGHPUT[1]:
        out.append(V("InvalidParameterValue", f"{where}.Throughput", f"gp3 takes {THROUGHPUT} MiB/s"))
    if size is not None and kind in SIZES and not SIZES[kind][0] <= size <= SIZES[kind][1]:
        out.append(V("InvalidParameterValue", f"{where}.VolumeSize", f"{kind} volumes are {SIZES[kind]} GiB"))
    if registering and ebs.get("SnapshotId") and "Encrypted" in ebs:
        out.append(V(combo, f"{where}.Encrypted", "omit Encrypted for a mapping from a snapshot"))
    if registering and "KmsKeyId" in ebs:
        out.append(V(combo, f"{where}.KmsKeyId", "RegisterImage does not take a KmsKeyId"))
    return out


AMI_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
"""RegisterImage Name: "3-128 alphanumeric characters, parentheses (()), square brackets ([]), spaces
( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)"."""


def _register_image(params: Mapping[str, Any], region: str) -> list[Violation]:
    out = _tag_specifications(
        "RegisterImage.TagSpecifications", params.get("TagSpecifications", []), ("image",)
    )
    if "Name" in params and not AMI_NAME.fullmatch(str(params["Name"])):
        out.append(V("InvalidAMIName.Malformed", "RegisterImage.Name", f"{params['Name']!r}"))
    # TpmSupport: NitroTPM "requires UEFI boot" (the NitroTPM section of the EC2 User Guide)
    if params.get("TpmSupport") and params.get("BootMode") != "uefi":
        out.append(
            V("InvalidParameterCombination", "RegisterImage.TpmSupport", "TpmSupport needs BootMode uefi")
        )
    uefi = params.get("UefiData")
    if uefi is not None:  # "Base64 representation of the non-volatile UEFI variable store"
        try:
            base64.b64decode(uefi, validate=True)
        except (binascii.Error, ValueError):
            out.append(V("InvalidParameterValue", "RegisterImage.UefiData", "not base64"))
    for i, bdm in enumerate(params.get("BlockDeviceMappings", [])):
        if "Ebs" in bdm:
            out += _ebs(f"RegisterImage.BlockDeviceMappings[{i}].Ebs", bdm["Ebs"], registering=True)
    return out


KMS_KEY = re.compile(
    r"(?P<id>[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
    r"|alias/[A-Za-z0-9/_-]+"
    r"|arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:(key/([0-9a-f-]{36}|mrk-[0-9a-f]{32})|alias/[A-Za-z0-9/_-]+)"
)
"""CopyImage/ImportSnapshot KmsKeyId: "Key ID ... Key alias ... Key ARN ... Alias ARN"."""


def _kms(op: str, params: Mapping[str, Any], region: str) -> list[Violation]:
    """ "If you specify a KMS key, you must also set the encrypted state to true"; "The specified KMS
    key must exist in the destination Region" (EC2 answers the latter only by failing the copy)."""
    key = params.get("KmsKeyId")
    if key is None:
        return []
    out = []
    if params.get("Encrypted") is not True:
        out.append(V("InvalidParameterDependency", f"{op}.KmsKeyId", "KmsKeyId needs Encrypted=true"))
    match = KMS_KEY.fullmatch(str(key))
    if match is None:
        out.append(V("InvalidKMSKey.Id", f"{op}.KmsKeyId", f"{key!r} is not a key id, alias or ARN"))
    elif match["region"] and region and match["region"] != region:
        out.append(V("InvalidKMSKey.Id", f"{op}.KmsKeyId", f"the key is in {match['region']}, not {region}"))
    return out


def _copy_image(params: Mapping[str, Any], region: str) -> list[Violation]:
    out = _tag_specifications(
        "CopyImage.TagSpecifications", params.get("TagSpecifications", []), ("image", "snapshot")
    )
    if "Name" in params and not AMI_NAME.fullmatch(str(params["Name"])):
        out.append(V("InvalidAMIName.Malformed", "CopyImage.Name", f"{params['Name']!r}"))
    return out + _kms("CopyImage", params, region)


def _import_snapshot(params: Mapping[str, Any], region: str) -> list[Violation]:
    out = _kms("ImportSnapshot", params, region)
    disk = params.get("DiskContainer", {})
    if disk.get("Format") not in ("VHD", "VMDK", "RAW"):  # "Valid values: VHD | VMDK | RAW"
        out.append(
            V("InvalidParameterValue", "ImportSnapshot.DiskContainer.Format", f"{disk.get('Format')!r}")
        )
    bucket = disk.get("UserBucket", {}).get("S3Bucket")
    if bucket is not None:
        out += _bucket("ImportSnapshot.DiskContainer.UserBucket.S3Bucket", bucket)
    return out


_ACCOUNT = re.compile(r"\d{12}")
_ORG = re.compile(r"arn:aws[a-z-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}")
_OU = re.compile(
    r"arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}"
)


def _modify_image_attribute(params: Mapping[str, Any], region: str) -> list[Violation]:
    """LaunchPermission: UserId "The Amazon Web Services account ID" (12 digits), Group "all",
    OrganizationArn / OrganizationalUnitArn ARNs."""
    out = []
    for verb in ("Add", "Remove"):
        for i, perm in enumerate(params.get("LaunchPermission", {}).get(verb, [])):
            where = f"ModifyImageAttribute.LaunchPermission.{verb}[{i}]"
            checks = [
                ("UserId", _ACCOUNT, "InvalidUserID.Malformed"),
                ("OrganizationArn", _ORG, "InvalidParameterValue"),
                ("OrganizationalUnitArn", _OU, "InvalidParameterValue"),
            ]
            for name, form, code in checks:
                if name in perm and not form.fullmatch(perm[name]):
                    out.append(V(code, f"{where}.{name}", f"{perm[name]!r}"))
            if "Group" in perm and perm["Group"] != "all":
                out.append(V("InvalidParameterValue", f"{where}.Group", "the only group is 'all'"))
    return out


def _modify_snapshot_attribute(params: Mapping[str, Any], region: str) -> list[Violation]:
    bad = [u for u in params.get("UserIds", []) if not _ACCOUNT.fullmatch(u)]
    return [V("InvalidUserID.Malformed", "ModifySnapshotAttribute.UserIds", f"{bad}")] if bad else []


def _enable_image_deprecation(params: Mapping[str, Any], region: str) -> list[Violation]:
    at = params.get("DeprecateAt")
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if not isinstance(at, datetime):
        return []
    problem = deprecate_at_problem(at, datetime.now(UTC))
    return [V("InvalidParameterValue", "EnableImageDeprecation.DeprecateAt", problem)] if problem else []


def deprecate_at_problem(at: datetime, now: datetime) -> str | None:
    """DeprecateAt: "If you specify a value for seconds, Amazon EC2 rounds the seconds to the nearest
    minute. You can't specify a date in the past. The upper limit for DeprecateAt is 10 years from
    now" (so a time a few seconds ahead whose seconds round it down into the past minute is refused).
    The moto server applies the same rule, and the 2-year limit of public AMIs, which needs the AMI."""
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    rounded = at.replace(second=0, microsecond=0) + timedelta(minutes=1 if at.second >= 30 else 0)
    if rounded < now:
        return f"{at:%Y-%m-%dT%H:%M:%SZ} (rounded to {rounded:%H:%MZ}) is in the past"
    if rounded > now + timedelta(days=3653):
        return f"{rounded:%Y-%m-%dT%H:%MZ} is more than 10 years ahead"
    return None


def _ids(op: str, member: str, prefix: str, code: str) -> Rule:
    """Resource ids have their documented forms: ami-<hex>, snap-<hex>; a malformed id is refused."""

    def rule(params: Mapping[str, Any], region: str) -> list[Violation]:
        value = params.get(member)
        ids = value if isinstance(value, list) else [value] if value is not None else []
        bad = [i for i in ids if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", str(i))]
        return [V(code, f"{op}.{member}", f"{bad}")] if bad else []

    return rule


def _filters(op: str) -> Rule:
    """Filter names are the ones the Filters member documents (`<code>name</code>`), or `tag:<key>`;
    EC2 refuses any other ("The filter 'x' is invalid")."""

    def rule(params: Mapping[str, Any], region: str) -> list[Violation]:
        names = [str(f.get("Name")) for f in params.get("Filters") or [] if isinstance(f, Mapping)]
        bad = [n for n in names if n not in _documented_filters(op) and not re.fullmatch(r"tag:.+", n)]
        return [V("InvalidParameterValue", f"{op}.Filters", f"the filter {n!r} is invalid") for n in bad]

    return rule


@functools.cache
def _documented_filters(op: str) -> frozenset[str]:
    doc = _model("ec2").operation_model(op).input_shape.members["Filters"].documentation
    return frozenset(re.findall(r"<code>([a-z][a-z0-9.:-]*)</code>", doc))


def _create_tags(params: Mapping[str, Any], region: str) -> list[Violation]:
    out = _tag_rules("CreateTags.Tags", list(params.get("Tags", [])))
    if len(params.get("Resources", [])) > 1000:  # "Constraints: Up to 1000 resource IDs"
        out.append(V("InvalidParameterValue", "CreateTags.Resources", "more than 1000"))
    return out


# EBS direct
BLOCK = 524288


def _start_snapshot(params: Mapping[str, Any], region: str) -> list[Violation]:
    """ "You can't specify ParentSnapshotId and Encrypted in the same request ... the request fails with
    ValidationException"."""
    out = []
    if "ParentSnapshotId" in params and "Encrypted" in params:
        out.append(V("ValidationException", "StartSnapshot.Encrypted", "not with ParentSnapshotId"))
    tags = _tag_rules("StartSnapshot.Tags", list(params.get("Tags", [])))
    return out + [V("ValidationException", v.where, v.message) for v in tags]


def _put_snapshot_block(params: Mapping[str, Any], region: str) -> list[Violation]:
    """DataLength: "the only supported size is 524288 bytes"; the checksum is "A Base64-encoded SHA256
    checksum of the data"; "The logical offset of the data must be 512 KiB aligned"."""
    out = []
    if params.get("DataLength") != BLOCK:
        out.append(
            V("ValidationException", "PutSnapshotBlock.DataLength", f"{params.get('DataLength')} != {BLOCK}")
        )
    data = params.get("BlockData")
    if isinstance(data, bytes | bytearray):
        if len(data) != BLOCK:
            out.append(V("ValidationException", "PutSnapshotBlock.BlockData", f"{len(data)} bytes"))
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if params.get("Checksum") != digest:
            out.append(V("ValidationException", "PutSnapshotBlock.Checksum", "not the SHA-256 of BlockData"))
    return out


def _complete_snapshot(params: Mapping[str, Any], region: str) -> list[Violation]:
    """An aggregated checksum names its algorithm and its aggregation method (only SHA256 / LINEAR)."""
    if params.get("Checksum") and not (
        params.get("ChecksumAlgorithm") and params.get("ChecksumAggregationMethod")
    ):
        return [
            V(
                "ValidationException",
                "CompleteSnapshot.Checksum",
                "needs ChecksumAlgorithm and ChecksumAggregationMethod",
            )
        ]
    return []


# S3
_BUCKET = re.compile(
    r"(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?<!-s3alias)(?<!--ol-s3)"
)
"""S3 general purpose bucket naming rules (S3 User Guide)."""


def _bucket(where: str, name: str) -> list[Violation]:
    if not _BUCKET.fullmatch(name) or ".." in name or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return [V("InvalidBucketName", where, f"{name!r}")]
    return []


def _s3(op: str) -> Rule:
    """Bucket names by S3's rules; keys at most 1,024 bytes; "Part number ... between 1 and 10,000";
    CompleteMultipartUpload parts "in ascending order by part number"."""

    def rule(params: Mapping[str, Any], region: str) -> list[Violation]:
        out = _bucket(f"{op}.Bucket", str(params.get("Bucket", "")))
        if len(str(params.get("Key", "")).encode()) > 1024:
            out.append(V("KeyTooLongError", f"{op}.Key", "longer than 1,024 bytes"))
        if "PartNumber" in params and not 1 <= params["PartNumber"] <= 10000:
            out.append(V("InvalidArgument", f"{op}.PartNumber", f"{params['PartNumber']}"))
        numbers = [p.get("PartNumber") for p in params.get("MultipartUpload", {}).get("Parts", [])]
        if numbers != sorted(numbers):
            out.append(V("InvalidPartOrder", f"{op}.MultipartUpload.Parts", "not in ascending order"))
        return out

    return rule


# STS
def _assume_role(params: Mapping[str, Any], region: str) -> list[Violation]:
    """RoleArn is an IAM role's ARN ("The Amazon Resource Name (ARN) of the role to assume")."""
    arn = str(params.get("RoleArn", ""))
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn):
        return [V("ValidationError", "AssumeRole.RoleArn", f"{arn!r} is not a role ARN")]
    return []


RULES: dict[tuple[str, str], tuple[Rule, ...]] = {
    ("ec2", "RegisterImage"): (_register_image,),
    ("ec2", "CopyImage"): (_copy_image, _ids("CopyImage", "SourceImageId", "ami", "InvalidAMIID.Malformed")),
    ("ec2", "ImportSnapshot"): (_import_snapshot,),
    ("ec2", "CreateTags"): (_create_tags,),
    ("ec2", "ModifyImageAttribute"): (
        _modify_image_attribute,
        _ids("ModifyImageAttribute", "ImageId", "ami", "InvalidAMIID.Malformed"),
    ),
    ("ec2", "ModifySnapshotAttribute"): (
        _modify_snapshot_attribute,
        _ids("ModifySnapshotAttribute", "SnapshotId", "snap", "InvalidSnapshotID.Malformed"),
    ),
    ("ec2", "EnableImageDeprecation"): (_enable_image_deprecation,),
    ("ec2", "DeregisterImage"): (_ids("DeregisterImage", "ImageId", "ami", "InvalidAMIID.Malformed"),),
    ("ec2", "DeleteSnapshot"): (_ids("DeleteSnapshot", "SnapshotId", "snap", "InvalidSnapshotID.Malformed"),),
    ("ec2", "DescribeImages"): (
        _ids("DescribeImages", "ImageIds", "ami", "InvalidAMIID.Malformed"),
        _filters("DescribeImages"),
    ),
    ("ec2", "DescribeSnapshots"): (
        _ids("DescribeSnapshots", "SnapshotIds", "snap", "InvalidSnapshotID.Malformed"),
        _filters("DescribeSnapshots"),
    ),
    ("ebs", "StartSnapshot"): (_start_snapshot,),
    ("ebs", "PutSnapshotBlock"): (_put_snapshot_block,),
    ("ebs", "CompleteSnapshot"): (_complete_snapshot,),
    ("sts", "AssumeRole"): (_assume_role,),
    **{
        ("s3", op): (_s3(op),)
        for op in (
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "DeleteObject",
            "PutObject",
            "HeadBucket",
        )
    },
}
"""The prose rules per operation. Every operation the provider calls that has one is listed."""
