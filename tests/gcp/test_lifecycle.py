"""Every version of a GCE image at once, against the GCE fake and GCS behind its contract proxy, with
an injected clock: the versions found (by imgpub's labels only, every page), prune through
imgpub.lifecycle with a manifest (deprecate pointing to the replacement, delete with the leftover
uploads), a delete stopped half-way finished by the next prune, the version matrix, reconcile without
an upload, and the CLI once end to end."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fakes.gce import FakeGce
from gcp.fault_proxy import FaultProxy, Rule
from gcp.stack import PROJECT
from imgpub.cli import app
from imgpub.identity import LABEL_NAME, LABEL_VERSION
from imgpub.journal import Journal
from imgpub.lifecycle import matrix, prune, reconcile, version_cells
from imgpub.provider import Context
from imgpub.retry import FAST
from imgpub_gcp import GcpProvider, GcpSettings
from imgpub_gcp.image import GceImages, version_labels
from imgpub_gcp.labels import derived_image_name
from imgpub_gcp.versions import LABEL_EXACT

NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)
"""Years after the uploads the tests make (their objects are old enough to be leftovers)."""
POLICY = "retention:\n  keep: 1\n  deprecate_after: 30d\n  delete_after: 90d\n  protect: ['0.*']\n"


def digest(version: str) -> str:
    return (version.encode().hex() + "0" * 24)[:24]


def seed(
    gce: FakeGce,
    version: str,
    age_days: float,
    *,
    name: str = "demo",
    now: datetime = NOW,
    exact: bool = True,
    deprecated: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """An image as publish leaves it (imgpub's labels), created `age_days` before `now`."""
    labels = {**version_labels(name, version, digest(version)), **fields.pop("labels", {})}
    if not exact:  # published before imgpub kept the exact version
        del labels[LABEL_EXACT]
    if deprecated:
        fields["deprecated"] = {"state": "DEPRECATED", "deprecated": "2030-01-01T00:00:00Z"}
    created = (now - timedelta(days=age_days)).isoformat(timespec="milliseconds")
    return gce.add_image(
        PROJECT, derived_image_name(name, version), labels=labels, creationTimestamp=created, **fields
    )


def upload(storage_client: Any, bucket: str, version: str | None, name: str = "demo") -> str:
    """An upload object imgpub left for `version` (or, with None, an object without imgpub's metadata)."""
    obj = f"imgpub/{derived_image_name(name, version or 'x')}-{digest(version or 'x')}.tar.gz"
    blob = storage_client.bucket(bucket).blob(obj)
    if version is not None:
        blob.metadata = {**version_labels(name, version, digest(version)), "imgpub-uploader": "a" * 32}
    blob.upload_from_string(b"tarball")
    return obj


def objects(storage_client: Any, bucket: str) -> set[str]:
    return {b.name for b in storage_client.list_blobs(bucket)}


@pytest.fixture
def write(
    tmp_path: Path, gcs: FaultProxy, gce: FakeGce, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """write(policy, version=..., extra=...) -> a manifest with one gcp target on the local stack."""
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")

    def make(policy: str = POLICY, version: str = "1.3.0", extra: str = "") -> Path:
        path = tmp_path / "imgpub.yaml"
        path.write_text(
            f"image:\n  name: demo\n  version: {version}\n  source: disk.raw\n  format: raw\n{policy}"
            "targets:\n  - name: gce\n    provider: gcp\n"
            f"    project: {PROJECT}\n    bucket: {bucket}\n"
            f"    storage_endpoint: {gcs.url}\n    compute_endpoint: {gce.url}\n{extra}"
        )
        return path

    return make


def lifecycle_context(settings: GcpSettings) -> Context:
    return Context(settings.name, "", Journal(None), retry=FAST, now=lambda: NOW)


def changes(gce: FakeGce) -> list[str]:
    return gce.calls("POST") + gce.calls("DELETE")


# -- the versions found ----------------------------------------------------------------------------


def test_every_version_is_found_by_imgpubs_labels_on_every_page_and_nothing_else(
    make_settings: Callable[..., GcpSettings], gce: FakeGce, storage_client: Any, bucket: str
) -> None:
    seed(gce, "0.9.0", 400, exact=False)  # labelled by an imgpub that did not keep the exact version
    seed(gce, "1.0.0", 200, deprecated=True)
    seed(gce, "1.1.0", 60)
    seed(gce, "1.2.0-rc.1", 20)
    seed(gce, "1.3.0", 1, status="FAILED")
    seed(gce, "1.4.0", 0, status="PENDING")
    gce.add_image(PROJECT, "demo-2-0-0")  # the name demo 2.0.0 would get, without any label
    gce.add_image(PROJECT, "demo-2-1-0", labels={LABEL_NAME: "demo", LABEL_VERSION: "2-1-0"})  # no digest
    seed(gce, "1.1.0", 60, name="demo-other")  # another image's name label
    upload(storage_client, bucket, "0.8.0")  # its image is gone
    upload(storage_client, bucket, None)  # not imgpub's
    gce.state.list_page_size = 2

    found = {
        r.version: r
        for r in GcpProvider().releases("demo", make_settings(), lifecycle_context(make_settings()))
    }

    assert {v: r.state for v, r in found.items()} == {
        "0.8.0": "deleting",
        "0.9.0": "active",
        "1.0.0": "deprecated",
        "1.1.0": "active",
        "1.2.0-rc.1": "active",
        "1.3.0": "failed",
        "1.4.0": "pending",
    }
    assert found["1.1.0"].created == NOW - timedelta(days=60)
    assert found["1.1.0"].digest == digest("1.1.0") and found["1.1.0"].regions == (None,)
    assert [a.id for a in found["1.2.0-rc.1"].artifacts] == ["demo-1-2-0-rc-1"]
    assert found["0.9.0"].artifacts[0].extra["version_exact"] is False
    assert [a.kind for a in found["0.8.0"].artifacts] == ["gcs-object"]
    lists = gce.calls("GET", "/global/images?")
    assert len(lists) == 4 and all("labels.imgpub-name" in c for c in lists)  # 7 labelled, 2 a page
    assert any("pageToken=" in c for c in lists), "every page was read"
    assert changes(gce) == []


def test_an_upload_younger_than_a_day_may_be_a_running_publish_and_is_not_a_leftover(
    make_settings: Callable[..., GcpSettings], storage_client: Any, bucket: str
) -> None:
    upload(storage_client, bucket, "2.0.0")  # uploaded just now; its images.insert may be running
    settings = make_settings()

    def found(now: datetime) -> list[tuple[str, str]]:
        ctx = Context(settings.name, "", Journal(None), retry=FAST, now=lambda: now)
        return [(r.version, r.state) for r in GcpProvider().releases("demo", settings, ctx)]

    assert found(datetime.now(UTC)) == []
    assert found(datetime.now(UTC) + timedelta(days=1, minutes=1)) == [("2.0.0", "deleting")]


# -- prune -------------------------------------------------------------------------------------


def test_prune_deprecates_with_the_replacement_and_deletes_with_the_leftover_uploads(
    write: Callable[..., Path], gce: FakeGce, storage_client: Any, bucket: str, tmp_path: Path
) -> None:
    for version, age in {"0.9.0": 400, "1.1.0": 60, "1.2.0": 10, "1.3.0": 1}.items():
        seed(gce, version, age)
    seed(gce, "1.0.0", 200, deprecated=True)
    stranger = gce.add_image(PROJECT, "demo-0-5-0", creationTimestamp="2020-01-01T00:00:00.000+00:00")
    foreign = seed(gce, "1.0.0", 200, name="other", deprecated=True)
    mine, theirs, untagged = (
        upload(storage_client, bucket, "1.0.0"),
        upload(storage_client, bucket, "1.0.0", name="other"),
        upload(storage_client, bucket, None),
    )
    path = write()

    planned = prune(path, now=lambda: NOW, state_dir=tmp_path / "state")
    assert {v.version: v.verdict for v in planned.targets[0].versions} == {
        "1.3.0": "current",
        "1.2.0": "keep",
        "1.1.0": "deprecate",
        "1.0.0": "delete",
        "0.9.0": "protect",
    }
    assert changes(gce) == [] and objects(storage_client, bucket) == {mine, theirs, untagged}

    done = prune(path, apply=True, now=lambda: NOW, state_dir=tmp_path / "state")

    assert done.exit_code == 0, [v.error for v in done.targets[0].versions]
    lines = {v.version: v.done for v in done.targets[0].versions if v.done}
    assert lines == {
        "1.1.0": ["deprecated image demo-1-1-0 (replacement: demo-1-3-0)"],
        "1.0.0": ["deleted image demo-1-0-0", f"deleted gs://{bucket}/{mine}"],
    }
    deprecated = gce.image(PROJECT, "demo-1-1-0")["deprecated"]  # type: ignore[index]
    assert deprecated == {
        "state": "DEPRECATED",
        "replacement": gce.image(PROJECT, "demo-1-3-0")["selfLink"],  # type: ignore[index]
        "deprecated": "2031-06-01T12:00:00Z",
    }
    acted = gce.calls("POST", "/deprecate") + gce.calls("DELETE")
    assert len(acted) == 2 and all("requestId=" in c for c in acted)
    assert gce.image(PROJECT, "demo-1-0-0") is None
    assert gce.image(PROJECT, "demo-0-5-0") == stranger and gce.image(PROJECT, "other-1-0-0") == foreign
    assert objects(storage_client, bucket) == {theirs, untagged}
    for version in ("0.9.0", "1.2.0", "1.3.0"):
        assert "deprecated" not in gce.image(PROJECT, derived_image_name("demo", version))  # type: ignore[operator]

    again = prune(path, apply=True, now=lambda: NOW, state_dir=tmp_path / "state")
    assert [v.done for v in again.targets[0].versions if v.done] == [], "nothing left to do"


def test_a_failed_delete_is_reported_for_its_version_and_the_others_go_on(
    write: Callable[..., Path], gce: FakeGce, tmp_path: Path
) -> None:
    seed(gce, "1.3.0", 1)
    seed(gce, "1.0.0", 200, deprecated=True)
    seed(gce, "1.1.0", 150, deprecated=True)
    gce.fail_next_operation(
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "The image is used by instance template 'web'.", kind="delete"
    )

    done = prune(write("retention: {keep: 0, delete_after: 90d}\n"), apply=True, now=lambda: NOW)

    outcomes = {v.version: v for v in done.targets[0].versions}
    assert done.exit_code == 1
    assert outcomes["1.1.0"].error is not None and outcomes["1.1.0"].done == []
    assert "delete image demo-1-1-0 failed [RESOURCE_IN_USE_BY_ANOTHER_RESOURCE]" in outcomes["1.1.0"].error
    assert outcomes["1.0.0"].error is None and outcomes["1.0.0"].done == ["deleted image demo-1-0-0"]
    assert gce.image(PROJECT, "demo-1-1-0") is not None and gce.image(PROJECT, "demo-1-0-0") is None


def test_a_lost_deprecate_reply_is_not_acted_on_twice_and_a_repeat_changes_nothing(
    make_settings: Callable[..., GcpSettings], gce: FakeGce
) -> None:
    seed(gce, "1.0.0", 60)
    seed(gce, "1.1.0", 1, status="PENDING")  # no READY image yet: no replacement to point to
    gce.fail(503, method="POST", path="/deprecate", lose_reply=True)
    settings, provider = make_settings(), GcpProvider()
    ctx = lifecycle_context(settings)
    (release,) = [r for r in provider.releases("demo", settings, ctx) if r.version == "1.0.0"]

    done = provider.retire("demo", settings, release, "deprecate", ctx, replacement="1.1.0")
    again = provider.retire("demo", settings, release, "deprecate", ctx, replacement="1.1.0")

    assert done == ["deprecated image demo-1-0-0 (no replacement: version 1.1.0 has no READY active image)"]
    assert again == []
    ids = [c.split("requestId=")[1] for c in gce.calls("POST", "/deprecate")]
    assert len(ids) == 2 and ids[0] == ids[1], "the retry reused the requestId"
    assert gce.image(PROJECT, "demo-1-0-0")["deprecated"]["state"] == "DEPRECATED"  # type: ignore[index]


def test_two_prunes_at_once_and_lost_replies_still_delete_everything_once(
    write: Callable[..., Path], gce: FakeGce, gcs: FaultProxy, storage_client: Any, bucket: str
) -> None:
    """Another run's delete of the image is under way when this run's arrives (GCE: 400
    resourceNotReady), and the reply to this run's object delete is lost after GCS deleted it."""
    seed(gce, "1.3.0", 1)
    seed(gce, "1.0.0", 200, deprecated=True)
    leftover = upload(storage_client, bucket, "1.0.0")
    other: list[int] = []

    def another_prune(method: str, path: str) -> None:
        if method == "DELETE" and "/images/demo-1-0-0" in path and not other:
            other.append(1)
            url = f"{gce.url}/compute/v1/projects/{PROJECT}/global/images/demo-1-0-0?requestId={uuid.uuid4()}"
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE")) as answer:
                assert answer.status == 200

    gce.polls_per_operation, gce.on_request = 3, another_prune
    gcs.rules.append(Rule("DELETE", f"/b/{bucket}/o/", "lose-reply"))
    try:
        done = prune(write("retention: {keep: 0, delete_after: 90d}\n"), apply=True, now=lambda: NOW)
    finally:
        gce.polls_per_operation, gce.on_request = 1, None

    assert done.exit_code == 0, [v.error for v in done.targets[0].versions]
    assert {v.version: v.done for v in done.targets[0].versions if v.done} == {
        "1.0.0": ["image demo-1-0-0 is being deleted by another run", f"deleted gs://{bucket}/{leftover}"]
    }
    assert objects(storage_client, bucket) == set()
    seen = [
        {r.version: r.state for r in matrix(write(""), now=lambda: NOW).targets[0].releases} for _ in range(3)
    ]
    assert seen[0] == {"1.3.0": "active", "1.0.0": "deleting"}, "the other run's delete goes on"
    assert seen[-1] == {"1.3.0": "active"}


# -- a stop half-way ---------------------------------------------------------------------------


def test_a_delete_stopped_between_the_image_and_its_uploads_is_finished_by_the_next_prune(
    write: Callable[..., Path],
    gce: FakeGce,
    storage_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(gce, "1.3.0", 1)
    seed(gce, "1.0.0", 200, deprecated=True)
    leftover = upload(storage_client, bucket, "1.0.0")

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt  # the process dies after the image, before its upload

    monkeypatch.setattr("imgpub_gcp.retirement.delete_object", crash)
    with pytest.raises(KeyboardInterrupt):
        prune(write("retention: {keep: 0, delete_after: 90d}\n"), apply=True, now=lambda: NOW)
    monkeypatch.undo()
    monkeypatch.setenv("IMGPUB_GCP_ANONYMOUS", "1")

    states = {r.version: r.state for r in matrix(write(""), now=lambda: NOW).targets[0].releases}
    assert states == {"1.3.0": "active", "1.0.0": "deleting"}, "only the upload is left"
    # keep: 5 would leave 1.0.0 alone, but a delete stopped half-way is finished whatever the policy
    done = prune(write("retention: {keep: 5}\n"), apply=True, now=lambda: NOW)
    assert {v.version: (v.verdict, v.done) for v in done.targets[0].versions if v.done} == {
        "1.0.0": ("finish", [f"deleted gs://{bucket}/{leftover}"])
    }
    assert objects(storage_client, bucket) == set()
    assert [r.version for r in matrix(write(""), now=lambda: NOW).targets[0].releases] == ["1.3.0"]


def test_a_delete_gce_is_still_doing_is_listed_as_deleting_and_finished(
    write: Callable[..., Path],
    gce: FakeGce,
    storage_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(gce, "1.3.0", 1)
    seed(gce, "1.0.0", 200, deprecated=True)
    leftover = upload(storage_client, bucket, "1.0.0")
    real_wait = GceImages.wait

    def die_waiting(self: GceImages, op: Any, what: str, **kwargs: Any) -> None:
        if what.startswith("delete image"):
            raise KeyboardInterrupt  # the process dies while GCE deletes the image
        real_wait(self, op, what, **kwargs)

    monkeypatch.setattr(GceImages, "wait", die_waiting)
    gce.polls_per_operation = 4
    try:
        with pytest.raises(KeyboardInterrupt):
            prune(write("retention: {keep: 0, delete_after: 90d}\n"), apply=True, now=lambda: NOW)
        monkeypatch.setattr(GceImages, "wait", real_wait)
        (release,) = [
            r for r in matrix(write(""), now=lambda: NOW).targets[0].releases if r.version == "1.0.0"
        ]
        assert release.state == "deleting" and release.artifacts[0].extra["status"] == "DELETING"

        done = prune(write("retention: {keep: 5}\n"), apply=True, now=lambda: NOW)
    finally:
        gce.polls_per_operation = 1
    assert {v.version: v.done for v in done.targets[0].versions if v.done} == {
        "1.0.0": ["image demo-1-0-0 is being deleted by GCE already", f"deleted gs://{bucket}/{leftover}"]
    }
    assert len(gce.calls("DELETE", "/images/demo-1-0-0")) == 1, "a deleting image is not deleted again"
    assert [r.version for r in matrix(write(""), now=lambda: NOW).targets[0].releases] == ["1.3.0"]


# -- the version matrix and reconcile ------------------------------------------------------------


def test_the_matrix_has_a_cell_per_version_with_its_state(
    write: Callable[..., Path], gce: FakeGce, storage_client: Any, bucket: str
) -> None:
    team = {"labels": {"team": "os"}}
    seed(gce, "1.3.0", 1, **team)
    seed(gce, "1.2.0", 10)  # lacks the target's label
    seed(gce, "1.1.0", 60, deprecated=True, **team)
    seed(gce, "1.0.0", 100, status="FAILED", **team)
    upload(storage_client, bucket, "0.9.0")
    path = write("", extra="    labels: {team: os}\n")

    result = matrix(path, now=lambda: NOW)

    assert version_cells(result.targets[0]) == [
        ("1.3.0", None, "active"),
        ("1.2.0", None, "drift"),
        ("1.1.0", None, "deprecated"),
        ("1.0.0", None, "failed"),
        ("0.9.0", None, "deleting"),
    ]
    drift = {r.version: r.drift for r in result.targets[0].releases}
    assert drift["1.2.0"] == ("image demo-1-2-0: labels differ: team",) and drift["1.3.0"] == ()
    assert not result.in_sync and result.exit_code == 0


def test_reconcile_relabels_reshares_and_deprecates_without_uploading(
    write: Callable[..., Path], gce: FakeGce, gcs: FaultProxy, tmp_path: Path
) -> None:
    family = {"family": "demo"}
    seed(gce, "1.0.0", 20, **family)
    seed(gce, "1.1.0", 10, labels={"team": "old"}, **family)
    extra = (
        "    labels: {team: os}\n    share_members: ['group:qa@example.com']\n"
        "    family: demo\n    deprecate_previous: true\n"
    )
    path = write("", version="1.1.0", extra=extra)

    planned = reconcile(path, apply=False, now=lambda: NOW, state_dir=tmp_path / "state")
    assert changes(gce) == []
    assert {v.version: v.reason for v in planned.targets[0].versions} == {
        "1.1.0": "image demo-1-1-0: labels differ: team; "
        "image demo-1-1-0 is not shared with group:qa@example.com",
        "1.0.0": "image demo-1-0-0: labels differ: team; image demo-1-0-0 is not shared with "
        "group:qa@example.com; image demo-1-0-0 in family demo is not deprecated (deprecate_previous; "
        "the family's newest is demo-1-1-0)",
    }

    done = reconcile(path, now=lambda: NOW, state_dir=tmp_path / "state")

    assert done.exit_code == 0
    assert {v.version: v.done for v in done.targets[0].versions} == {
        "1.1.0": ["set the labels of image demo-1-1-0", "shared image demo-1-1-0 with group:qa@example.com"],
        "1.0.0": [
            "set the labels of image demo-1-0-0",
            "shared image demo-1-0-0 with group:qa@example.com",
            "deprecated image demo-1-0-0 (replacement: demo-1-1-0)",
        ],
    }
    for version in ("1.0.0", "1.1.0"):
        image = gce.image(PROJECT, f"demo-{version.replace('.', '-')}")
        assert image is not None and image["labels"] == {
            **version_labels("demo", version, digest(version)),
            "team": "os",
        }
        (binding,) = gce.policy(PROJECT, image["name"])["bindings"]
        assert binding == {"role": "roles/compute.imageUser", "members": ["group:qa@example.com"]}
    deprecated = gce.image(PROJECT, "demo-1-0-0")["deprecated"]  # type: ignore[index]
    assert deprecated["replacement"] == gce.image(PROJECT, "demo-1-1-0")["selfLink"]  # type: ignore[index]
    assert [s for s in gcs.seen if s[0] != "GET"] == [], "reconcile never uploads"
    assert matrix(path, now=lambda: NOW).in_sync
    assert [v.done for v in reconcile(path, now=lambda: NOW).targets[0].versions if v.done] == []


# -- the CLI, once end to end ------------------------------------------------------------------


def test_the_cli_prunes_and_shows_every_version(write: Callable[..., Path], gce: FakeGce) -> None:
    now = datetime.now(UTC)  # the CLI's own clock
    team = {"labels": {"team": "os"}}
    seed(gce, "1.2.0", 1, now=now, **team)
    seed(gce, "1.1.0", 60, now=now, **team)
    seed(gce, "1.0.0", 200, now=now, deprecated=True, **team)
    path = write(
        "retention: {keep: 0, deprecate_after: 30d, delete_after: 90d}\n",
        version="1.2.0",
        extra="    labels: {team: os}\n",
    )

    pruned = CliRunner().invoke(app, ["prune", str(path), "--yes", "--json"])

    assert pruned.exit_code == 0, pruned.output
    report = json.loads(pruned.stdout)
    versions = {v["version"]: (v["action"], v["done"]) for v in report["targets"][0]["versions"]}
    assert versions == {
        "1.2.0": ("current", []),
        "1.1.0": ("deprecate", ["deprecated image demo-1-1-0 (replacement: demo-1-2-0)"]),
        "1.0.0": ("delete", ["deleted image demo-1-0-0"]),
    }
    shown = CliRunner().invoke(app, ["status", str(path), "--all-versions", "--detailed-exitcode"])
    assert shown.exit_code == 0, shown.output
    assert "in sync" in shown.stdout and "deprecated" in shown.stdout

    with gce.lock:
        gce.state.images[(PROJECT, "demo-1-2-0")]["labels"].pop("team")
    drifted = CliRunner().invoke(
        app, ["status", str(path), "--all-versions", "--detailed-exitcode", "--json"]
    )
    assert drifted.exit_code == 2
    cells = json.loads(drifted.stdout)["targets"][0]["cells"]
    assert {(c["version"], c["state"]) for c in cells} == {("1.2.0", "drift"), ("1.1.0", "deprecated")}
