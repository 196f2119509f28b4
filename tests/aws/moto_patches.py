"""Patches that make moto 5.2.5 strict where imgpub depends on AWS behaviour (imported by moto_server.py).

IMGPUB_MOTO_DISCARD_BLOCKS=1 keeps block checksums but not block data (for benchmarks).

Patches, applied on import, in the server process only:
* Every EC2 request, and EBS StartSnapshot, is checked against botocore's model and the rules its
  documentation states (tests/aws/contract.py, the same check the test clients run) and refused
  with the real error code: RegisterImage TagSpecifications other than `image`, io1/io2 without
  Iops, Throughput off gp3, KmsKeyId without Encrypted, malformed names and ids, ...
* EBS direct: BlockSize 524288; the snapshot stays `pending` until CompleteSnapshot; a reused
  ClientToken answers the earlier snapshot (other parameters: ConflictException); VolumeSize/Timeout
  ranges; PutSnapshotBlock checks the snapshot state, the index range, the 512 KiB length and the
  SHA-256 checksum; CompleteSnapshot checks ChangedBlocksCount and the LINEAR aggregate checksum.
* RegisterImage reads every field imgpub sends (Architecture defaults to i386 as in AWS), uses the
  given snapshot (which must be completed) and rejects duplicate names.
* CopyImage copies the registration fields, applies both TagSpecifications (image, snapshot),
  encrypts with KmsKeyId (a key from another region makes the copy fail, as EC2's asynchronous key
  check does), rejects duplicate names, and answers a reused ClientToken with the earlier ImageId
  (other parameters: IdempotentParameterMismatch). Sharing an AMI or snapshot encrypted with the
  default aws/ebs key with accounts is refused. CreateTags keeps 50 tags per resource.
* DescribeImageAttribute for tpmSupport/imdsSupport/uefiData; ImportSnapshot /
  DescribeImportSnapshotTasks (read the S3 object into an EBS snapshot encrypted with the KmsKeyId
  given, else the default key) and EnableImageDeprecation,
  which moto lacks (DeprecateAt rounded to the nearest minute, then refused in the past, beyond 10
  years, or beyond 2 years after creation for a public AMI).
* DescribeImages leaves disabled AMIs out unless IncludeDisabled, and ExecutableUsers scopes to
  explicit launch permissions (`all`: public AMIs); DeleteSnapshot is InvalidSnapshot.InUse while any
  AMI uses the snapshot (moto checks only the AMI it was made for).
* Failure modes on demand (moto_failures.py): failed AMIs and error snapshots, new AMIs not yet
  visible to DescribeImages, snapshots still in use for a while after DeregisterImage, and AMIs
  backdated (their CreationDate, or a DeprecationTime in the past) for tests of ages.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import moto_failures as failures
from contract import deprecate_at_problem, violations
from moto.core.exceptions import ServiceException
from moto.core.responses import BaseResponse
from moto.core.utils import utcnow
from moto.ebs import models as ebs_models
from moto.ebs import responses as ebs_responses
from moto.ec2.models import amis as ami_models
from moto.ec2.models import ec2_backends
from moto.ec2.models import elastic_block_store as ebs_backend_models
from moto.ec2.responses import amis as ami_responses
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.tags import TagResponse

BLOCK = 524288
GIB = 1 << 30
DISCARD = os.environ.get("IMGPUB_MOTO_DISCARD_BLOCKS") == "1"
"""Benchmarks: validate blocks but keep only their checksums (moto holds blocks in RAM)."""


class ApiError(ServiceException):
    """Serialised with the calling service's model: moto looks a model up by module name when the
    module starts with "moto", so this class claims a module name that does not."""

    __module__ = "imgpub_test_patches"


def _err(code: str, message: str) -> ServiceException:
    return ApiError(code, message)


# ---------------------------------------------------------------- EBS direct
_tokens: dict[tuple[str, str, str], tuple[str, str]] = {}


def _start_snapshot(self: ebs_responses.EBSResponse) -> Any:
    """A reused ClientToken answers the earlier snapshot (even one deleted since); the same token with
    other parameters is a ConflictException, as EBS documents."""
    size = self._get_param("VolumeSize")
    timeout = self._get_param("Timeout")
    token = self._get_param("ClientToken")
    backend = self.ebs_backend
    if not isinstance(size, int) or not 1 <= size <= 65536:
        raise _err("ValidationException", f"VolumeSize {size} is out of range 1-65536")
    if timeout is not None and not 10 <= int(timeout) <= 4320:
        raise _err("ValidationException", f"Timeout {timeout} is out of range 10-4320")
    key = (backend.account_id, backend.region_name, token or "")
    signature = repr(sorted((k, repr(v)) for k, v in self.params.items() if k != "ClientToken"))
    if token and key in _tokens:
        earlier, earlier_signature = _tokens[key]
        if earlier_signature != signature:
            raise _err("ConflictException", f"ClientToken {token} was used with other parameters")
        if earlier not in backend.snapshots:
            return ebs_responses.ActionResult(
                {"SnapshotId": earlier, "Status": "pending", "BlockSize": BLOCK}
            )
        snap = backend.snapshots[earlier]
    else:
        snap = backend.start_snapshot(
            volume_size=size, tags=self._get_param("Tags"), description=self._get_param("Description")
        )
        snap.block_size = BLOCK
        ec2_snap = backend.ec2_backend.snapshots[snap.snapshot_id]
        ec2_snap.status = "pending"
        ec2_snap.encrypted = bool(self._get_param("Encrypted"))
        ec2_snap.kms_key_id = self._get_param("KmsKeyArn") if ec2_snap.encrypted else None
        if token:
            _tokens[key] = (snap.snapshot_id, signature)
    return ebs_responses.ActionResult(
        {
            "SnapshotId": snap.snapshot_id,
            "OwnerId": snap.account_id,
            "Status": snap.status,
            "StartTime": snap.start_time,
            "VolumeSize": snap.volume_size,
            "BlockSize": snap.block_size,
            "Tags": snap.tags,
            "Description": snap.description,
        }
    )


def _snapshot(backend: ebs_models.EBSBackend, snapshot_id: str) -> ebs_models.EBSSnapshot:
    snap = backend.snapshots.get(snapshot_id)
    if snap is None or snapshot_id not in backend.ec2_backend.snapshots:
        raise _err("ResourceNotFoundException", f"The snapshot '{snapshot_id}' does not exist.")
    return snap


def _put_snapshot_block(
    self: ebs_models.EBSBackend,
    snapshot_id: str,
    block_index: int,
    block_data: bytes,
    checksum: str | None,
    checksum_algorithm: str | None,
    data_length: int | None,
) -> tuple[str | None, str | None]:
    snap = _snapshot(self, snapshot_id)
    if snap.status != "pending":
        raise _err("ValidationException", f"Snapshot {snapshot_id} is {snap.status}, not pending")
    if not 0 <= int(block_index) < snap.volume_size * (GIB // BLOCK):
        raise _err("ValidationException", f"Block index {block_index} is outside the volume")
    if len(block_data) != BLOCK or (data_length is not None and int(data_length) != BLOCK):
        raise _err("ValidationException", f"Block data length {len(block_data)} must be {BLOCK}")
    if checksum_algorithm != "SHA256":
        raise _err("ValidationException", "ChecksumAlgorithm must be SHA256")
    if base64.b64encode(hashlib.sha256(block_data).digest()).decode() != checksum:
        raise _err("ValidationException", "The checksum does not match the block data (INVALID_CHECKSUM)")
    snap.put_block(
        int(block_index), b"" if DISCARD else block_data, checksum, checksum_algorithm, data_length
    )
    return checksum, checksum_algorithm


def _complete_snapshot(self: ebs_responses.EBSResponse) -> Any:
    snapshot_id = self._get_param("SnapshotId")
    snap = _snapshot(self.ebs_backend, snapshot_id)
    if snap.status != "pending":  # a second CompleteSnapshot (a retry whose first reply was lost)
        raise _err("ValidationException", f"Snapshot {snapshot_id} is {snap.status}, not pending")
    count = self._get_param("ChangedBlocksCount")
    if count is None or int(count) != len(snap.blocks):
        raise _err("ValidationException", f"ChangedBlocksCount {count} != {len(snap.blocks)} blocks written")
    checksum = self._get_param("Checksum")
    if checksum is not None:
        if self._get_param("ChecksumAggregationMethod") != "LINEAR":
            raise _err("ValidationException", "ChecksumAggregationMethod must be LINEAR")
        digests = b"".join(base64.b64decode(snap.blocks[i].checksum) for i in sorted(snap.blocks))
        if base64.b64encode(hashlib.sha256(digests).digest()).decode() != checksum:
            raise _err("ValidationException", "The aggregated checksum does not match (INVALID_CHECKSUM)")
    snap.status = "completed"
    ec2_snap = self.ebs_backend.ec2_backend.snapshots[snapshot_id]
    ec2_snap.status = "completed"
    rule = failures.take_outcome("CompleteSnapshot", self.ebs_backend.region_name)
    if rule is not None:  # accepted, then failed: the snapshot ends in error
        failures.fail_snapshot(ec2_snap, rule["state"], rule.get("message", "injected failure"))
    return ebs_responses.ActionResult({"Status": "pending"})


ebs_responses.EBSResponse.start_snapshot = _start_snapshot  # type: ignore[method-assign]
ebs_responses.EBSResponse.complete_snapshot = _complete_snapshot  # type: ignore[method-assign]
ebs_models.EBSBackend.put_snapshot_block = _put_snapshot_block  # type: ignore[method-assign]


# ---------------------------------------------------------------- AMIs
def _bdm(self: Any) -> list[dict[str, Any]]:
    return getattr(self, "_imgpub_bdm", None) or _orig_bdm.fget(self)  # type: ignore[misc]


_orig_bdm = ami_models.Ami.block_device_mappings
ami_models.Ami.block_device_mappings = property(_bdm)  # type: ignore[assignment,method-assign]
_REG_FIELDS = ("TpmSupport", "ImdsSupport", "EnaSupport", "SriovNetSupport", "UefiData")
DEFAULT_KEY = "alias/aws/ebs"
"""What moto records as the KMS key of a snapshot encrypted without a key: the account default."""


def _name_free(backend: Any, name: str) -> None:
    if any(a.name == name and a.owner_id == backend.account_id for a in backend.amis.values()):
        raise _err("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI in this region")


def _new_ami(backend: Any, name: str, description: str, fields: dict[str, Any], snap: Any) -> Any:
    _name_free(backend, name)
    ami = ami_models.Ami(backend, ami_models.random_ami_id(), name=name, description=description)
    backend.delete_snapshot(ami.ebs_snapshot.id)  # moto's auto-made 15 GiB snapshot is not ours
    ami.ebs_snapshot = snap
    snap.from_ami = ami.id
    ami.architecture = fields.get("Architecture") or "i386"
    ami.virtualization_type = fields.get("VirtualizationType") or "paravirtual"
    ami.root_device_name = fields["RootDeviceName"]
    ami.root_device_type = "ebs"
    ami.boot_mode = fields.get("BootMode")
    ami.sriov = fields.get("SriovNetSupport")
    ami.tpm = ami.tpm_support = fields.get("TpmSupport")
    ami.imds = ami.imds_support = fields.get("ImdsSupport")
    ami.ena_support = fields.get("EnaSupport")
    ami.sriov_net_support = fields.get("SriovNetSupport")
    ami.uefi = fields.get("UefiData")
    ami.deprecation_time = None
    ami._imgpub_fields = fields
    ebs = dict(fields["BlockDeviceMappings"][0]["Ebs"])
    ebs["SnapshotId"] = snap.id
    ebs.setdefault("VolumeSize", snap.volume.size)
    ebs["Encrypted"] = bool(snap.encrypted)
    if snap.encrypted:
        ebs["KmsKeyId"] = snap.kms_key_id or DEFAULT_KEY
    ami._imgpub_bdm = [{"DeviceName": fields["RootDeviceName"], "Ebs": ebs}]
    backend.amis[ami.id] = ami
    failures.made(ami.id)
    return ami


def _apply_outcome(action: str, backend: Any, ami: Any) -> None:
    rule = failures.take_outcome(action, backend.region_name)
    if rule is not None:
        failures.fail_image(ami, rule["state"], rule.get("message", "injected failure"))


def _tag(resource: Any, specs: list[dict[str, Any]], kind: str) -> None:
    for spec in specs:
        if spec["ResourceType"] == kind:
            for tag in spec.get("Tags", []):
                resource.add_tag(tag["Key"], tag["Value"])


def _register_image(self: ami_responses.AmisResponse) -> Any:
    """The contract check (RegisterImage's rules: TagSpecifications `image` only, Iops for io1/io2,
    Throughput for gp3, TPM needs UEFI, the name's form) ran before this; here: the snapshot."""
    self.error_on_dryrun()
    backend = self.ec2_backend
    name = self._get_param("Name")
    fields = {k: self._get_param(k) for k in ("Architecture", "BootMode", "VirtualizationType", *_REG_FIELDS)}
    fields["RootDeviceName"] = self._get_param("RootDeviceName")
    fields["BlockDeviceMappings"] = bdms = self._get_param("BlockDeviceMappings", [])
    roots = [b for b in bdms if b.get("DeviceName") == fields["RootDeviceName"] and "Ebs" in b]
    if not roots:
        raise _err("InvalidBlockDeviceMapping", "RootDeviceName must match a BlockDeviceMappings entry")
    snap = backend.get_snapshot(roots[0]["Ebs"].get("SnapshotId", ""))
    if snap.status != "completed":
        raise _err("IncorrectState", f"Snapshot {snap.id} is {snap.status}")
    size = roots[0]["Ebs"].get("VolumeSize")
    if size is not None and int(size) < snap.volume.size:
        raise _err(
            "InvalidBlockDeviceMapping", f"VolumeSize {size} is smaller than snapshot {snap.volume.size}"
        )
    fields["BlockDeviceMappings"] = roots
    ami = _new_ami(backend, name, self._get_param("Description", ""), fields, snap)
    _tag(ami, self._get_param("TagSpecifications", []), "image")
    _apply_outcome("RegisterImage", backend, ami)
    return ami_responses.ActionResult({"ImageId": ami.id})


_copy_tokens: dict[tuple[str, str, str], tuple[str, str]] = {}
_KEY_REGION = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):")


def _copy_image(self: ami_responses.AmisResponse) -> Any:
    """CopyImage as EC2 does it: a reused ClientToken answers the earlier ImageId (even when that
    AMI failed or is gone) and the same token with other parameters is IdempotentParameterMismatch;
    both TagSpecifications apply; Encrypted/KmsKeyId encrypt the copy; a key from another region is
    accepted and the copy then fails (EC2 checks keys asynchronously)."""
    self.error_on_dryrun()
    backend = self.ec2_backend
    token = self._get_param("ClientToken")
    key = (backend.account_id, backend.region_name, token or "")
    signature = repr(sorted((k, repr(v)) for k, v in self.params.items() if k != "ClientToken"))
    if token and key in _copy_tokens:
        earlier, earlier_signature = _copy_tokens[key]
        if earlier_signature != signature:
            raise _err("IdempotentParameterMismatch", f"ClientToken {token} was used with other parameters")
        return ami_responses.ActionResult({"ImageId": earlier})
    src_backend = ec2_backends[backend.account_id][self._get_param("SourceRegion")]
    src = src_backend.describe_images(ami_ids=[self._get_param("SourceImageId")])[0]
    fields = getattr(src, "_imgpub_fields", None)
    if fields is None:
        return _orig_copy_image(self)
    if src.state != "available":
        raise _err("IncorrectState", f"Image {src.id} is {src.state}")
    _name_free(backend, self._get_param("Name") or src.name)  # before anything is made
    vol = backend.create_volume(size=src.ebs_snapshot.volume.size, zone_name=f"{backend.region_name}a")
    snap = backend.create_snapshot(vol.id, f"Copied for {src.id}")
    kms = self._get_param("KmsKeyId")
    snap.encrypted = self._get_param("Encrypted") is True or bool(src.ebs_snapshot.encrypted)
    snap.kms_key_id = kms if snap.encrypted else None
    specs = self._get_param("TagSpecifications", [])
    ami = _new_ami(backend, self._get_param("Name") or src.name, src.description or "", fields, snap)
    _tag(ami, specs, "image")
    _tag(snap, specs, "snapshot")
    if token:
        _copy_tokens[key] = (ami.id, signature)
    wrong = _KEY_REGION.match(kms or "")
    if wrong and wrong.group(1) != backend.region_name:
        failures.fail_image(
            ami, "failed", f"Client.InvalidKMSKey.Id: key {kms} is not in {backend.region_name}"
        )
    _apply_outcome("CopyImage", backend, ami)
    return ami_responses.ActionResult({"ImageId": ami.id})


def _describe_images(self: ami_responses.AmisResponse) -> Any:
    """DescribeImages as EC2 answers it: disabled AMIs only with IncludeDisabled ("Default: No disabled
    AMIs are included"), ExecutableUsers scoping to explicit launch permissions (`all`: public AMIs;
    moto counts a public AMI as shared with everyone)."""
    self.error_on_dryrun()
    ami_ids = self._get_param("ImageIds", [])
    unseen = failures.hidden(ami_ids)
    if unseen:
        raise _err("InvalidAMIID.NotFound", f"The image id '[{', '.join(unseen)}]' does not exist")
    images = self.ec2_backend.describe_images(
        ami_ids=ami_ids, filters=self._filters_from_querystring(), owners=self._get_param("Owners", [])
    )
    users = set(self._get_param("ExecutableUsers", []))
    if users:
        users = {self.ec2_backend.account_id if u == "self" else u for u in users}
        images = [
            i
            for i in images
            if any(p.get("UserId") in users for p in i.launch_permissions) or ("all" in users and i.is_public)
        ]
    if not self._get_bool_param("IncludeDisabled", False):
        images = [i for i in images if i.state != "disabled"]
    return ami_responses.ActionResult({"Images": images})


def _default_key(snap: Any) -> bool:
    return bool(snap.encrypted) and (snap.kms_key_id or DEFAULT_KEY).endswith(DEFAULT_KEY)


def _modify_image_attribute(self: ami_responses.AmisResponse) -> Any:
    """EC2 refuses to share an AMI whose snapshots use the default aws/ebs key with other accounts."""
    perms = self._get_param("LaunchPermission", {}).get("Add", [])
    ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
    if any("Group" not in p for p in perms) and _default_key(ami.ebs_snapshot):
        raise _err(
            "InvalidParameter",
            "Snapshots encrypted with the AWS Managed CMK can't be shared. Specify another snapshot.",
        )
    return _orig_modify_image_attribute(self)


def _describe_image_attribute(self: ami_responses.AmisResponse) -> Any:
    attr = self._get_param("Attribute")
    names = {"tpmSupport": "tpm_support", "imdsSupport": "imds_support", "uefiData": "uefi"}
    if attr in names:
        ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
        value = getattr(ami, names[attr], None)
        return ami_responses.ActionResult({"ImageId": ami.id, attr: {"Value": value} if value else None})
    return _orig_describe_attr(self)


def _enable_image_deprecation(self: ami_responses.AmisResponse) -> Any:
    """EnableImageDeprecation as botocore's model documents DeprecateAt: "If you specify a value for
    seconds, Amazon EC2 rounds the seconds to the nearest minute"; "You can't specify a date in the
    past" (so a time whose seconds round it into the past minute is refused too); at most 10 years
    ahead, "except for public AMIs, where the upper limit is 2 years from the creation date"."""
    ami = self.ec2_backend.describe_images(ami_ids=[self._get_param("ImageId")])[0]
    at = self._get_param("DeprecateAt")
    when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    rounded = when.replace(second=0, microsecond=0) + timedelta(minutes=1 if when.second >= 30 else 0)
    now = utcnow().replace(tzinfo=UTC)
    problem = deprecate_at_problem(when, now)  # the past and 10 years (the contract check ran it too)
    if problem:
        raise _err("InvalidParameterValue", f"DeprecateAt {problem}")
    created = ami.creation_date if isinstance(ami.creation_date, datetime) else now
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    if ami.is_public and rounded > created + timedelta(days=731):
        raise _err(
            "InvalidParameterValue", f"DeprecateAt {rounded:%Y-%m-%dT%H:%MZ}: a public AMI at most 2 years on"
        )
    ami.deprecation_time = rounded.strftime("%Y-%m-%dT%H:%M:00.000Z")
    return ami_responses.ActionResult({"Return": True})


def _ami_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
    """DescribeImages' `block-device-mapping.snapshot-id` filter, which moto lacks."""
    if filter_name == "block-device-mapping.snapshot-id":
        return {
            m["Ebs"]["SnapshotId"] for m in self.block_device_mappings if m.get("Ebs", {}).get("SnapshotId")
        }
    return _orig_ami_filter_value(self, filter_name, method_name)


_orig_ami_filter_value = ami_models.Ami.get_filter_value
ami_models.Ami.get_filter_value = _ami_filter_value  # type: ignore[method-assign]
_orig_copy_image = ami_responses.AmisResponse.copy_image
_orig_describe_attr = ami_responses.AmisResponse.describe_image_attribute
_orig_describe_images = ami_responses.AmisResponse.describe_images
_orig_modify_image_attribute = ami_responses.AmisResponse.modify_image_attribute
ami_responses.AmisResponse.register_image = _register_image  # type: ignore[method-assign]
ami_responses.AmisResponse.copy_image = _copy_image  # type: ignore[method-assign]
ami_responses.AmisResponse.describe_images = _describe_images  # type: ignore[method-assign]
ami_responses.AmisResponse.modify_image_attribute = _modify_image_attribute  # type: ignore[method-assign]
ami_responses.AmisResponse.describe_image_attribute = _describe_image_attribute  # type: ignore[method-assign]
ami_responses.AmisResponse.enable_image_deprecation = _enable_image_deprecation  # type: ignore[attr-defined]


# ---------------------------------------------------------------- snapshots and tags
def _modify_snapshot_attribute(self: ElasticBlockStore) -> Any:
    snap = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    if self._get_param("OperationType") == "add" and _default_key(snap):
        raise _err(
            "InvalidParameter",
            "Snapshots encrypted with the AWS Managed CMK can't be shared. Specify another snapshot.",
        )
    return _orig_modify_snapshot_attribute(self)


MAX_TAGS = 50


def _create_tags(self: TagResponse) -> Any:
    """At most 50 tags per resource (TagLimitExceeded), counting the ones it has."""
    new = {t["Key"] for t in self._get_param("Tags", [])}
    for resource_id in self._get_param("Resources", []):
        have = set(self.ec2_backend.tags.get(resource_id, {}))
        if len(have | new) > MAX_TAGS:
            raise _err(
                "TagLimitExceeded", f"{resource_id} would have {len(have | new)} tags (at most {MAX_TAGS})"
            )
    return _orig_create_tags(self)


def _delete_snapshot(self: Any, snapshot_id: str) -> Any:
    """InvalidSnapshot.InUse while any AMI uses the snapshot (moto checks only the AMI it was made
    for), and for a while after that AMI was deregistered when the test asks for EC2's lag."""
    users = [
        a.id
        for a in self.amis.values()
        if any(m.get("Ebs", {}).get("SnapshotId") == snapshot_id for m in a.block_device_mappings)
    ]
    if snapshot_id in self.snapshots and (users or failures.still_in_use(snapshot_id)):
        owner = users[0] if users else "an AMI deregistered a moment ago"
        raise _err("InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {owner}")
    return _orig_delete_snapshot(self, snapshot_id)


def _deregister_image(self: Any, ami_id: str) -> None:
    ami = self.amis.get(ami_id)
    _orig_deregister_image(self, ami_id)
    if ami is not None:
        failures.deregistered([m["Ebs"]["SnapshotId"] for m in ami.block_device_mappings if "Ebs" in m])


_orig_delete_snapshot = ebs_backend_models.EBSBackend.delete_snapshot
_orig_deregister_image = ami_models.AmiBackend.deregister_image
ebs_backend_models.EBSBackend.delete_snapshot = _delete_snapshot  # type: ignore[method-assign]
ami_models.AmiBackend.deregister_image = _deregister_image  # type: ignore[method-assign]
_orig_modify_snapshot_attribute = ElasticBlockStore.modify_snapshot_attribute
_orig_create_tags = TagResponse.create_tags
ElasticBlockStore.modify_snapshot_attribute = _modify_snapshot_attribute  # type: ignore[method-assign]
TagResponse.create_tags = _create_tags  # type: ignore[method-assign]


# ---------------------------------------------------------------- the contract, server side
_SERVER_CHECKED = {"ec2": None, "ebs": {"StartSnapshot"}}
"""Where the server checks requests against the contract: every EC2 action (query parameters parsed
with the model), and the EBS direct call with a JSON body (the block calls are checked above)."""


_one_at_a_time = threading.RLock()
"""EC2 and the EBS snapshot calls are carried out one at a time, as atomic as AWS makes them (moto's
backends are not thread-safe: two RegisterImage of one name at once would both pass the name check).
The block calls stay parallel."""


def _call_action(self: BaseResponse) -> Any:
    service = getattr(self, "service_name", None)
    if service == "ec2" or (service == "ebs" and "/blocks/" not in self.path):
        with _one_at_a_time:
            return _checked_call_action(self, service)
    return _checked_call_action(self, service)


def _checked_call_action(self: BaseResponse, service: str | None) -> Any:
    allowed = _SERVER_CHECKED.get(service or "", ...)
    action = self._get_action() if allowed is not ... else None
    if action and (allowed is None or action in allowed) and self.automated_parameter_parsing:
        found = [
            v for v in violations(service, action, self.params, self.region) if v.code != "InvalidKMSKey.Id"
        ]
        if found:
            error = _err(found[0].code, f"{found[0].where}: {found[0].message}")
            status, headers, body = self.serialized(ami_responses.ActionResult(error))
            headers["status"] = status
            status, headers, body = self._transform_response(self.response_headers, (body, headers))
            return (status, *self._enrich_response(headers, body))
    return _orig_call_action(self)


_orig_call_action = BaseResponse.call_action
BaseResponse.call_action = _call_action  # type: ignore[method-assign]


# ---------------------------------------------------------------- ImportSnapshot
_import_tasks: dict[str, dict[str, Any]] = {}


def _import_snapshot(self: ElasticBlockStore) -> Any:
    from moto.s3.models import s3_backends

    self.error_on_dryrun()  # VM Import reads the object later, as the task runs (_finish_import)
    disk = self._get_param("DiskContainer", {})
    bucket = disk.get("UserBucket", {})
    task_id = f"import-snap-{hashlib.sha1(str(len(_import_tasks)).encode()).hexdigest()[:17]}"
    detail: dict[str, Any] = {
        "Format": disk.get("Format"),
        "UserBucket": bucket,
        "Status": "active",
        "StatusMessage": "pending",
        "Progress": "0",
        "Description": self._get_param("Description"),
        "Encrypted": bool(self._get_param("Encrypted")),
    }
    if detail["Encrypted"] and self._get_param("KmsKeyId"):  # SnapshotTaskDetail names the key
        detail["KmsKeyId"] = self._get_param("KmsKeyId")
    s3 = s3_backends[self.current_account]["aws"]
    task = {"detail": detail, "s3": s3, "steps": 0, "region": self.region}
    _import_tasks[task_id] = task
    return ami_responses.ActionResult({"ImportTaskId": task_id, "SnapshotTaskDetail": detail})


def _describe_import_snapshot_tasks(self: ElasticBlockStore) -> Any:
    ids = self._get_param("ImportTaskIds", []) or list(_import_tasks)
    out = []
    for task_id in ids:
        task = _import_tasks.get(task_id)
        if task is None:
            raise _err("InvalidConversionTaskId.Malformed", f"The import task {task_id} does not exist")
        detail = task["detail"]
        if detail["Status"] == "active":
            task["steps"] += 1
            if task["steps"] == 1:
                detail.update(StatusMessage="converting", Progress="50")
            else:
                _finish_import(self, task)
        out.append({"ImportTaskId": task_id, "SnapshotTaskDetail": detail})
    return ami_responses.ActionResult({"ImportSnapshotTasks": out})


def _finish_import(self: ElasticBlockStore, task: dict[str, Any]) -> None:
    bucket = task["detail"]["UserBucket"]
    try:
        data = bytes(task["s3"].get_object(bucket.get("S3Bucket"), bucket.get("S3Key")).value)
    except Exception as exc:
        task["detail"].update(Status="deleted", StatusMessage=f"ClientError: cannot read the disk: {exc}")
        return
    backend = ebs_models.ebs_backends[self.current_account][task["region"]]
    snap = backend.start_snapshot(
        volume_size=max(1, math.ceil(len(data) / GIB)), tags=None, description="imported"
    )
    snap.block_size = BLOCK
    for index in range(math.ceil(len(data) / BLOCK)):
        block = data[index * BLOCK : (index + 1) * BLOCK].ljust(BLOCK, b"\0")
        if block.count(0) != BLOCK:
            digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
            snap.put_block(index, block, digest, "SHA256", BLOCK)
    snap.status = "completed"
    imported = backend.ec2_backend.snapshots[snap.snapshot_id]
    imported.encrypted = task["detail"]["Encrypted"]
    imported.kms_key_id = task["detail"].get("KmsKeyId")  # None: the account's default key
    task["detail"].update(
        Status="completed",
        StatusMessage="completed",
        Progress="100",
        SnapshotId=snap.snapshot_id,
        DiskImageSize=float(len(data)),
    )


ElasticBlockStore.import_snapshot = _import_snapshot  # type: ignore[attr-defined]
ElasticBlockStore.describe_import_snapshot_tasks = _describe_import_snapshot_tasks  # type: ignore[attr-defined]


def reset() -> None:
    """Forget idempotency tokens and import tasks (with POST /moto-api/reset)."""
    _tokens.clear()
    _copy_tokens.clear()
    _import_tasks.clear()
    failures.reset()
