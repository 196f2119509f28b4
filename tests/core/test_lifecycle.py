"""Every version at once on the local target: prune (dry run, apply, a stop half-way), the version
matrix, reconcile, retention.on_publish, and a provider that cannot list versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import imgpub.local.index
from imgpub.cli import app
from imgpub.lifecycle import matrix, prune, reconcile, version_cells
from imgpub.pipeline import publish

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
POLICY = "retention:\n  keep: 1\n  deprecate_after: 30d\n  delete_after: 90d\n  protect: ['0.*']\n"
LOCAL = "- name: out\n  provider: local\n  path: out\n  formats: [raw]\n"


@pytest.fixture
def published(write_manifest, tmp_path: Path) -> Path:
    """Versions 0.9.0 .. 1.3.0 in out/, aged by rewriting their index times (1.0.0 deprecated)."""
    ages = {"0.9.0": 400, "1.0.0": 200, "1.1.0": 60, "1.2.0": 10, "1.3.0": 1}
    for version in ages:
        assert publish(write_manifest(LOCAL, version=version, name=f"m-{version}.yaml")).exit_code == 0
    index = tmp_path / "out" / "index.json"
    data = json.loads(index.read_text())
    for entry in data["images"]:
        entry["time"] = (NOW - timedelta(days=ages[entry["version"]])).isoformat()
        if entry["version"] == "1.0.0":
            entry["deprecated"] = (NOW - timedelta(days=100)).isoformat()
    index.write_text(json.dumps(data))
    return tmp_path / "out"


def manifest_with_policy(tmp_path: Path, policy: str = POLICY, version: str = "1.3.0") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"image:\n  name: demo\n  version: {version}\n  source: disk.raw\n{policy}targets:\n{LOCAL}"
    )
    return path


def versions_in(tmp_path: Path) -> dict[str, bool]:
    data = json.loads((tmp_path / "out" / "index.json").read_text())
    return {e["version"]: bool(e.get("deprecated")) for e in data["images"]}


def test_a_dry_run_decides_and_changes_nothing(published: Path, tmp_path: Path) -> None:
    before = versions_in(tmp_path)
    result = prune(manifest_with_policy(tmp_path), now=lambda: NOW)
    verdicts = {v.version: v.verdict for v in result.targets[0].versions}
    assert verdicts == {
        "1.3.0": "current",
        "1.2.0": "keep",
        "1.1.0": "deprecate",
        "1.0.0": "delete",
        "0.9.0": "protect",
    }
    assert versions_in(tmp_path) == before and result.exit_code == 0


def test_apply_deprecates_and_deletes(published: Path, tmp_path: Path) -> None:
    result = prune(manifest_with_policy(tmp_path), apply=True, now=lambda: NOW)
    assert result.exit_code == 0
    assert versions_in(tmp_path) == {"0.9.0": False, "1.1.0": True, "1.2.0": False, "1.3.0": False}
    assert not (tmp_path / "out" / "demo" / "1.0.0").exists()
    assert [p.name for p in (tmp_path / "out" / "demo").iterdir() if p.name.startswith(".")] == []
    again = prune(manifest_with_policy(tmp_path), apply=True, now=lambda: NOW)
    assert [v.done for v in again.targets[0].versions if v.done] == [], "a second prune has nothing to do"


def test_a_delete_stopped_half_way_is_finished_next_time(
    published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: object) -> None:
        raise KeyboardInterrupt  # the process dies after moving the folder aside

    only_delete = "retention: {keep: 1, delete_after: 90d, protect: ['0.*', '1.1.0']}\n"
    monkeypatch.setattr(imgpub.local.index.Index, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        prune(manifest_with_policy(tmp_path, only_delete), apply=True, now=lambda: NOW)
    monkeypatch.undo()
    states = {r.version: r.state for r in matrix(manifest_with_policy(tmp_path, "")).targets[0].releases}
    assert states["1.0.0"] == "deleting", "the stop left 1.0.0's entry without its folder"
    # keep: 5 would leave 1.0.0 alone, but a delete stopped half-way is finished whatever the policy
    done = prune(manifest_with_policy(tmp_path, "retention: {keep: 5}\n"), apply=True, now=lambda: NOW)
    assert {v.version: v.verdict for v in done.targets[0].versions if v.done} == {"1.0.0": "finish"}
    assert "1.0.0" not in versions_in(tmp_path)
    assert [p.name for p in (tmp_path / "out" / "demo").iterdir() if p.name.startswith(".")] == []


def test_the_matrix_shows_every_version_and_its_state(published: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "demo" / "1.1.0" / "disk.raw").unlink()
    result = matrix(manifest_with_policy(tmp_path))
    cells = {(v, s) for t in result.targets for v, _, s in version_cells(t)}
    assert ("1.0.0", "deprecated") in cells and ("1.2.0", "active") in cells
    assert not result.in_sync
    shown = CliRunner().invoke(
        app, ["status", str(manifest_with_policy(tmp_path)), "--all-versions", "--detailed-exitcode"]
    )
    assert shown.exit_code == 2
    assert "1.1.0" in shown.stdout and "deleting" in shown.stdout
    data = json.loads(
        CliRunner()
        .invoke(app, ["status", str(manifest_with_policy(tmp_path)), "--all-versions", "--json"])
        .stdout
    )
    assert data["in_sync"] is False and data["targets"][0]["cells"]


def test_prune_refuses_to_apply_without_yes_off_a_terminal(published: Path, tmp_path: Path) -> None:
    path = manifest_with_policy(tmp_path)
    refused = CliRunner().invoke(app, ["prune", str(path)])
    assert refused.exit_code == 2
    assert "refusing without --yes when not on a terminal" in refused.stderr
    dry = CliRunner().invoke(app, ["prune", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "dry run" in dry.stdout
    applied = CliRunner().invoke(app, ["prune", str(path), "--yes", "--json"])
    assert applied.exit_code == 0, applied.stdout
    report = json.loads(applied.stdout)
    actions = {v["version"]: v["action"] for v in report["targets"][0]["versions"]}
    assert actions["1.3.0"] == "current"


def test_publish_prunes_with_on_publish(write_manifest, tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0"):
        publish(write_manifest(LOCAL, version=version, name=f"m-{version}.yaml"))
    path = manifest_with_policy(tmp_path, "retention: {keep: 1, on_publish: true}\n", version="1.2.0")
    result = publish(path)
    assert result.exit_code == 0
    pruned = result.targets[0].pruned
    assert pruned is not None
    assert {v.version: v.verdict for v in pruned.versions} == {
        "1.2.0": "current",
        "1.1.0": "keep",
        "1.0.0": "deprecate",
    }
    assert versions_in(tmp_path) == {"1.0.0": True, "1.1.0": False, "1.2.0": False}


def test_a_target_policy_wins_over_the_top_level_one(tmp_path: Path, disk: Path) -> None:
    from imgpub.manifest import load_manifest

    path = tmp_path / "m.yaml"
    path.write_text(
        "image: {name: demo, version: 1.0.0, source: disk.raw}\n"
        "retention: {keep: 3, deprecate_after: 30d}\n"
        "targets:\n  - {name: a, provider: local, path: a}\n"
        "  - {name: b, provider: local, path: b, retention: {keep: 1}}\n"
    )
    a, b = load_manifest(path, env={}).targets
    assert (a.retention.keep, b.retention.keep) == (3, 1)  # type: ignore[union-attr]
    assert b.retention.deprecate_after == timedelta(days=30)  # type: ignore[union-attr]


def test_reconcile_reports_what_it_cannot_repair(published: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "demo" / "1.2.0" / "disk.raw").unlink()
    result = reconcile(manifest_with_policy(tmp_path), apply=False)
    reasons = {v.version: v.reason for v in result.targets[0].versions}
    assert reasons["1.3.0"] == "in sync"


def test_a_provider_without_lifecycle_says_so(write_manifest, fake_provider) -> None:
    result = prune(write_manifest("- name: f\n  provider: fake\n  retention: {keep: 1}\n"))
    assert result.exit_code == 2
    assert result.targets[0].error == "target f: provider fake does not list versions"


def test_the_publish_report_says_what_on_publish_pruned(write_manifest, tmp_path: Path) -> None:
    from imgpub.report import build_report

    publish(write_manifest(LOCAL, version="1.0.0", name="m-1.yaml"))
    path = manifest_with_policy(tmp_path, "retention: {keep: 0, on_publish: true}\n", version="1.1.0")
    report = build_report(publish(path))
    assert [(p["version"], p["action"]) for p in report["targets"][0]["pruned"]] == [
        ("1.1.0", "current"),
        ("1.0.0", "deprecate"),
    ]


def test_a_target_image_name_is_where_its_versions_are_found(write_manifest, tmp_path: Path) -> None:
    renamed = LOCAL + "  image_name: renamed\n"
    publish(write_manifest(renamed, version="1.0.0", name="r1.yaml"))
    path = manifest_with_policy(tmp_path, "retention: {keep: 0}\n", version="2.0.0")
    path.write_text(path.read_text() + "  image_name: renamed\n")
    found = matrix(path).targets[0].releases
    assert [r.version for r in found] == ["1.0.0"]
    assert (tmp_path / "out" / "renamed" / "1.0.0").is_dir()
