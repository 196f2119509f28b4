"""Least privilege, checked: the custom roles in providers/gcp/README.md against the calls the provider
makes.

The README's `## Least privilege` holds one gcloud role file (a fenced yaml block with
`includedPermissions`) per command group and resource; they are the only list of what imgpub needs.
One representative run drives every command against the stand-ins (plan; publish with a family,
sharing, CMEK, keep_upload, deprecate_previous, a stale object of the same name replaced, --replace and
a label drift repaired; status; status --all-versions; reconcile; prune deprecating and deleting, with
a lost reply on an object delete). The GCE fake (`state.requests`) and the GCS contract proxy
(`calls`) record each call with the API method it makes; COMPUTE and STORAGE below map each method to
the permission GCE or GCS checks for it, from Google's documentation. Then, per command group:

  (a) every permission a call needs is granted by the group's roles, unless NOT_GRANTED says why the
      caller goes on without it (the stand-ins then refuse that call with 403 and the run must pass);
  (b) every permission the group's roles grant is needed by some call (least privilege), unless
      UNEXERCISED says why the stand-ins cannot make the call that needs it;
  (c) a call the table does not know fails, so a new kind of call cannot slip past.

The meta-tests at the end take a permission out of the README text one at a time, and feed the
checker calls it has not seen (one made by a patched provider through the stand-ins): each must fail.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import imgpub
from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy, Rule
from gcp.stack import PROJECT
from imgpub.lifecycle import matrix, prune, reconcile
from imgpub.retry import FAST

README = Path(__file__).resolve().parents[2] / "providers" / "gcp" / "README.md"
NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)
"""The lifecycle commands' clock: the fake GCE dates its images in 2030, so every version is old."""
KEY = f"projects/{PROJECT}/locations/us/keyRings/images/cryptoKeys/golden"

GROUPS: dict[str, tuple[str, ...]] = {
    "publish": ("imgpubPublish", "imgpubPublishUploads"),
    "lifecycle": ("imgpubLifecycle", "imgpubLifecycleUploads"),
}
"""Which README roles an identity running each command group holds (project role, bucket role)."""
COMMANDS: dict[str, str] = {
    "plan": "publish",
    "publish": "publish",
    "status": "publish",
    "status --all-versions": "lifecycle",
    "reconcile": "lifecycle",
    "prune": "lifecycle",
}
READ_ONLY = ("plan", "status", "status --all-versions")
"""Commands that change nothing: they may use only read permissions."""
READ = re.compile(r"\.(get|list|getIamPolicy)$")

# -- the permission each call needs ------------------------------------------------------------------
# Compute Engine API v1 (https://cloud.google.com/compute/docs/reference/rest/v1/images/<method>, "IAM
# Permissions"; https://cloud.google.com/compute/docs/access/iam-permissions).
COMPUTE: dict[str, tuple[str, ...]] = {
    "images.list": ("compute.images.list",),
    "images.get": ("compute.images.get",),
    # + storage.objects.get on rawDisk.source (GCE reads the tarball with the caller's permissions: see
    # insert_extras). imageEncryptionKey.kmsKeyName needs nothing of the caller: the Compute Engine
    # service agent uses the key (README). licenses are checked on the license's own project, outside
    # these roles (README).
    "images.insert": ("compute.images.create",),
    "images.delete": ("compute.images.delete",),
    "images.deprecate": ("compute.images.deprecate",),
    "images.setLabels": ("compute.images.setLabels",),
    "images.getIamPolicy": ("compute.images.getIamPolicy",),
    "images.setIamPolicy": ("compute.images.setIamPolicy",),
    "globalOperations.wait": ("compute.globalOperations.get",),  # wait has no permission of its own
}
# Cloud Storage JSON API (https://cloud.google.com/storage/docs/access-control/iam-json).
STORAGE: dict[str, tuple[str, ...]] = {
    # A resumable upload's start; the session's PUTs (`upload_id`) are authorised by that start and
    # need nothing more. Replacing an object that exists (ifGenerationMatch other than 0, or none)
    # also needs storage.objects.delete: GCS overwrites only with both (see upload_extras).
    # kmsKeyName needs nothing of the caller: the Cloud Storage service agent uses the key (README).
    "objects.insert": ("storage.objects.create",),
    "objects.get": ("storage.objects.get",),
    "objects.list": ("storage.objects.list",),
    "objects.delete": ("storage.objects.delete",),
    # google-cloud-storage (3.17) reads the bucket's metadata in a background thread, for its tracing
    # attributes (google/cloud/storage/_bucket_metadata_cache.py), the first time a client touches a
    # bucket; see NOT_GRANTED.
    "buckets.get": ("storage.buckets.get",),
}
SOURCES = ("rawDisk", "sourceDisk", "sourceImage", "sourceSnapshot")
"""An Image body's sources; imgpub uses rawDisk only (another one needs its own use/useReadOnly)."""

UNEXERCISED: dict[str, dict[str, str]] = {"publish": {}, "lifecycle": {}}
"""Permissions a group's roles grant for a path the stand-ins cannot exercise: permission -> why.

Empty: every permission the README grants is needed by a call this run makes against the stand-ins
(the lost reply on an object delete is played by the GCS proxy, the stale object and the label drift
are set up, images.insert's read of the tarball is mapped from the call). Add an entry only with the
reason the stand-ins cannot make the call; an entry the run uses after all, or that no role grants,
fails test_the_allow_lists_are_explained_and_current."""

NOT_GRANTED: dict[str, str] = {
    "storage.buckets.get": "only google-cloud-storage's background read of the bucket's metadata for "
    "its tracing attributes needs it; on a 403 the SDK caches a fallback and nothing fails. The run "
    "has the GCS proxy answer buckets.get with 403, as Cloud Storage does under these roles.",
}
"""Permissions some call asks for that the roles leave out on purpose, the caller going on without
them: permission -> why. The run has the stand-ins refuse those calls (403) and must pass all the same;
none of them may be granted by a role."""
FORBIDDEN = {"buckets.get": "storage.buckets.get"}
"""The storage v1 methods the GCS proxy refuses during the run (NOT_GRANTED's calls)."""

PREDEFINED: dict[str, frozenset[str]] = {
    # From https://cloud.google.com/iam/docs/understanding-roles: the permissions of each role that
    # bear on imgpub (the roles hold more). A role the README names must be here and cover its block.
    "roles/compute.storageAdmin": frozenset(
        {
            "compute.images.create",
            "compute.images.delete",
            "compute.images.deprecate",
            "compute.images.get",
            "compute.images.getFromFamily",
            "compute.images.getIamPolicy",
            "compute.images.list",
            "compute.images.setIamPolicy",
            "compute.images.setLabels",
            "compute.images.update",
            "compute.images.useReadOnly",
            "compute.globalOperations.get",
            "compute.globalOperations.list",
        }
    ),
    "roles/storage.objectUser": frozenset(
        {
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.restore",
            "storage.objects.update",
        }
    ),
    "roles/storage.objectAdmin": frozenset(  # storage.objects.*
        {
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.get",
            "storage.objects.getIamPolicy",
            "storage.objects.list",
            "storage.objects.restore",
            "storage.objects.setIamPolicy",
            "storage.objects.setRetention",
            "storage.objects.update",
        }
    ),
}


@dataclass(frozen=True)
class Call:
    """One request a stand-in received: which API, the method it makes (None: none it knows)."""

    api: str
    method: str | None
    verb: str
    path: str
    query: Mapping[str, str]
    body: Any = None

    def __str__(self) -> str:
        return f"{self.api} {self.method or '?'} ({self.verb} {self.path})"


def insert_extras(call: Call) -> tuple[str, ...] | None:
    """What images.insert needs besides compute.images.create, by its source (None: unknown source)."""
    body = call.body if isinstance(call.body, dict) else {}
    sources = [s for s in SOURCES if s in body]
    if sources == ["rawDisk"] and str(body["rawDisk"].get("source", "")):
        return ("storage.objects.get",)  # GCE reads the tarball as the caller
    return None


def upload_extras(call: Call) -> tuple[str, ...]:
    """storage.objects.delete when an upload may replace an existing object (any precondition but 0)."""
    return () if call.query.get("ifGenerationMatch") == "0" else ("storage.objects.delete",)


def required(call: Call) -> tuple[str, ...] | None:
    """The permissions GCE or GCS checks for this call; None when the table does not know the call."""
    if call.method is None:
        return None
    if call.api == "compute" and call.method in COMPUTE:
        if call.method == "images.insert":
            extras = insert_extras(call)
            return None if extras is None else (*COMPUTE[call.method], *extras)
        return COMPUTE[call.method]
    if call.api == "storage" and call.method in STORAGE:
        if call.method == "objects.insert":
            if "upload_id" in call.query:
                return STORAGE[call.method]  # a PUT of an open session: its start was checked
            return (*STORAGE[call.method], *upload_extras(call))
        return STORAGE[call.method]
    return None


# -- the README's roles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    id: str
    title: str
    description: str
    stage: str
    permissions: tuple[str, ...]


def roles(text: str) -> dict[str, Role]:
    """The role files in the README's `## Least privilege` (yaml blocks with includedPermissions); the
    role id is the one the block's first line creates (`gcloud iam roles create <id> ...`)."""
    section = text.split("## Least privilege", 1)[1].split("\n## ", 1)[0]
    out: dict[str, Role] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        found = re.search(r"gcloud iam roles create (\S+) ", block.splitlines()[0])
        data = yaml.safe_load(block)
        if found is None or not isinstance(data, dict) or "includedPermissions" not in data:
            continue
        out[found.group(1)] = Role(
            found.group(1),
            str(data.get("title", "")),
            str(data.get("description", "")),
            str(data.get("stage", "")),
            tuple(data["includedPermissions"] or ()),
        )
    return out


# -- the checker --------------------------------------------------------------------------------------


def audit(roles_: Mapping[str, Role], calls: Mapping[str, list[Call]]) -> list[str]:
    """Everything wrong between the roles and the calls each command made; [] when least privilege."""
    problems: list[str] = []
    used: dict[str, dict[str, set[str]]] = {group: {} for group in GROUPS}
    for command, made in calls.items():
        for call in made:
            needed = required(call)
            if needed is None:
                problems.append(
                    f"{command}: {call} has no permission in the table: map it (COMPUTE, STORAGE)"
                )
                continue
            for permission in needed:
                used[COMMANDS[command]].setdefault(permission, set()).add(call.method or "?")
    for group, ids in GROUPS.items():
        missing = [i for i in ids if i not in roles_]
        if missing:
            problems.append(f"{group}: the README has no role {', '.join(missing)}")
        granted = {p for i in ids if i in roles_ for p in roles_[i].permissions}
        for permission in sorted(granted & set(NOT_GRANTED)):
            problems.append(f"{group}: {permission} is granted, but NOT_GRANTED says it is left out")
        for permission in sorted(set(used[group]) - granted - set(NOT_GRANTED)):
            methods = ", ".join(sorted(used[group][permission]))
            problems.append(f"{group}: {permission} is needed by {methods} but no role of {ids} grants it")
        for permission in sorted(granted - set(used[group]) - set(UNEXERCISED[group])):
            problems.append(f"{group}: {permission} is granted but no call of the group needs it")
    return problems


# -- the representative run ----------------------------------------------------------------------------


@dataclass
class Recorder:
    """The calls both stand-ins received since the last `take`, filed under a command."""

    gce: FakeGce
    gcs: FaultProxy
    calls: dict[str, list[Call]]
    _seen: tuple[int, int] = (0, 0)

    def take(self, command: str) -> list[Call]:
        with self.gce.lock:
            compute = self.gce.state.requests[self._seen[0] :]
        storage = self.gcs.calls[self._seen[1] :]
        self._seen = (self._seen[0] + len(compute), self._seen[1] + len(storage))
        made = [Call("compute", r.method, r.verb, r.path, r.query, r.body) for r in compute]
        made += [Call("storage", c.method_id, c.verb, c.path, c.query) for c in storage]
        self.calls.setdefault(command, []).extend(made)
        return made


@pytest.fixture(scope="module")
def run(
    _gce_server: FakeGce,
    _gcs_proxy: FaultProxy,
    gcs_endpoint: str,
    raw_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, list[Call]]]:
    """Every command once or more against the stand-ins; the calls each made."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    gce, gcs = _gce_server, _gcs_proxy
    gce.reset()
    gcs.reset()
    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_endpoint},
    )
    bucket = "imgpub-permissions"
    client.create_bucket(bucket)
    folder = tmp_path_factory.mktemp("permissions")
    shutil.copy(raw_path, folder / "disk.raw")
    state = folder / "state"

    def manifest(version: str, retention: str = "", **target: Any) -> Path:
        path = folder / "imgpub.yaml"
        fields = {
            "name": "gce",
            "provider": "gcp",
            "project": PROJECT,
            "bucket": bucket,
            "storage_endpoint": gcs.url,
            "compute_endpoint": gce.url,
            **target,
        }
        image = {"name": "demo", "version": version, "source": "disk.raw", "format": "raw", "boot": "uefi"}
        path.write_text(yaml.safe_dump({"image": image, "targets": [fields]}, sort_keys=False) + retention)
        return path

    def published(path: Path, *, replace: bool = False) -> None:
        result = imgpub.publish(path, state_dir=state, retry=FAST, replace=replace)
        assert result.ok, result.targets[0].error
        recorder.take("publish")

    recorder = Recorder(gce, gcs, {})
    shared: dict[str, Any] = {
        "family": "demo",
        "share_members": ["group:qa@example.com"],
        "labels": {"team": "os"},
    }
    gcs.forbidden.update(FORBIDDEN)  # what the roles leave out is refused, as Cloud Storage would
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGPUB_GCP_ANONYMOUS", "1")

        # plan, then publish: family, sharing, CMEK for image and upload, the upload kept (a leftover)
        first = manifest("1.0.0", kms_key=KEY, keep_upload=True, **shared)
        assert imgpub.plan(first, state_dir=state).ok
        recorder.take("plan")
        published(first)
        published(manifest("1.1.0", labels={"team": "os"}))  # outside the family: prune deprecates it

        # 1.2.0 over a stale object of its name (replaced: ifGenerationMatch=<its generation>), and
        # deprecate_previous deprecating 1.0.0
        third = manifest("1.2.0", deprecate_previous=True, **shared)
        planned = imgpub.plan(third, state_dir=state)
        recorder.take("plan")
        assert planned.targets[0].plan is not None
        (upload,) = [a.resource for a in planned.targets[0].plan.actions if a.kind == "upload"]
        client.bucket(bucket).blob(upload.removeprefix(f"gs://{bucket}/")).upload_from_string(b"stale")
        published(third)
        assert gce.image(PROJECT, "demo-1-0-0")["deprecated"]["state"] == "DEPRECATED"  # type: ignore[index]

        # --replace: 1.2.0 again with another digest (the description is part of it)
        replaced = manifest("1.2.0", deprecate_previous=True, description="demo, rebuilt", **shared)
        published(replaced, replace=True)

        # a label changed behind imgpub's back: status sees the drift, publish sets the labels again
        with gce.lock:
            gce.state.images[(PROJECT, "demo-1-2-0")]["labels"]["team"] = "changed"
        shown = imgpub.status(replaced, state_dir=state)
        recorder.take("status")
        assert shown.targets[0].status is not None and shown.targets[0].status.drift
        published(replaced)
        assert gce.image(PROJECT, "demo-1-2-0")["labels"]["team"] == "os"  # type: ignore[index]

        # every version: the matrix, reconcile (new label, a second member), prune
        lifecycle = manifest(
            "1.2.0",
            "retention: {keep: 0, deprecate_after: 30d, delete_after: 90d}\n",
            description="demo, rebuilt",
            family="demo",
            deprecate_previous=True,
            labels={"team": "os", "tier": "gold"},
            share_members=["group:qa@example.com", "group:ops@example.com"],
        )
        versions = matrix(lifecycle, now=lambda: NOW, state_dir=state, retry=FAST)
        recorder.take("status --all-versions")
        assert {r.version for r in versions.targets[0].releases} == {"1.0.0", "1.1.0", "1.2.0"}

        reconciled = reconcile(lifecycle, now=lambda: NOW, state_dir=state, retry=FAST)
        recorder.take("reconcile")
        done = [line for v in reconciled.targets[0].versions for line in v.done]
        assert any(line.startswith("set the labels") for line in done), done
        assert any(line.startswith("shared image") for line in done), done

        gcs.rules.append(Rule("DELETE", f"/b/{bucket}/o/", "lose-reply"))  # the delete is checked again
        pruned = prune(lifecycle, apply=True, now=lambda: NOW, state_dir=state, retry=FAST)
        recorder.take("prune")
        outcome = {v.version: v.done for v in pruned.targets[0].versions if v.done}
        assert pruned.exit_code == 0, [v.error for v in pruned.targets[0].versions]
        assert outcome["1.1.0"] == ["deprecated image demo-1-1-0 (replacement: demo-1-2-0)"]
        assert outcome["1.0.0"][0] == "deleted image demo-1-0-0" and len(outcome["1.0.0"]) == 2

    assert gce.state.crashes == [] and gcs.rejected == []
    yield recorder.calls
    gce.reset()
    gcs.reset()


# -- the checks --------------------------------------------------------------------------------------


def test_every_call_is_granted_and_every_grant_is_used(run: dict[str, list[Call]]) -> None:
    assert set(run) == set(COMMANDS), "the run covers every command"
    problems = audit(roles(README.read_text()), run)
    assert problems == [], "\n".join(problems)


def test_the_commands_that_only_look_use_only_read_permissions(run: dict[str, list[Call]]) -> None:
    for command in READ_ONLY:
        needed = {p for call in run[command] for p in required(call) or ()} - set(NOT_GRANTED)
        assert needed and all(READ.search(p) for p in needed), (command, sorted(needed))


def test_every_row_of_the_table_is_a_call_the_run_makes(run: dict[str, list[Call]]) -> None:
    made = {(c.api, c.method) for calls in run.values() for c in calls}
    rows = {("compute", m) for m in COMPUTE} | {("storage", m) for m in STORAGE if m not in FORBIDDEN}
    assert rows - made == set(), "a row no call uses: remove it, or make the call in the run"
    # FORBIDDEN's rows are the SDK's own calls: google-cloud-storage 2.16 (the floor) makes no buckets.get
    replaced = [
        c
        for c in run["publish"]
        if c.method == "objects.insert" and c.query.get("ifGenerationMatch", "0") != "0"
    ]
    assert replaced, "the run replaces a stale object (storage.objects.delete on an upload)"


def test_the_allow_lists_are_explained_and_current(run: dict[str, list[Call]]) -> None:
    known = roles(README.read_text())
    for permission, why in NOT_GRANTED.items():
        assert why.strip(), f"{permission}: say why the caller goes on without it"
        methods = [m for m, needs in STORAGE.items() if permission in needs]
        methods += [m for m, needs in COMPUTE.items() if permission in needs]
        assert methods and all(FORBIDDEN.get(m) == permission for m in methods), (
            f"{permission}: the run must have the stand-ins refuse {methods} (FORBIDDEN)"
        )
    assert set(FORBIDDEN.values()) <= set(NOT_GRANTED)
    for group, allowed in UNEXERCISED.items():
        granted = {p for i in GROUPS[group] for p in known[i].permissions}
        used = {
            p
            for cmd, calls in run.items()
            if COMMANDS[cmd] == group
            for c in calls
            for p in required(c) or ()
        }
        for permission, why in allowed.items():
            assert why.strip(), f"{group}: {permission}: say why the stand-ins cannot exercise it"
            assert permission in granted, f"{group}: {permission} is allowed but no role grants it"
            assert permission not in used, (
                f"{group}: {permission} is used by the run now: drop it from the list"
            )


def test_the_role_files_are_what_gcloud_takes_and_each_binds_to_one_resource() -> None:
    known = roles(README.read_text())
    assert set(known) == {i for ids in GROUPS.values() for i in ids}
    for role in known.values():
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role.id), role.id
        assert 0 < len(role.title) <= 100 and 0 < len(role.description) <= 256, role.id
        assert role.stage == "GA", role.id
        assert len(set(role.permissions)) == len(role.permissions), f"{role.id}: a permission twice"
        services = {p.split(".")[0] for p in role.permissions}
        # compute permissions are bound on the project, storage ones on the bucket: never one role for both
        assert services in ({"compute"}, {"storage"}), (role.id, services)
        resource = "project" if services == {"compute"} else "bucket"
        assert f"Granted on the {resource}" in " ".join(role.description.split()), role.id


def test_the_predefined_roles_the_readme_names_cover_each_role() -> None:
    for role in roles(README.read_text()).values():
        named = re.findall(r"roles/[a-zA-Z]+\.[a-zA-Z]+", role.description)
        assert named, f"{role.id}: name the predefined roles that cover it"
        for predefined in named:
            assert predefined in PREDEFINED, f"{role.id}: {predefined}: add its permissions to PREDEFINED"
            assert set(role.permissions) <= PREDEFINED[predefined], (
                role.id,
                predefined,
                sorted(set(role.permissions) - PREDEFINED[predefined]),
            )


# -- the checks fail when they should ------------------------------------------------------------------


def test_each_permission_taken_out_of_the_readme_fails_the_check(run: dict[str, list[Call]]) -> None:
    text = README.read_text()
    lines = [line for line in text.splitlines() if re.match(r"- (compute|storage)\.\w+\.\w+ ", line)]
    assert len(lines) == sum(len(r.permissions) for r in roles(text).values())
    for line in lines:
        permission = line.split()[1]
        problems = audit(roles(text.replace(line + "\n", "", 1)), run)
        assert any(f"{permission} is needed by" in p for p in problems), (permission, problems)


def test_a_permission_no_call_needs_fails_the_check(run: dict[str, list[Call]]) -> None:
    text = README.read_text()
    wider = text.replace("- compute.images.list ", "- compute.images.useReadOnly\n- compute.images.list ", 1)
    problems = audit(roles(wider), run)
    assert any("compute.images.useReadOnly is granted but no call" in p for p in problems), problems


def test_a_call_the_table_does_not_know_fails_the_check(run: dict[str, list[Call]]) -> None:
    unknown = [
        Call("compute", "images.patch", "PATCH", "/compute/v1/projects/p/global/images/i", {}),
        Call("compute", None, "GET", "/compute/v1/projects/p/global/snapshots", {}),
        Call(
            "compute",
            "images.insert",
            "POST",
            "/compute/v1/projects/p/global/images",
            {},
            {"sourceImage": "x"},
        ),
        Call("storage", "objects.compose", "POST", "/storage/v1/b/b/o/x/compose", {}),
        Call("storage", None, "GET", "/storage/v1/b/b/nowhere", {}),
    ]
    problems = audit(roles(README.read_text()), {**run, "publish": [*run["publish"], *unknown]})
    for call in unknown:
        assert any(str(call) in p and "has no permission in the table" in p for p in problems), (
            call,
            problems,
        )


def test_a_new_call_the_provider_makes_is_recorded_and_fails_the_check(
    gce: FakeGce, gcs: FaultProxy, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider patched to make two calls it does not make today (images.getFromFamily,
    buckets.get): the stand-ins record them, and the check names both."""
    from imgpub.journal import Journal
    from imgpub.provider import Context
    from imgpub_gcp import GcpProvider
    from imgpub_gcp.image import GceImages

    original = GceImages._list

    def listing(self: GceImages, filter_: str) -> list[Any]:
        from google.api_core.exceptions import GoogleAPICallError

        for new_call in (
            lambda: self.clients.images.get_from_family(project=self.project, family="demo", retry=None),
            lambda: self.clients.storage.bucket(self.settings.bucket).get_iam_policy(retry=None),
        ):
            with contextlib.suppress(GoogleAPICallError):  # made and recorded: served or not
                new_call()
        return original(self, filter_)

    monkeypatch.setattr(GceImages, "_list", listing)
    settings = make_settings()
    GcpProvider().releases(
        "demo", settings, Context(settings.name, "", Journal(None), retry=FAST, now=lambda: NOW)
    )

    with gce.lock:  # the fake serves no images.getFromFamily: its 500 is the only crash, and expected
        crashes, gce.state.crashes = gce.state.crashes, []
    assert all("images/family/demo" in c for c in crashes), crashes
    recorder = Recorder(gce, gcs, {})
    made = recorder.take("status --all-versions")
    problems = audit(roles(README.read_text()), recorder.calls)
    assert {c.method for c in made} >= {"images.getFromFamily", "buckets.getIamPolicy", "images.list"}
    unmapped = [p for p in problems if "has no permission in the table" in p]
    assert len(unmapped) == 2, problems
    assert any("images.getFromFamily" in p for p in unmapped) and any(
        "buckets.getIamPolicy" in p for p in unmapped
    )
