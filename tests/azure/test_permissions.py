"""Least privilege, checked against the calls the provider makes: providers/azure/README.md holds one
custom role per command group (`az role definition create` JSON); a representative run of everything
the provider does goes through the stand-ins, every ARM request and blob operation is recorded and
mapped to the permission Azure checks for it (the tables below, from Microsoft's documentation), and
each role must grant every permission its commands used (a) and nothing they did not use (b), except
the commented ALLOWED entries. A call the tables do not know fails the test, so a new kind of call
cannot slip past.

The run (once per module, a few seconds): publish with a managed image and a gallery version
replicated to two regions, customer-managed keys in both, tags, the container created; `--replace`
of an image and of a definition of another generation; a gallery-only version made straight from the
VHD; `upload: managed-disk` (disk, write SAS, revoke, delete), interrupted and resumed, with a
version made from the disk; plan and status of each; then on three lifecycle targets (a version made
from a managed image, from the VHD, from an upload disk) status --all-versions, prune --dry-run,
prune (deprecate, then delete with the leftover blobs and disks, a dead run's disk revoked first),
reconcile --dry-run and reconcile (a new region, the target's tags).

Only the stand-ins' own bookkeeping is left out: the fake ARM keeps upload disks' bytes in Azurite
directly (not through the recording proxy), so every recorded blob request is the provider's.
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from azure.conftest import SIZE, SUBSCRIPTION, WRITES, Stack, StubCredential
from fakes.arm import Call, FakeArm
from fakes.azurite import ACCOUNT, Recorded, StorageProxy, connection_string
from imaging import sparse_raw
from imgpub.disk import DiskImage, open_image
from imgpub.errors import CloudError
from imgpub.lifecycle import matrix, prune, reconcile
from imgpub.provider import ImageInfo
from imgpub.retry import FAST
from imgpub_azure import AzureProvider, AzureSettings

README = Path(__file__).resolve().parents[2] / "providers/azure/README.md"
C = "Microsoft.Compute"
SA = "Microsoft.Storage/storageAccounts"
CONTAINERS = f"{SA}/blobServices/containers"
BLOBS = f"{CONTAINERS}/blobs"
DES = f"{C}/diskEncryptionSets"

# ---- the command groups: which recorded phases each README role must cover -----------------------

READS = {"plan", "status", "status --all-versions", "prune --dry-run", "reconcile --dry-run"}
LIFECYCLE = {"status --all-versions", "prune --dry-run", "prune", "reconcile --dry-run", "reconcile"}
GROUPS: dict[str, set[str]] = {
    # publish also runs prune (retention.on_publish), so the publisher role covers every phase
    "imgpub publisher": {"publish", *READS, *LIFECYCLE},
    "imgpub lifecycle": LIFECYCLE,
    "imgpub reader": READS,
}

# ---- the mapping: each call -> the permission Azure checks -------------------------------------------
# ARM: method (or "list", a GET of a collection; "poll", an operation's status) and resource type ->
# Microsoft.Compute's operation (learn.microsoft.com, "Azure permissions for Compute"). ARM checks
# `<type>/read` for a GET or list, `/write` for PUT and PATCH, `/delete`, `/<action>/action` for POST.

ARM: dict[tuple[str, str], str] = {
    ("GET", f"{C}/images"): f"{C}/images/read",
    ("list", f"{C}/images"): f"{C}/images/read",
    ("PUT", f"{C}/images"): f"{C}/images/write",
    ("PATCH", f"{C}/images"): f"{C}/images/write",
    ("DELETE", f"{C}/images"): f"{C}/images/delete",
    ("GET", f"{C}/galleries"): f"{C}/galleries/read",
    ("PUT", f"{C}/galleries"): f"{C}/galleries/write",
    ("GET", f"{C}/galleries/images"): f"{C}/galleries/images/read",
    ("PUT", f"{C}/galleries/images"): f"{C}/galleries/images/write",
    ("DELETE", f"{C}/galleries/images"): f"{C}/galleries/images/delete",
    ("GET", f"{C}/galleries/images/versions"): f"{C}/galleries/images/versions/read",
    ("list", f"{C}/galleries/images/versions"): f"{C}/galleries/images/versions/read",
    ("PUT", f"{C}/galleries/images/versions"): f"{C}/galleries/images/versions/write",
    ("PATCH", f"{C}/galleries/images/versions"): f"{C}/galleries/images/versions/write",
    ("DELETE", f"{C}/galleries/images/versions"): f"{C}/galleries/images/versions/delete",
    ("GET", f"{C}/disks"): f"{C}/disks/read",
    ("list", f"{C}/disks"): f"{C}/disks/read",
    ("PUT", f"{C}/disks"): f"{C}/disks/write",
    ("DELETE", f"{C}/disks"): f"{C}/disks/delete",
    ("POST beginGetAccess", f"{C}/disks"): f"{C}/disks/beginGetAccess/action",
    ("POST endGetAccess", f"{C}/disks"): f"{C}/disks/endGetAccess/action",
    # Long-running operations are polled where the resource provider says (Azure-AsyncOperation,
    # Location): managed images at locations/operations, disks (create, grant, revoke, delete) at
    # locations/diskOperations, Compute Gallery resources at locations/capsOperations (the built-in
    # "Compute Gallery Artifacts Publisher" role grants that one for galleries/*). The fake ARM
    # answers them all under locations/operations (or its own /fake/operations Location): the poll
    # is mapped by the resource its operation is for.
    ("poll", f"{C}/images"): f"{C}/locations/operations/read",
    ("poll", f"{C}/disks"): f"{C}/locations/diskOperations/read",
    ("poll", f"{C}/galleries"): f"{C}/locations/capsOperations/read",
    ("poll", f"{C}/galleries/images"): f"{C}/locations/capsOperations/read",
    ("poll", f"{C}/galleries/images/versions"): f"{C}/locations/capsOperations/read",
}

# Linked access: a resource ID in a PUT or PATCH body makes Azure check a permission on that resource
# too. (method, resource type, JSON path of the ID, type of the linked resource) -> what is checked.
# Every ARM ID in a body must match a row, or the call is unmapped.
_VERSION_SOURCE = "properties.storageProfile.osDiskImage.source"
_REGION_SET = "properties.publishingProfile.targetRegions[].encryption.osDiskImage.diskEncryptionSetId"
LINKED: dict[tuple[str, str, str, str], tuple[str, ...]] = {
    # An encryption set a resource links: Microsoft.Compute/diskEncryptionSets/read on the set
    # (LinkedAuthorizationFailed names it otherwise), on every write that carries it.
    ("PUT", f"{C}/images", "properties.storageProfile.osDisk.diskEncryptionSet.id", DES): (f"{DES}/read",),
    ("PUT", f"{C}/disks", "properties.encryption.diskEncryptionSetId", DES): (f"{DES}/read",),
    ("PUT", f"{C}/galleries/images/versions", _REGION_SET, DES): (f"{DES}/read",),
    ("PATCH", f"{C}/galleries/images/versions", _REGION_SET, DES): (f"{DES}/read",),
    # A gallery version's source ("What RBAC permissions are required to create an ACG image",
    # learn.microsoft.com/azure/virtual-machines/shared-image-galleries): read on a managed image,
    # write on a disk, listKeys and write on the storage account of a VHD.
    ("PUT", f"{C}/galleries/images/versions", "properties.storageProfile.source.id", f"{C}/images"): (
        f"{C}/images/read",
    ),
    ("PUT", f"{C}/galleries/images/versions", f"{_VERSION_SOURCE}.id", f"{C}/disks"): (f"{C}/disks/write",),
    ("PUT", f"{C}/galleries/images/versions", f"{_VERSION_SOURCE}.storageAccountId", SA): (
        f"{SA}/listKeys/action",
        f"{SA}/write",
    ),
    # A version's PATCH resends its storage profile unchanged (the update requires it); the source
    # check is documented for creating a version, whose source is routinely gone by a later update
    # (the upload disk is deleted after publish), so none is mapped here.
    ("PATCH", f"{C}/galleries/images/versions", "properties.storageProfile.source.id", f"{C}/images"): (),
    ("PATCH", f"{C}/galleries/images/versions", f"{_VERSION_SOURCE}.id", f"{C}/disks"): (),
    ("PATCH", f"{C}/galleries/images/versions", f"{_VERSION_SOURCE}.storageAccountId", SA): (),
    # A managed image made from an upload disk: read on the disk (nothing is documented for it; the
    # image only reads the disk, and the role holds disks/read for the upload anyway). One made from
    # the page blob names it by URL, not by ID: Compute reads the blob itself.
    ("PUT", f"{C}/images", "properties.storageProfile.osDisk.managedDisk.id", f"{C}/disks"): (
        f"{C}/disks/read",
    ),
}

# Blob operations (learn.microsoft.com, "Authorize with Microsoft Entra ID": permissions for calling
# blob operations): (level, method, comp) -> the Action or DataAction checked when the upload
# authenticates with the Entra identity. Lease Blob, Set Blob Metadata and Put Page are blobs/write;
# Put Blob of a new blob is blobs/write (or blobs/add/action, which the role does not need).
BLOB: dict[tuple[str, str, str], str] = {
    ("container", "GET", ""): f"{CONTAINERS}/read",  # Get Container Properties (plan: does it exist)
    ("container", "PUT", ""): f"{CONTAINERS}/write",  # Create Container
    ("container", "GET", "list"): f"{BLOBS}/read",  # List Blobs (leftovers, with metadata)
    ("blob", "HEAD", ""): f"{BLOBS}/read",  # Get Blob Properties
    ("blob", "GET", "pagelist"): f"{BLOBS}/read",  # Get Page Ranges (resume)
    ("blob", "PUT", ""): f"{BLOBS}/write",  # Put Blob (the page blob, If-None-Match: *)
    ("blob", "PUT", "page"): f"{BLOBS}/write",  # Put Page
    ("blob", "PUT", "metadata"): f"{BLOBS}/write",  # Set Blob Metadata (the upload is complete)
    ("blob", "PUT", "lease"): f"{BLOBS}/write",  # Lease Blob: acquire, renew, release
    ("blob", "DELETE", ""): f"{BLOBS}/delete",  # Delete Blob
}
SAS_PAGES: set[tuple[str, str, str]] = {("blob", "PUT", "page"), ("blob", "GET", "pagelist")}
"""What the provider may send to an upload disk's write SAS (authorized by the SAS that
disks/beginGetAccess/action returned: no role is checked)."""

# Granted but not used by any call of the run: none. A permission the stand-ins cannot exercise
# goes here with why (role name -> permission -> reason); the test fails when an entry is no longer
# granted or has become used, so the list cannot go stale.
ALLOWED: dict[str, dict[str, str]] = {}

# Built-in roles the README names as covering the publisher role (learn.microsoft.com, "Azure built-in
# roles"): Contributor on the resource group, Storage Blob Data Contributor on the account.
BUILT_IN: dict[str, dict[str, list[str]]] = {
    "Contributor": {
        "Actions": ["*"],
        "NotActions": [
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ],
        "DataActions": [],
    },
    "Storage Blob Data Contributor": {
        "Actions": [
            f"{CONTAINERS}/delete",
            f"{CONTAINERS}/read",
            f"{CONTAINERS}/write",
            f"{SA}/blobServices/generateUserDelegationKey/action",
        ],
        "NotActions": [],
        "DataActions": [f"{BLOBS}/delete", f"{BLOBS}/read", f"{BLOBS}/move/action", f"{BLOBS}/write"],
    },
}

NOT_GRANTED_BUT_NAMED = {f"{C}/galleries/delete"}
"""Permissions the README names on purpose outside the roles (the live test deletes its gallery)."""


class Unmapped(Exception):
    """A call the tables above do not know: map it (from Azure's documentation) and grant it."""


# ---- README roles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    name: str
    actions: frozenset[str]
    data_actions: frozenset[str]
    doc: dict[str, Any]

    def grants(self) -> set[Perm]:
        return {Perm(a, False) for a in self.actions} | {Perm(a, True) for a in self.data_actions}


@dataclass(frozen=True)
class Perm:
    """A permission as a role lists it: an Action, or a DataAction (blob data). Compared as Azure
    compares operations: case-insensitively."""

    name: str
    data: bool = False

    @property
    def key(self) -> tuple[str, bool]:
        return self.name.lower(), self.data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Perm) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"{self.name} ({'DataAction' if self.data else 'Action'})"


ROLE_KEYS = {"Name", "IsCustom", "Description", "AssignableScopes"} | {
    f"{not_}{kind}" for not_ in ("", "Not") for kind in ("Actions", "DataActions")
}


def readme_roles(text: str | None = None) -> dict[str, Role]:
    """Every custom role in the README: a ```json block with Name and Actions."""
    text = README.read_text() if text is None else text
    roles: dict[str, Role] = {}
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        doc = json.loads(block)
        if not isinstance(doc, dict) or "Actions" not in doc:
            continue
        assert set(doc) <= ROLE_KEYS, f"{doc.get('Name')}: unknown keys {set(doc) - ROLE_KEYS}"
        assert doc["Name"] not in roles, f"role {doc['Name']} twice"
        for key in ("Actions", "DataActions"):
            names = doc.get(key, [])
            assert isinstance(names, list) and all(isinstance(n, str) for n in names), (doc["Name"], key)
            assert len({n.lower() for n in names}) == len(names), f"{doc['Name']}: {key} repeats one"
            assert not [n for n in names if "*" in n], f"{doc['Name']}: a wildcard grants more than is used"
        assert doc.get("IsCustom") is True and doc.get("AssignableScopes"), doc["Name"]
        roles[doc["Name"]] = Role(
            doc["Name"], frozenset(doc["Actions"]), frozenset(doc.get("DataActions", [])), doc
        )
    return roles


# ---- mapping the recorded calls ----------------------------------------------------------------------

_RESOURCE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/(?P<rest>.+)$", re.I
)
_POLL = re.compile(
    r"^(?:/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations|/fake/operations)"
    r"/(?P<id>[^/]+)$",
    re.I,
)
_ARM_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/(?P<ns>[^/]+)/(?P<rest>.+)$", re.I
)


def _type(segments: list[str]) -> str:
    """The resource type of `a/x/b/y` segments: Microsoft.Compute/a/b."""
    return f"{C}/" + "/".join(segments[0::2])


def _canonical(rtype: str) -> str:
    known = {t.lower(): t for _, t in ARM}
    return known.get(rtype.lower(), rtype)


def arm_kind(call: Call, operations: dict[str, Any]) -> tuple[str, str]:
    """(verb, resource type) of an ARM request."""
    if match := _POLL.match(call.path):
        op = operations.get(match["id"])
        if op is None or not op.path:
            raise Unmapped(f"{call.method} {call.path}: an operation of no known resource")
        rest = _RESOURCE.match(op.path)
        assert rest is not None, op.path
        return "poll", _canonical(_type(rest["rest"].split("/")))
    match = _RESOURCE.match(call.path)
    if match is None:
        raise Unmapped(f"{call.method} {call.path}: not a Microsoft.Compute resource of a resource group")
    segments = match["rest"].split("/")
    if len(segments) % 2 == 0:
        return call.method, _canonical(_type(segments))
    if call.method == "GET":
        return "list", _canonical(_type([*segments, "x"]))
    return f"{call.method} {segments[-1]}", _canonical(_type(segments[:-1]))


def _ids(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, value) of every ARM resource ID in a body."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _ids(value, f"{path}.{key}" if path else key)
    elif isinstance(doc, list):
        for item in doc:
            yield from _ids(item, f"{path}[]")
    elif isinstance(doc, str) and _ARM_ID.match(doc):
        yield path, doc


def _linked_type(arm_id: str) -> str:
    match = _ARM_ID.match(arm_id)
    assert match is not None
    return f"{match['ns']}/" + "/".join(match["rest"].split("/")[0::2])


def arm_permissions(call: Call, operations: dict[str, Any]) -> set[Perm]:
    verb, rtype = arm_kind(call, operations)
    permission = next((p for (v, t), p in ARM.items() if v.lower() == verb.lower() and t == rtype), None)
    if permission is None:
        raise Unmapped(f"{call.method} {call.path}: no row for ({verb!r}, {rtype!r})")
    found = {Perm(permission)}
    for path, arm_id in _ids(call.body):
        key = (call.method, rtype, path, _linked_type(arm_id))
        linked = next(
            (v for k, v in LINKED.items() if [x.lower() for x in k] == [x.lower() for x in key]), None
        )
        if linked is None:
            raise Unmapped(f"{call.method} {call.path}: links {arm_id} at {path}, no row for {key}")
        found |= {Perm(p) for p in linked}
    return found


def blob_kind(rec: Recorded) -> tuple[str, str, str]:
    """(level, method, comp) of a blob service request: level 'container' or 'blob'."""
    query = dict(parse_qsl(rec.query))
    parts = rec.path.strip("/").split("/", 2)
    if len(parts) < 2 or parts[0] != ACCOUNT:
        raise Unmapped(f"{rec.method} {rec.path}?{rec.query}: not a container or blob of {ACCOUNT}")
    level = "blob" if len(parts) == 3 else "container"
    if level == "container" and query.get("restype") != "container":
        raise Unmapped(f"{rec.method} {rec.path}?{rec.query}: an account-level operation")
    return level, rec.method, query.get("comp", "")


def blob_permissions(rec: Recorded, disk_container: str) -> set[Perm]:
    kind = blob_kind(rec)
    sas = "sig" in dict(parse_qsl(rec.query))
    in_disk = rec.path.strip("/").split("/")[1] == disk_container
    if sas or in_disk:
        if not (sas and in_disk and kind in SAS_PAGES):
            raise Unmapped(f"{rec.method} {rec.path}?{rec.query}: not an upload disk's write SAS page")
        return set()  # authorized by the SAS itself (disks/beginGetAccess/action gave it)
    if kind not in BLOB:
        raise Unmapped(f"{rec.method} {rec.path}?{rec.query}: no row for {kind}")
    permission = BLOB[kind]
    return {Perm(permission, data=permission.startswith(BLOBS + "/"))}


# ---- the run -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    arm: list[Call] = field(default_factory=list)
    storage: list[Recorded] = field(default_factory=list)


@dataclass
class Run:
    arm: FakeArm
    phases: dict[str, Phase]

    def used(self, phases: set[str]) -> dict[Perm, str]:
        """Every permission the calls of `phases` need, with the first call that needs it."""
        out: dict[Perm, str] = {}
        for name in sorted(phases):
            phase = self.phases[name]
            for call in phase.arm:
                for perm in arm_permissions(call, self.arm.operations.all):
                    out.setdefault(perm, f"{name}: {call.method} {call.path}")
            for rec in phase.storage:
                for perm in blob_permissions(rec, self.arm.disk_container):
                    out.setdefault(perm, f"{name}: {rec.method} {rec.path}?{rec.query}")
        return out


NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def run(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from imgpub import plugins

    tmp = tmp_path_factory.mktemp("permissions")
    raw = sparse_raw(tmp / "disk.raw", SIZE, WRITES)
    proxy = StorageProxy(azurite)
    credential = StubCredential()

    class StubbedAzure(AzureProvider):
        def __init__(self) -> None:
            super().__init__(credential=credential)

    # The fake keeps the upload disks' bytes in Azurite directly; clients reach them through the proxy.
    with (
        FakeArm(connection_string(azurite), tmp / "ca", polls=2) as arm,
        pytest.MonkeyPatch.context() as env,
        open_image(raw, "raw") as disk,
    ):
        arm.sas_endpoint = proxy.url
        env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url))
        env.setenv("REQUESTS_CA_BUNDLE", str(arm.ca_path))
        env.setenv("IMGPUB_AZURE_POLLING_INTERVAL", "0.01")
        plugins.register(StubbedAzure)
        try:
            stack = Stack(arm, proxy, f"c{uuid.uuid4().hex[:20]}", tmp, credential)
            yield drive(stack, disk)
        finally:
            plugins.unregister("azure")
            proxy.close()


def drive(stack: Stack, disk: DiskImage) -> Run:
    arm, proxy = stack.arm, stack.proxy
    phases: dict[str, Phase] = {}

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        arm_at, storage_at = len(arm.calls), len(proxy.requests)
        yield
        record = phases.setdefault(name, Phase())
        record.arm.extend(arm.calls[arm_at:])
        record.storage.extend(proxy.requests[storage_at:])

    def info(**kw: Any) -> ImageInfo:
        values: dict[str, Any] = {"name": "golden", "version": "1.2.3", "arch": "x86_64", "boot": "uefi"}
        values.update(virtual_size=disk.virtual_size, content_digest="content-1")
        return ImageInfo(**{**values, **kw})

    provider = stack.provider()

    def publish(settings: AzureSettings, image: ImageInfo, replace: bool = False, state: str = "s") -> None:
        assert not [p for p in provider.check(image, settings) if not p.warning]
        ctx = stack.context(settings, image, state=state, replace=replace)
        with phase("plan"):
            provider.plan(image, settings, ctx)
        with phase("publish"):
            assert provider.publish(image, settings, disk, ctx).artifacts
        with phase("status"):
            assert not provider.status(image, settings, stack.context(settings, image, state=state)).drift

    weu = arm.add_disk_encryption_set("des-weu", "westeurope")
    neu = arm.add_disk_encryption_set("des-neu", "northeurope")
    regions = [{"name": "westeurope"}, {"name": "northeurope", "disk_encryption_set": neu}]

    # a managed image and a version made from it, both regions encrypted, the container created
    gallery = {"name": "g1", "target_regions": regions}
    both = stack.settings(disk_encryption_set=weu, gallery=gallery, tags={"team": "platform"})
    publish(both, info())
    # --replace: another image under the same version (the image and the version deleted, made again)
    publish(both, info(content_digest="content-2"), replace=True, state="replace")
    # a gallery-only version straight from the VHD (its storage account linked)
    vhd = stack.settings(managed_image=False, gallery={"name": "g2", "image_definition": "vhd"})
    publish(vhd, info())
    # --replace of a definition of another generation (it holds no other version: deleted, made again)
    gen = stack.settings(managed_image=False, gallery={"name": "g1", "image_definition": "gen"})
    publish(gen, info(boot="bios"), state="bios")
    publish(gen, info(content_digest="content-uefi"), replace=True, state="uefi")
    assert arm.count("DELETE", r"/galleries/g1/images/gen$") == 1
    # upload: managed-disk, encrypted; a definition with a security type takes the version from the disk
    # interrupted after two pages, then resumed (the disk's pages listed through its write SAS)
    upload = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}
    trusted = {"name": "g3", "security_type": "TrustedLaunchSupported"}
    by_disk = stack.settings(
        name="disk",
        resource_group="rgdisk",
        disk_encryption_set=weu,
        gallery=trusted,
        concurrency=1,
        **upload,
    )
    proxy.fail("PUT", r"comp=page.*sig=|sig=.*comp=page", 500, times=1000, after=2, code="InternalError")
    with phase("publish"), pytest.raises(CloudError, match=r"page\(s\) failed"):
        provider.publish(info(), by_disk, disk, stack.context(by_disk, info(), state="disk"))
    proxy.rules.clear()
    publish(by_disk, info(), state="disk")
    version = arm.get("galleries/g3/images/golden/versions/1.2.3")
    assert (
        version is not None
        and "/disks/" in version["properties"]["storageProfile"]["osDiskImage"]["source"]["id"]
    )

    lifecycle(stack, disk, info, phase, weu)
    return Run(arm, phases)


def lifecycle(stack: Stack, disk: DiskImage, info: Callable[..., ImageInfo], phase: Any, des: str) -> None:
    """Three targets of their own (resource groups, containers), one per source of a gallery version:
    a managed image (its region encrypted), the VHD (gallery only), an upload disk (a definition with
    a security type); 1.0.0 old enough to go, with its upload left behind; 1.1.0 current."""
    arm, provider = stack.arm, stack.provider()
    encrypted = {"name": "g4", "target_regions": [{"name": "westeurope", "disk_encryption_set": des}]}
    upload = {"upload": "managed-disk", "storage_account": None, "blob_endpoint": None}
    trusted = {"security_type": "TrustedLaunchSupported"}
    targets: dict[str, dict[str, Any]] = {
        "image": {"resource_group": "rglife", "gallery": encrypted},
        "vhd": {"resource_group": "rglifevhd", "managed_image": False, "gallery": {"name": "g4"}},
        "disk": {"resource_group": "rglifedisk", "gallery": {**trusted, "name": "g4"}},
    }
    targets["image"]["container"], targets["vhd"]["container"] = (f"c{uuid.uuid4().hex[:20]}" for _ in "ab")
    targets["disk"].update(upload)
    for name, target in targets.items():
        for version in ("1.0.0", "1.1.0"):
            settings = stack.settings(name=name, **target, keep_upload=version == "1.0.0")
            image = info(version=version, content_digest=f"content-{version}")
            with phase("publish"):
                ctx = stack.context(settings, image, state=f"life-{name}-{version}")
                provider.publish(image, settings, disk, ctx)
    for rest in ("galleries/g4/images/golden/versions/1.0.0", "images/golden-1.0.0"):
        for found in [r for k, r in arm.resources.items() if k.endswith("/" + rest)]:
            found["_created"] = (NOW - timedelta(days=200)).isoformat()
    # a killed run's upload disk, its write SAS long run out: revoked, then deleted by the next prune
    (left,) = [r for k, r in arm.resources.items() if "/disks/golden-1.0.0-upload-" in k]
    dead = dict(
        left, name="golden-0.4.0-upload-x", id=left["id"].replace(left["name"], "golden-0.4.0-upload-x")
    )
    dead["tags"] = {**left["tags"], "imgpub:version": "0.4.0"}
    dead["properties"] = {**left["properties"], "diskState": "ActiveUpload"}
    dead["_created"] = (NOW - timedelta(days=2)).isoformat()
    arm.resources[dead["id"].lower()] = dead

    def manifest(file: str, **image_target: Any) -> Path:
        docs = []
        for name, target in targets.items():
            settings = stack.settings(name=name, **{**target, **(image_target if name == "image" else {})})
            dumped = settings.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            docs.append({"provider": "azure", **dumped})
        image = {"name": "golden", "version": "1.1.0", "source": "disk.raw", "format": "raw"}
        doc = {
            "image": {**image, "boot": "uefi", "boot_check": "warn"},  # the test disk has no partitions
            "retention": {"keep": 0, "deprecate_after": "30d", "delete_after": "90d"},
            "targets": docs,
        }
        path: Path = stack.tmp / file
        path.write_text(json.dumps(doc))
        return path

    policy, state = manifest("prune.yaml"), stack.tmp / "prune"
    with phase("status --all-versions"):
        assert not matrix(policy, now=lambda: NOW, retry=FAST).in_sync
    with phase("prune --dry-run"):
        assert prune(policy, apply=False, state_dir=state, now=lambda: NOW, retry=FAST).exit_code == 0
    for _ in range(2):  # deprecate, then delete
        with phase("prune"):
            done = prune(policy, apply=True, state_dir=state, now=lambda: NOW, retry=FAST)
            assert done.exit_code == 0, [
                (t.target, t.error, [v.error for v in t.versions]) for t in done.targets
            ]
    assert not [k for k in arm.resources if "golden-1.0.0" in k or "/versions/1.0.0" in k or "0.4.0" in k]
    assert arm.count("POST", r"/disks/golden-0\.4\.0-upload-x/endGetAccess$") == 1
    regions = [*encrypted["target_regions"], {"name": "northeurope"}]
    wider = manifest(
        "reconcile.yaml", tags={"team": "platform"}, gallery={**encrypted, "target_regions": regions}
    )
    with phase("reconcile --dry-run"):
        reconcile(wider, apply=False, now=lambda: NOW, retry=FAST)
    with phase("reconcile"):
        assert reconcile(wider, now=lambda: NOW, retry=FAST).exit_code == 0
    path = "/rglife/providers/microsoft.compute/galleries/g4/images/golden/versions/1.1.0"
    (version,) = [r for k, r in arm.resources.items() if k.endswith(path)]
    replicated = version["properties"]["publishingProfile"]["targetRegions"]
    assert [r["name"] for r in replicated] == ["westeurope", "northeurope"]


# ---- the checks -------------------------------------------------------------------------------------


def test_the_readme_holds_one_role_per_command_group():
    roles = readme_roles()
    assert set(roles) == set(GROUPS)
    for role in roles.values():
        assert role.doc["AssignableScopes"] == [
            "/subscriptions/<subscription id>/resourceGroups/<resource group>"
        ]
    reads = roles["imgpub reader"].grants()
    assert all(p.name.endswith("/read") for p in reads), "the reader role only reads"
    assert roles["imgpub lifecycle"].grants() <= roles["imgpub publisher"].grants(), (
        "publish prunes too (retention.on_publish)"
    )


def test_every_call_is_mapped(run):
    for name, phase in run.phases.items():
        assert phase.arm, name
        for call in phase.arm:
            arm_permissions(call, run.arm.operations.all)
        for rec in phase.storage:
            blob_permissions(rec, run.arm.disk_container)


def missing(role: Role, used: dict[Perm, str]) -> list[str]:
    grants = role.grants()
    return sorted(f"{perm} for {why}" for perm, why in used.items() if perm not in grants)


def unused(role: Role, used: dict[Perm, str]) -> list[str]:
    allowed = {Perm(p, p.startswith(BLOBS + "/")) for p in ALLOWED.get(role.name, {})}
    return sorted(str(p) for p in role.grants() - set(used) - allowed)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_role_grants_every_permission_its_commands_use(run, group):
    assert missing(readme_roles()[group], run.used(GROUPS[group])) == []


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_role_grants_nothing_its_commands_do_not_use(run, group):
    assert unused(readme_roles()[group], run.used(GROUPS[group])) == []


def test_the_allow_list_is_granted_and_still_unused(run):
    roles = readme_roles()
    for name, entries in ALLOWED.items():
        used = run.used(GROUPS[name])
        for permission, why in entries.items():
            perm = Perm(permission, permission.startswith(BLOBS + "/"))
            assert why and perm in roles[name].grants(), f"{name}: {permission} is no longer granted"
            assert perm not in used, f"{name}: {permission} is used now ({used[perm]}): drop it from ALLOWED"


def without(text: str, group: str, perm: Perm) -> str:
    """The README with `perm` taken out of `group`'s block."""
    for block in re.finditer(r"```json\n(.*?)```", text, re.S):
        doc = json.loads(block[1])
        if isinstance(doc, dict) and doc.get("Name") == group:
            key = "DataActions" if perm.data else "Actions"
            doc[key] = [n for n in doc[key] if n.lower() != perm.name.lower()]
            return text[: block.start(1)] + json.dumps(doc, indent=2) + "\n" + text[block.end(1) :]
    raise AssertionError(f"no block for {group}")


def test_a_permission_removed_from_the_readme_fails(run):
    """Each permission of each role, taken out of the README in turn, is found missing."""
    text = README.read_text()
    for group, role in readme_roles().items():
        used = run.used(GROUPS[group])
        for perm in role.grants():
            weaker = readme_roles(without(text, group, perm))
            assert weaker[group].grants() == role.grants() - {perm}
            assert missing(weaker[group], used), f"{group} without {perm} would still pass"


def test_a_permission_added_to_the_readme_fails(run):
    """One more permission in any role, used by none of its commands, is found unused."""
    text = README.read_text()
    extra = Perm(f"{C}/snapshots/read")
    for group in GROUPS:
        block = next(b for b in re.finditer(r"```json\n(.*?)```", text, re.S) if f'"{group}"' in b[1])
        doc = json.loads(block[1])
        doc["Actions"].append(extra.name)
        wider = readme_roles(text[: block.start(1)] + json.dumps(doc) + "\n" + text[block.end(1) :])
        assert unused(wider[group], run.used(GROUPS[group])) == [str(extra)]


RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers"
VM = f"{RG}/{C}/virtualMachines/vm"


@pytest.mark.parametrize(
    "call",
    [
        Call("PUT", f"{RG}/{C}/snapshots/s1", {}, None),
        Call("POST", f"{RG}/{C}/images/i/export", {}, None),
        Call("GET", f"{RG}/{C}/galleries", {}, None),
        Call("PUT", f"{RG}/{C}/images/i", {}, {"properties": {"sourceVirtualMachine": {"id": VM}}}),
        Call("GET", f"/subscriptions/{SUBSCRIPTION}/providers/{SA}", {}, None),
    ],
    ids=["new-resource-type", "new-action", "new-list", "new-linked-resource", "another-provider"],
)
def test_a_new_kind_of_arm_call_is_unmapped(run, call):
    with pytest.raises(Unmapped):
        arm_permissions(call, run.arm.operations.all)


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("PUT", f"/{ACCOUNT}/c/b", "comp=block&blockid=AA"),
        ("GET", f"/{ACCOUNT}/c/b", ""),
        ("PUT", f"/{ACCOUNT}/c/b", "comp=tags"),
        ("DELETE", f"/{ACCOUNT}/c", "restype=container"),
        ("GET", f"/{ACCOUNT}/", "comp=list"),
        ("PUT", f"/{ACCOUNT}/c/b", "comp=metadata&sig=x"),
    ],
    ids=["put-block", "get-blob", "blob-tags", "delete-container", "list-containers", "sas-outside-a-disk"],
)
def test_a_new_kind_of_blob_call_is_unmapped(run, method, path, query):
    with pytest.raises(Unmapped):
        blob_permissions(Recorded(method, path, query, None, 0), run.arm.disk_container)


def covered(perm: Perm, role: dict[str, list[str]]) -> bool:
    def match(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(perm.name.lower(), p.lower()) for p in patterns)

    if perm.data:
        return match(role["DataActions"])
    return match(role["Actions"]) and not match(role["NotActions"])


def test_the_built_in_roles_the_readme_names_cover_the_publisher_role():
    text = README.read_text()
    assert "**Contributor** on the resource group" in text and "**Storage Blob Data Contributor**" in text
    publisher = readme_roles()["imgpub publisher"]
    assert [str(p) for p in publisher.grants() if not any(covered(p, r) for r in BUILT_IN.values())] == []


def test_the_prose_names_only_granted_permissions():
    """The explanations name permissions by their ends (`images/read`, `disks/endGetAccess/action`):
    each must be the end of one a role grants, so an explanation cannot outlive its permission."""
    text = README.read_text()
    granted = {p.name.lower() for role in readme_roles().values() for p in role.grants()}
    tokens = re.findall(r"`([A-Za-z.]+(?:/[A-Za-z.*]+)+)`", text)
    named = {t for t in tokens if t.rsplit("/", 1)[1].lower() in ("read", "write", "delete", "action", "*")}
    assert len(named) > 10, "the explanations name permissions"
    for fragment in sorted(named - NOT_GRANTED_BUT_NAMED):
        end = fragment.lower()
        assert any(g == end or fnmatch.fnmatchcase(g, "*/" + end) for g in granted), (
            f"the README explains `{fragment}`, which no role grants"
        )


def test_every_row_of_the_tables_is_a_call_the_run_makes(run):
    """The tables describe what the provider does: a row no call of the run needs is stale."""
    arm_rows: set[tuple[str, str]] = set()
    linked: set[tuple[str, str, str, str]] = set()
    blob_rows: set[tuple[str, str, str]] = set()
    sas_rows: set[tuple[str, str, str]] = set()
    for phase in run.phases.values():
        for call in phase.arm:
            verb, rtype = arm_kind(call, run.arm.operations.all)
            arm_rows.add((verb.lower(), rtype))
            linked |= {(call.method, rtype, path, _linked_type(i)) for path, i in _ids(call.body)}
        for rec in phase.storage:
            (sas_rows if "sig" in dict(parse_qsl(rec.query)) else blob_rows).add(blob_kind(rec))
    assert {(v.lower(), t) for v, t in ARM} - arm_rows == set()
    assert set(LINKED) - linked == set()
    assert set(BLOB) - blob_rows == set()
    assert SAS_PAGES - sas_rows == set()
