"""Least privilege, checked: the IAM policies in providers/aws/README.md against the calls imgpub makes.

The README's fenced blocks marked `policy=<name>` are the only list of permissions. This test
1. drives a representative run of everything the AWS provider does against the strict moto server
   (plan, publish with copies and a failed copy cleaned up, sharing, deprecation, encryption with
   customer managed keys, `--replace` and its way back after a failed RegisterImage,
   `upload: s3-import` and its failure path, status, the version matrix, prune deprecating and then
   deleting, reconcile copying and repairing, `role_arn`),
2. records every request any client of the provider sends (operation, region, parameters, and the
   tags of the AMIs and snapshots it names at that moment), and checks that the server received
   exactly those requests (no call slips past botocore),
3. maps each call to what AWS authorizes: the IAM action, the resource ARN it is checked on, and the
   condition keys (ACTIONS, plus EXTRA for what a call implies: tags sent with a create,
   KMS use by EBS, VM Import's read of the bucket); a call without a mapping fails the test,
4. asserts (a) every call is granted by the policies its command needs (PHASES says which) and
   (b) every action and resource a policy grants is needed by some call, and by no other statement
   alone: removing any one of them leaves a call of the run ungranted (ALLOWED lists the exceptions,
   each with the reason the stand-ins cannot reach it).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

import imgpub
from aws.contract import Contract
from aws.motoaws import ACCOUNT, UNCHECKED, Moto, context, image_info
from imgpub.disk import DiskImage
from imgpub.errors import CloudError
from imgpub.journal import Journal
from imgpub.lifecycle import LifecycleResult, matrix, prune, reconcile
from imgpub.pipeline import RunResult
from imgpub.retry import FAST
from imgpub_aws import AwsProvider, AwsSettings
from imgpub_aws.ledger import NONCE_KEY

README = Path(__file__).parents[2] / "providers" / "aws" / "README.md"
BLOCK = re.compile(r"^```json policy=([\w-]+)\n(.*?)^```", re.DOTALL | re.MULTILINE)

HOME, COPY, OPTIONAL, LATER = "us-east-1", "eu-west-1", "ap-south-1", "ca-central-1"
REGIONS = (HOME, COPY, OPTIONAL, LATER)
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER = "210987654321"
ORG = "arn:aws:organizations::123456789012:organization/o-exampleorgid"
OU = "arn:aws:organizations::123456789012:ou/o-exampleorgid/ou-examplerootid-exampleouid"
ROLE_NAME = "imgpub-publisher"
BUCKET, PREFIX = "imgpub-uploads", "up/"
PROBE = "imgpub-iam-probe"
"""The user agent of the look-ups this test makes itself (tags at the time of a call)."""


def key(region: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{KEY_ID}"


PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "<account>": (ACCOUNT,),
    "<role_name>": (ROLE_NAME,),
    "<s3_bucket>": (BUCKET,),
    "<s3_prefix>": (PREFIX,),
    "<key-id>": (KEY_ID,),
    "<region>": REGIONS,  # one key ARN per region the test names a key in
}
"""What the README's placeholders stand for in this test (a list entry with one is repeated per value)."""


# ------------------------------------------------------------------------------- the README's policies
@dataclass(frozen=True)
class Statement:
    block: str
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    """After placeholder substitution."""
    written: tuple[tuple[str, str], ...]
    """(resource as written in the README, as substituted): what least privilege counts."""
    condition: Mapping[str, Mapping[str, Any]]

    def grants(self, need: Need) -> tuple[str, str] | None:
        """(action pattern, resource as written) when this statement allows `need`, else None."""
        action = next((a for a in self.actions if fnmatch.fnmatchcase(need.action.lower(), a.lower())), None)
        resource = next((w for w, r in self.written if fnmatch.fnmatchcase(need.resource, r)), None)
        if action is None or resource is None or not _conditions(self.condition, dict(need.context)):
            return None
        return action, resource


def _conditions(condition: Mapping[str, Mapping[str, Any]], context: dict[str, str]) -> bool:
    """IAM condition operators used in the README; a key the request lacks fails its condition."""
    for operator, keys in condition.items():
        for name, wanted in keys.items():
            values = [str(v).lower() if operator == "Bool" else str(v) for v in _list(wanted)]
            have = context.get(name)
            if have is None:
                return False
            if operator in ("StringEquals", "Bool"):
                ok = have in values
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(have, v) for v in values)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated here; teach this test")
            if not ok:
                return False
    return True


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _substitute(resource: str) -> list[str]:
    out = [resource]
    for name, values in PLACEHOLDERS.items():
        out = [r.replace(name, v) for r in out for v in (values if name in r else ("",))]
    left = [r for r in out if re.search(r"<[\w-]+>", r)]
    assert not left, f"placeholders this test does not know: {left}"
    return out


def policies(text: str) -> dict[str, list[Statement]]:
    """The README's policy blocks: name -> statements. Only what this test can evaluate is allowed."""
    out: dict[str, list[Statement]] = {}
    for name, body in BLOCK.findall(text):
        assert name not in out, f"policy={name} appears twice in the README"
        doc = json.loads(body)
        assert doc.get("Version") == "2012-10-17", f"policy={name}: Version 2012-10-17"
        statements = []
        for i, raw in enumerate(doc["Statement"]):
            unknown = set(raw) - {"Sid", "Effect", "Action", "Resource", "Condition"}
            assert not unknown and raw["Effect"] == "Allow", f"policy={name}[{i}]: {unknown or raw['Effect']}"
            written = [(w, r) for w in _list(raw["Resource"]) for r in _substitute(w)]
            statements.append(
                Statement(
                    name,
                    raw.get("Sid", f"#{i}"),
                    tuple(_list(raw["Action"])),
                    tuple(r for _, r in written),
                    tuple(written),
                    raw.get("Condition", {}),
                )
            )
        out[name] = statements
    return out


# ------------------------------------------------------------------------------- calls and what AWS checks
@dataclass(frozen=True)
class Call:
    """One request the provider sent."""

    phase: str
    service: str
    operation: str
    region: str
    params: Mapping[str, Any]
    found: Mapping[str, dict[str, Any] | None]
    """ARN -> the AMI or snapshot it names as DescribeImages/DescribeSnapshots gave it right before
    the call (None: not found)."""

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(frozen=True)
class Need:
    """One authorization AWS makes for a call: an action on a resource, with the request's context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def image_arn(region: str, image_id: str) -> str:
    return f"arn:aws:ec2:{region}::image/{image_id}"


def snapshot_arn(region: str, snapshot_id: str) -> str:
    return f"arn:aws:ec2:{region}::snapshot/{snapshot_id}"


def ec2_arn(region: str, resource_id: str) -> str:
    kind = {"ami": "image", "snap": "snapshot"}[resource_id.split("-")[0]]
    return f"arn:aws:ec2:{region}::{kind}/{resource_id}"


Resources = Callable[[Call], list[str]]


def _any(c: Call) -> list[str]:
    return ["*"]


def _image(c: Call) -> list[str]:
    return [image_arn(c.region, c.params["ImageId"])]


def _snapshot(c: Call) -> list[str]:
    return [snapshot_arn(c.region, c.params["SnapshotId"])]


def _tagged(c: Call) -> list[str]:
    return [ec2_arn(c.region, r) for r in c.params["Resources"]]


def _new_image(c: Call) -> list[str]:
    return [image_arn(c.region, "*")]


def _new_snapshot(c: Call) -> list[str]:
    return [snapshot_arn(c.region, "*")]


def _copy(c: Call) -> list[str]:
    """The new AMI, the source AMI and the new snapshots ("Grant permissions to copy Amazon EC2
    AMIs": resource-level permissions on the source AMI, snapshots in the Resource element)."""
    source = image_arn(c.params["SourceRegion"], c.params["SourceImageId"])
    return [image_arn(c.region, "*"), source, snapshot_arn(c.region, "*")]


def _import(c: Call) -> list[str]:
    return [f"arn:aws:ec2:{c.region}:{ACCOUNT}:import-snapshot-task/*", snapshot_arn(c.region, "*")]


def _object(c: Call) -> list[str]:
    return [f"arn:aws:s3:::{c.params['Bucket']}/{c.params['Key']}"]


def _role(c: Call) -> list[str]:
    return [f"arn:aws:iam::{ACCOUNT}:role/{c.params['RoleName']}"]


def _assumed(c: Call) -> list[str]:
    return [str(c.params["RoleArn"])]


ACTIONS: dict[str, tuple[str, Resources]] = {
    # Amazon EC2 (Service Authorization Reference): the Describe list calls take no resource
    "ec2.DescribeImages": ("ec2:DescribeImages", _any),
    "ec2.DescribeSnapshots": ("ec2:DescribeSnapshots", _any),
    "ec2.DescribeImportSnapshotTasks": ("ec2:DescribeImportSnapshotTasks", _any),
    "ec2.DescribeImageAttribute": ("ec2:DescribeImageAttribute", _image),
    "ec2.DescribeSnapshotAttribute": ("ec2:DescribeSnapshotAttribute", _snapshot),
    "ec2.RegisterImage": ("ec2:RegisterImage", _new_image),
    "ec2.CopyImage": ("ec2:CopyImage", _copy),
    "ec2.ImportSnapshot": ("ec2:ImportSnapshot", _import),
    "ec2.CreateTags": ("ec2:CreateTags", _tagged),
    "ec2.ModifyImageAttribute": ("ec2:ModifyImageAttribute", _image),
    "ec2.ModifySnapshotAttribute": ("ec2:ModifySnapshotAttribute", _snapshot),
    "ec2.EnableImageDeprecation": ("ec2:EnableImageDeprecation", _image),
    "ec2.DeregisterImage": ("ec2:DeregisterImage", _image),
    "ec2.DeleteSnapshot": ("ec2:DeleteSnapshot", _snapshot),
    # EBS direct APIs ("Control access to EBS direct APIs using IAM"): actions on snapshots
    "ebs.StartSnapshot": ("ebs:StartSnapshot", _new_snapshot),
    "ebs.PutSnapshotBlock": ("ebs:PutSnapshotBlock", _snapshot),
    "ebs.CompleteSnapshot": ("ebs:CompleteSnapshot", _snapshot),
    # Amazon S3 ("Required permissions for Amazon S3 API operations"): every step of a multipart
    # upload but the abort is s3:PutObject
    "s3.CreateMultipartUpload": ("s3:PutObject", _object),
    "s3.UploadPart": ("s3:PutObject", _object),
    "s3.CompleteMultipartUpload": ("s3:PutObject", _object),
    "s3.AbortMultipartUpload": ("s3:AbortMultipartUpload", _object),
    "s3.DeleteObject": ("s3:DeleteObject", _object),
    # IAM and STS
    "iam.GetRole": ("iam:GetRole", _role),
    "sts.AssumeRole": ("sts:AssumeRole", _assumed),
}
"""service.Operation -> the IAM action AWS checks and the resources it checks it on. A call missing
here fails the test: a new kind of call needs a row (and, in the README, a grant)."""

EBS_ENCRYPTION = (
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)
""""Requirements for Amazon EBS encryption", permissions for users: kms:CreateGrant, kms:Decrypt,
kms:DescribeKey, kms:GenerateDataKeyWithoutPlainText, kms:ReEncrypt (ReEncrypt* is both ReEncrypt
actions), for every customer managed key EBS uses on the caller's behalf."""
EBS_DIRECT_ENCRYPTION = (*EBS_ENCRYPTION, "kms:Encrypt", "kms:GenerateDataKey")
""""Control access to EBS direct APIs using IAM": writing encrypted snapshots also takes kms:Encrypt
and kms:GenerateDataKey on the key."""


def _kms(key_arn: str | None, actions: tuple[str, ...]) -> list[Need]:
    """The key's permissions; kms:GrantIsForAWSResource is true in the grant EBS makes (and exists in
    grant requests only). No key or the default aws/ebs key: the AWS managed key's policy lets
    EBS use it for the account, no IAM permission is needed."""
    if not key_arn or key_arn.endswith("alias/aws/ebs"):
        return []
    assert key_arn.startswith("arn:aws:kms:") and ":key/" in key_arn, f"name keys by ARN here: {key_arn}"
    return [
        Need(a, key_arn, (("kms:GrantIsForAWSResource", "true"),) if a == "kms:CreateGrant" else ())
        for a in actions
    ]


def _tags_on_create(c: Call) -> list[Need]:
    """A tag sent with a create needs ec2:CreateTags on the new resource, with ec2:CreateAction the
    creating action (EC2 "Grant permission to tag Amazon EC2 resources during creation"); the EBS
    direct guide: StartSnapshot "is the only action that can specify tags" and needs ec2:CreateTags
    (what ec2:CreateAction says there is not documented: left out, so no condition on it can grant it)."""
    if c.name == "ebs.StartSnapshot" and c.params.get("Tags"):
        return [Need("ec2:CreateTags", snapshot_arn(c.region, "*"))]
    out = []
    for spec in c.params.get("TagSpecifications", []):
        kind = spec["ResourceType"]
        out.append(
            Need("ec2:CreateTags", f"arn:aws:ec2:{c.region}::{kind}/*", (("ec2:CreateAction", c.operation),))
        )
    return out


def _encryption(c: Call) -> list[Need]:
    if c.name == "ebs.StartSnapshot":
        return _kms(c.params.get("KmsKeyArn"), EBS_DIRECT_ENCRYPTION)
    if c.name == "ec2.ImportSnapshot":
        return _kms(c.params.get("KmsKeyId"), EBS_ENCRYPTION)
    if c.name == "ec2.CopyImage":
        source = c.found.get(image_arn(c.params["SourceRegion"], c.params["SourceImageId"])) or {}
        keys = {m.get("Ebs", {}).get("KmsKeyId") for m in source.get("BlockDeviceMappings", [])}
        out = _kms(c.params.get("KmsKeyId"), EBS_ENCRYPTION)  # the destination key
        for source_key in sorted(k for k in keys if k):  # reading the source snapshots
            out += _kms(source_key, EBS_ENCRYPTION)
        return out
    return []


def _vm_import_reads(c: Call) -> list[Need]:
    """VM Import/Export's required permissions name s3:GetBucketLocation and s3:GetObject on the
    bucket for the caller, next to ec2:ImportSnapshot."""
    if c.name != "ec2.ImportSnapshot":
        return []
    bucket = c.params["DiskContainer"]["UserBucket"]
    return [
        Need("s3:GetBucketLocation", f"arn:aws:s3:::{bucket['S3Bucket']}"),
        Need("s3:GetObject", f"arn:aws:s3:::{bucket['S3Bucket']}/{bucket['S3Key']}"),
    ]


EXTRA: tuple[Callable[[Call], list[Need]], ...] = (_tags_on_create, _encryption, _vm_import_reads)
"""What a call needs beyond its own action."""


def needs(c: Call) -> list[Need]:
    if c.name not in ACTIONS:
        raise AssertionError(
            f"{c.name} ({c.phase}) has no mapping to IAM permissions: add it to ACTIONS in "
            "tests/aws/test_permissions.py and its permission to the policies in providers/aws/README.md"
        )
    action, resources = ACTIONS[c.name]
    out = []
    for arn in resources(c):
        found = c.found.get(arn)
        tags = tuple(
            sorted((f"aws:ResourceTag/{t['Key']}", t["Value"]) for t in (found or {}).get("Tags", []))
        )
        out.append(Need(action, arn, tags))
    for extra in EXTRA:
        out += extra(c)
    return out


# ------------------------------------------------------------------------------- phases: what each needs
PHASES: dict[str, tuple[str, ...]] = {
    "publish": ("publish",),
    "publish shared": ("publish", "sharing"),
    "publish shared encrypted": ("publish", "sharing", "kms"),
    "replace, restored": ("publish", "replace"),
    "replace shared encrypted": ("publish", "sharing", "kms", "replace"),
    "s3-import encrypted": ("publish", "s3-import", "kms"),
    "lifecycle": ("lifecycle",),
    "reconcile encrypted": ("lifecycle", "kms"),
}
"""Each phase of the run and the README policies its commands need (the README's table)."""
CALLER = ("assume-role",)
"""AssumeRole is the caller's own call; everything after it runs as the role."""

ALLOWED: dict[tuple[str, str, str], str] = {}
"""(policy, Sid, action or resource as written) -> why no call of this run needs it. Empty: every
grant is needed by some call the stand-ins make."""


# ------------------------------------------------------------------------------- recording
@dataclass
class Recorder:
    moto: Moto
    calls: list[Call] = field(default_factory=list)
    phase: str | None = None
    probes: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self, region: str) -> Any:
        """Unchecked, unrecorded EC2 clients for the look-ups (their requests carry the PROBE user agent)."""
        with self.lock:  # clients of one boto3 session are not made safely from several threads
            if region not in self.probes:
                client = boto3.session.Session().client(
                    "ec2",
                    region_name=region,
                    endpoint_url=self.moto.url,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    config=Config(retries={"total_max_attempts": 1}, user_agent_extra=PROBE),
                )
                setattr(client, UNCHECKED, True)
                self.probes[region] = client
            return self.probes[region]

    def look_up(self, region: str, resource_id: str) -> dict[str, Any] | None:
        ec2 = self.probe(region)
        try:
            if resource_id.startswith("ami-"):
                found = ec2.describe_images(
                    ImageIds=[resource_id], IncludeDeprecated=True, IncludeDisabled=True
                )
                return dict(found["Images"][0]) if found["Images"] else None
            found = ec2.describe_snapshots(SnapshotIds=[resource_id])
            return dict(found["Snapshots"][0]) if found["Snapshots"] else None
        except ClientError:  # InvalidAMIID.NotFound, InvalidSnapshot.NotFound: gone, or never there
            return None

    def named(self, service: str, operation: str, region: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The AMIs and snapshots the call names, as they are before it is sent."""
        if service not in ("ec2", "ebs"):
            return {}
        ids: list[tuple[str, str]] = [
            (region, str(params[k])) for k in ("ImageId", "SnapshotId") if isinstance(params.get(k), str)
        ]
        ids += [(region, str(r)) for r in params.get("Resources", []) if operation == "CreateTags"]
        if operation == "CopyImage":
            ids.append((str(params["SourceRegion"]), str(params["SourceImageId"])))
        return {ec2_arn(r, i): self.look_up(r, i) for r, i in ids}

    def record(self, client: Any, operation: str, params: Mapping[str, Any]) -> None:
        if self.phase is None or getattr(client, UNCHECKED, False):
            return
        service = client.meta.service_model.service_name
        region = client.meta.region_name
        kept = {k: v for k, v in params.items() if k not in ("Body", "BlockData", "UefiData")}
        found = self.named(service, operation, region, params)
        self.calls.append(Call(self.phase, service, operation, region, kept, found))

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        """Record the phase's calls; the server must have received exactly those requests."""
        assert phase in PHASES, phase
        before, sent = len(self.moto.requests()), len(self.calls)
        self.phase = phase
        try:
            yield
        finally:
            self.phase = None
        received = [
            r for r in self.moto.requests()[before:] if PROBE not in r["headers"].get("user-agent", "")
        ]
        recorded = self.calls[sent:]
        assert len(received) == len(recorded), (
            f"{phase}: the server received {len(received)} requests, botocore sent {len(recorded)}: "
            "a request that bypasses botocore's clients is not checked here"
        )


@pytest.fixture
def recorder(moto: Moto, contract: Contract, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Wraps BaseClient._make_api_call (inside the contract check, tests/aws/conftest.py)."""
    rec = Recorder(moto)
    send = BaseClient._make_api_call

    def recorded(self: Any, operation: str, params: dict[str, Any]) -> Any:
        rec.record(self, operation, params)
        return send(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recorded)
    return rec


# ------------------------------------------------------------------------------- the check
@dataclass
class Verdict:
    ungranted: list[str] = field(default_factory=list)
    used: dict[tuple[str, str, str], set[int]] = field(default_factory=dict)
    """(policy, Sid, action or resource as written) -> the needs it grants (indexes into `needs`)."""
    needs: list[tuple[tuple[str, ...], Need, str]] = field(default_factory=list)
    """(policies in force, need, the call it is for)."""


def check(calls: list[Call], blocks: dict[str, list[Statement]]) -> Verdict:
    verdict = Verdict()
    seen: set[tuple[tuple[str, ...], Need]] = set()
    for c in calls:
        names = CALLER if c.service == "sts" else PHASES[c.phase]
        missing = [n for n in names if n not in blocks]
        assert not missing, f"the README has no policy={missing}"
        for need in needs(c):
            if (names, need) in seen:
                continue
            seen.add((names, need))
            index = len(verdict.needs)
            verdict.needs.append((names, need, f"{c.name} in {c.region} ({c.phase})"))
            granted = False
            for name in names:
                for s in blocks[name]:
                    hit = s.grants(need)
                    if hit is not None:
                        granted = True
                        for what in hit:
                            verdict.used.setdefault((name, s.sid, what), set()).add(index)
            if not granted:
                verdict.ungranted.append(
                    f"{need.action} on {need.resource} {dict(need.context)} for {c.name} in {c.region} "
                    f"({c.phase}: policies {', '.join(names)})"
                )
    return verdict


def grants(blocks: dict[str, list[Statement]]) -> list[tuple[str, str, str]]:
    """Every action and resource (as written) each statement grants."""
    out = []
    for name, statements in blocks.items():
        for s in statements:
            out += [(name, s.sid, a) for a in s.actions]
            out += [(name, s.sid, w) for w in dict.fromkeys(w for w, _ in s.written)]
    return out


def without(blocks: dict[str, list[Statement]], grant: tuple[str, str, str]) -> dict[str, list[Statement]]:
    """The policies with one action or resource taken out of one statement."""
    name, sid, what = grant
    out = dict(blocks)
    out[name] = [
        s
        if s.sid != sid
        else Statement(
            s.block,
            s.sid,
            tuple(a for a in s.actions if a != what),
            tuple(r for w, r in s.written if w != what),
            tuple((w, r) for w, r in s.written if w != what),
            s.condition,
        )
        for s in blocks[name]
    ]
    return out


def least_privilege(verdict: Verdict, blocks: dict[str, list[Statement]]) -> list[str]:
    """Grants no call needs, or that only duplicate another statement's: each must be needed alone."""
    problems = []
    for grant in grants(blocks):
        if grant in ALLOWED:
            continue
        indexes = verdict.used.get(grant, set())
        if not indexes:
            problems.append(f"policy={grant[0]} {grant[1]}: {grant[2]} is granted but no call needs it")
            continue
        smaller = without(blocks, grant)
        alone = any(
            not any(s.grants(need) for n in names for s in smaller[n])
            for names, need, _ in (verdict.needs[i] for i in indexes)
        )
        if not alone:
            problems.append(
                f"policy={grant[0]} {grant[1]}: {grant[2]} is redundant: every call it grants is granted "
                "by another statement of the same policies"
            )
    return problems


# ------------------------------------------------------------------------------- the run
@dataclass
class Clock:
    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Site:
    folder: Path
    moto: Moto
    rec: Recorder
    clock: Clock = field(default_factory=Clock)

    def manifest(self, version: str, target: str = "", policy: str = "") -> Path:
        path = self.folder / f"demo-{version}.yaml"
        path.write_text(
            f"image: {{name: demo, version: '{version}', source: disk.raw, boot: uefi}}\n"
            f"{policy}"
            "targets:\n"
            f"  - name: ami\n    provider: aws\n    region: {HOME}\n"
            f"    regions: [{COPY}]\n    optional_regions: [{OPTIONAL}]\n"
            f"    endpoint_url: '{self.moto.url}'\n    concurrency: 4\n"
            f"    role_arn: 'arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}'\n    external_id: imgpub-ci\n{target}"
        )
        return path

    def publish(self, path: Path, *, replace: bool = False) -> RunResult:
        return imgpub.publish(path, state_dir=self.folder / "state", retry=FAST, replace=replace)

    def plan_status(self, path: Path) -> None:
        for command in (imgpub.plan, imgpub.status):
            result = command(path, state_dir=self.folder / "state")
            assert all(t.error is None for t in result.targets), [t.error for t in result.targets]

    def lifecycle(self, command: Callable[..., LifecycleResult], path: Path, **kw: Any) -> LifecycleResult:
        result = command(path, state_dir=self.folder / "state", now=self.clock, retry=FAST, **kw)
        assert result.exit_code == 0, [(v.version, v.error) for t in result.targets for v in t.versions]
        return result

    def amis(self, version: str, region: str = HOME) -> list[dict[str, Any]]:
        images = self.moto.client("ec2", region).describe_images(
            Owners=["self"], IncludeDeprecated=True, IncludeDisabled=True
        )["Images"]
        return [i for i in images if {"Key": "imgpub:version", "Value": version} in i.get("Tags", [])]


def ok(result: RunResult) -> None:
    assert all(t.error is None for t in result.targets), [t.error for t in result.targets]


SHARED = (
    f"    share_accounts: ['{OTHER}']\n    share_organizations: ['{ORG}']\n    share_ous: ['{OU}']\n"
    "    share_snapshots: true\n    deprecate_after: 365d\n    tags: {team: os}\n"
)
ENCRYPTED = (
    f"    encrypted: true\n    kms_key_id: '{key(HOME)}'\n"
    f"    kms_key_ids: {{{COPY}: '{key(COPY)}', {OPTIONAL}: '{key(OPTIONAL)}'}}\n"
)


def run_everything(site: Site, disk: DiskImage) -> None:
    """Every kind of call the provider makes, phase by phase (PHASES: the policies each needs)."""
    moto, rec = site.moto, site.rec
    moto.client("s3").create_bucket(Bucket=BUCKET)
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    moto.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(trust))

    plain = site.manifest("1.0.0")
    moto.outcome("CopyImage", "failed", region=OPTIONAL)  # a failed copy: removed by the next publish
    with rec.during("publish"):
        site.plan_status(plain)
        first = site.publish(plain)
        ok(first)
        assert any(
            OPTIONAL in w for t in first.targets for w in (t.published.warnings if t.published else [])
        )
        ok(site.publish(plain))
        site.plan_status(plain)

    public = site.manifest("1.0.0", "    public: true\n    deprecate_after: 365d\n")
    with rec.during("publish shared"):
        ok(site.publish(public))
        site.plan_status(public)

    encrypted = site.manifest("1.1.0", SHARED + ENCRYPTED)
    with rec.during("publish shared encrypted"):
        site.plan_status(encrypted)
        ok(site.publish(encrypted))
        site.plan_status(encrypted)

    # other content for 1.1.0 (not encrypted: another digest), and RegisterImage fails after the old
    # AMI made way: it is registered again with its launch permissions and deprecation
    moto.fault("RegisterImage", status=400, code="InvalidParameterValue", message="register boom", count=1)
    with rec.during("replace, restored"):
        failed = site.publish(site.manifest("1.1.0"), replace=True)
    (target,) = failed.targets
    assert target.error is not None and "is registered again as" in str(target.error)

    replaced = site.manifest("1.1.0", SHARED + ENCRYPTED + "    volume_type: gp2\n")
    with rec.during("replace shared encrypted"):
        ok(site.publish(replaced, replace=True))
        site.plan_status(replaced)

    s3_import = f"    upload: s3-import\n    s3_bucket: {BUCKET}\n    s3_prefix: {PREFIX}\n" + ENCRYPTED
    with rec.during("s3-import encrypted"):
        # a part S3 refuses: the multipart upload is aborted and the object deleted
        journal = Journal(site.folder / "failing.json")
        journal.update({NONCE_KEY: "0" * 32})
        digest = "f" * 24
        moto.fault(f"PUT /{BUCKET}/{PREFIX}{digest}-{'0' * 12}.raw", status=403, code="AccessDenied", count=1)
        settings = site_settings(site, "1.2.0", s3_import)
        with pytest.raises(CloudError):
            AwsProvider().publish(
                image_info(disk, version="1.2.0", name="demo"),
                settings,
                disk,
                context(site.folder, digest=digest, journal=journal),
            )
        imported = site.manifest("1.2.0", s3_import)
        ok(site.publish(imported))
        site.plan_status(imported)

    # retention: 1.0.0 100 days old, 1.1.0 40 days; deprecate both, then delete 1.0.0 (public)
    now = datetime.now(UTC)
    for version, days in (("1.0.0", 100), ("1.1.0", 40)):
        for region in (HOME, COPY, OPTIONAL):
            for ami in site.amis(version, region):
                moto.backdate(region, ami["ImageId"], created=now - timedelta(days=days))
    policy = "retention: {keep: 1, deprecate_after: 30d, delete_after: 90d}\n"
    current = site.manifest(
        "1.2.0", f"    share_accounts: ['{OTHER}']\n    share_snapshots: true\n" + s3_import, policy
    )
    with rec.during("lifecycle"):
        site.lifecycle(matrix, current)
        deprecated = site.lifecycle(prune, current, apply=True)
        assert {v.version: v.verdict for v in deprecated.targets[0].versions}["1.0.0"] == "deprecate"
        site.clock.offset += timedelta(minutes=10)
        deleted = site.lifecycle(prune, current, apply=True)
        assert {v.version: v.verdict for v in deleted.targets[0].versions}["1.0.0"] == "delete"
        assert not site.amis("1.0.0")
        site.lifecycle(matrix, current)

    # reconcile: a region added (encrypted copies of both versions left), tags and sharing to apply
    later = (
        current.read_text()
        .replace(f"optional_regions: [{OPTIONAL}]", f"optional_regions: [{OPTIONAL}, {LATER}]")
        .replace(f"{OPTIONAL}: '{key(OPTIONAL)}'", f"{OPTIONAL}: '{key(OPTIONAL)}', {LATER}: '{key(LATER)}'")
    )
    current.write_text(later + "    tags: {team: os}\n")
    with rec.during("reconcile encrypted"):
        done = site.lifecycle(reconcile, current)
        copied = [
            line for v in done.targets[0].versions for line in v.done if line.startswith(f"{LATER}: copied")
        ]
        assert len(copied) == 2, [v.done for v in done.targets[0].versions]
        site.lifecycle(matrix, current)


def site_settings(site: Site, version: str, target: str) -> AwsSettings:
    loaded = imgpub.load_manifest(site.manifest(version, target))
    settings = loaded.targets[0]
    assert isinstance(settings, AwsSettings)
    return settings


@pytest.fixture
def site(tmp_path: Path, moto: Moto, disk: DiskImage, recorder: Recorder) -> Site:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "disk.raw").symlink_to(disk.path)
    return Site(folder, moto, recorder)


def test_every_call_is_granted_and_every_grant_is_needed(site: Site, disk: DiskImage) -> None:
    run_everything(site, disk)
    blocks = policies(README.read_text())
    assert set(blocks) == {*(b for names in PHASES.values() for b in names), *CALLER}, (
        "every README policy is one the phases use"
    )
    verdict = check(site.rec.calls, blocks)
    if verdict.ungranted:
        pytest.fail("calls the README's policies do not grant:\n" + "\n".join(verdict.ungranted), False)
    problems = least_privilege(verdict, blocks)
    if problems:
        pytest.fail("grants no call of the run needs alone:\n" + "\n".join(problems), False)
    made = {c.name for c in site.rec.calls}
    assert made == set(ACTIONS), f"table rows no call used: {sorted(set(ACTIONS) - made)}"
    stale = [g for g in ALLOWED if g not in grants(blocks)]
    assert not stale, f"ALLOWED names grants the README no longer has: {stale}"


def test_a_grant_taken_out_of_the_readme_or_a_new_kind_of_call_fails(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check on a plain publish: the README as it is grants it; without CompleteSnapshot it does
    not; a call the table does not know (DescribeRegions, made here on purpose) fails by name."""
    path = site.manifest("1.0.0")
    with site.rec.during("publish"):
        ok(site.publish(path))
    text = README.read_text()
    assert not check(site.rec.calls, policies(text)).ungranted
    cut = text.replace('"ebs:PutSnapshotBlock", "ebs:CompleteSnapshot"]', '"ebs:PutSnapshotBlock"]', 1)
    assert cut != text
    assert any(
        line.startswith("ebs:CompleteSnapshot on arn:aws:ec2:us-east-1::snapshot/snap-")
        for line in check(site.rec.calls, policies(cut)).ungranted
    )

    import imgpub_aws.share as share

    looked = share.current_permissions

    def with_a_new_call(ec2: Any, call: Any, region: str, image_id: str) -> list[dict[str, str]]:
        ec2.describe_regions()
        return looked(ec2, call, region, image_id)

    monkeypatch.setattr(share, "current_permissions", with_a_new_call)
    with site.rec.during("publish"):
        ok(site.publish(path))
    with pytest.raises(AssertionError, match=r"ec2\.DescribeRegions \(publish\) has no mapping"):
        check(site.rec.calls, policies(text))
