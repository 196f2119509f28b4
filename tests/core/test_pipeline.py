"""The pipeline: concurrent targets, isolated failures, conflicts, dry runs and the journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgpub
from imgpub.errors import ChecksumMismatchError, ManifestError
from imgpub.pipeline import publish

TWO = """\
- name: good
  provider: fake
- name: bad
  provider: fake
  behaviour: fail
  regions: [r9]
"""


def test_one_failing_target_does_not_stop_the_other(write_manifest, fake_provider) -> None:
    result = publish(write_manifest(TWO))
    good, bad = result.targets
    assert good.ok and good.published is not None
    assert [a.id for a in good.published.artifacts] == ["img-good-r1"]
    assert not bad.ok and bad.exit_code == 1
    assert bad.error == "target bad: CreateImage in r9 failed [Quota]: quota exceeded"
    assert result.exit_code == 1
    assert ("publish", "good") in fake_provider.calls and ("publish", "bad") in fake_provider.calls


def test_a_crashing_provider_is_isolated(write_manifest, fake_provider) -> None:
    result = publish(
        write_manifest("- name: a\n  provider: fake\n  behaviour: crash\n- name: b\n  provider: fake\n")
    )
    assert [t.ok for t in result.targets] == [False, True]
    assert result.targets[0].error == "unexpected RuntimeError: provider bug"


def test_targets_run_concurrently(write_manifest, fake_provider) -> None:
    targets = "".join(f"- name: t{i}\n  provider: fake\n  rendezvous: 3\n" for i in range(3))
    result = publish(write_manifest(targets), concurrency=3)
    assert result.exit_code == 0, [t.error for t in result.targets]


def test_concurrency_is_bounded(write_manifest, fake_provider) -> None:
    targets = "".join(f"- name: t{i}\n  provider: fake\n  rendezvous: 2\n  wait: 0.3\n" for i in range(2))
    result = publish(write_manifest(targets), concurrency=1)
    assert all(not t.ok and "BrokenBarrierError" in str(t.error) for t in result.targets)


def test_conflict_needs_replace(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: c\n  provider: fake\n  behaviour: conflict\n")
    result = publish(path)
    assert result.exit_code == 1
    assert result.targets[0].error == (
        "target c: fake image exists with other content; "
        "publish a new version, or re-run with --replace to replace it"
    )
    assert ("publish", "c") not in fake_provider.calls
    assert publish(path, replace=True).exit_code == 0


def test_a_plan_that_finds_a_conflict_exits_as_publish_would(write_manifest, fake_provider) -> None:
    targets = "- name: c\n  provider: fake\n  behaviour: conflict\n- name: ok\n  provider: fake\n"
    path = write_manifest(targets)
    planned = imgpub.plan(path)
    assert [t.ok for t in planned.targets] == [True, True]
    assert [t.target for t in planned.conflicts] == ["c"]
    assert planned.exit_code == 1
    assert publish(path, dry_run=True).exit_code == 1
    assert publish(path, dry_run=True, replace=True).exit_code == 0


def test_a_provider_may_say_how_to_go_on_from_its_conflict(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: c\n  provider: fake\n  behaviour: conflict\n  conflict_hint: rename it\n")
    assert publish(path).targets[0].error == "target c: fake image exists with other content; rename it"


def test_provider_warnings_reach_the_run_and_validate(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: w\n  provider: fake\n  regions: [r1, new-region-9]\n")
    result = publish(path)
    assert result.exit_code == 0
    assert result.warnings == [f"{path}:8:19: targets[0].regions[1]: unknown region 'new-region-9'"]
    assert imgpub.validate(path).warnings == tuple(result.warnings)


def test_dry_run_only_plans(write_manifest, fake_provider) -> None:
    result = publish(write_manifest(TWO), dry_run=True)
    assert result.exit_code == 0 and result.dry_run
    assert [c[0] for c in fake_provider.calls] == ["plan", "plan"]
    assert [len(t.plan.actions) for t in result.targets if t.plan] == [1, 1]


def test_select_targets(write_manifest, fake_provider) -> None:
    result = publish(write_manifest(TWO), ["good"])
    assert [t.target for t in result.targets] == ["good"]


def test_journal_is_per_target_and_version(write_manifest, fake_provider, tmp_path: Path) -> None:
    publish(write_manifest("- name: good\n  provider: fake\n"), state_dir=tmp_path / "st")
    assert json.loads((tmp_path / "st" / "demo_1.0.0" / "good.json").read_text()) == {"done": True}


def test_digest_depends_on_content_and_registration(write_manifest, fake_provider, disk: Path) -> None:
    path = write_manifest("- name: good\n  provider: fake\n")
    first = publish(path).targets[0].digest
    assert publish(path).targets[0].digest == first
    arm = write_manifest("- name: good\n  provider: fake\n", image_extra="arch: arm64\n", name="b.yaml")
    assert publish(arm).targets[0].digest != first
    with disk.open("r+b") as f:
        f.seek(2 << 20)
        f.write(b"new data")
    assert publish(path).targets[0].digest != first


def test_sha256_mismatch_is_bad_input(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: good\n  provider: fake\n", image_extra="sha256: " + "0" * 64 + "\n")
    with pytest.raises(ChecksumMismatchError) as err:
        publish(path)
    assert err.value.exit_code == 2 and "but the manifest expects 0000" in str(err.value)


def test_provider_checks_run_before_publishing(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: small\n  provider: fake\n  max_size: 1024\n")
    with pytest.raises(ManifestError, match=r":8:15: targets\[0\]\.max_size: the image is 4194304 bytes"):
        publish(path)
    assert fake_provider.calls == []


def test_missing_source_names_the_field(write_manifest, fake_provider, disk: Path) -> None:
    path = write_manifest("- name: good\n  provider: fake\n")
    disk.unlink()
    with pytest.raises(ManifestError, match=r":4:11: image\.source: no such file: "):
        imgpub.plan(path)


def test_status_and_plan_use_the_providers(write_manifest, fake_provider) -> None:
    path = write_manifest(TWO)
    assert [t.status.drift for t in imgpub.status(path).targets if t.status] == [["not published"]] * 2
    assert all(t.plan and not t.plan.up_to_date for t in imgpub.plan(path).targets)
