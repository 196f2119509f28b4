"""The command line: exit codes, one-line errors, JSON output, GitHub outputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imaging import qemu_img
from imgpub.cli import app
from imgpub.redact import RedactingFilter

LOCAL = "- name: out\n  provider: local\n  path: out\n"


def run(*args: str | Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_manifest_error_is_one_line_and_exit_2(write_manifest) -> None:
    path = write_manifest(LOCAL + "  formts: [raw]\n")
    result = run("validate", path)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"imgpub: error: {path}:9:5: targets[0].formts: unknown field 'formts'; did you mean 'formats'?\n"
    )
    assert result.stdout == ""


def test_validate_ok(write_manifest) -> None:
    path = write_manifest(LOCAL)
    result = run("validate", path)
    assert result.exit_code == 0 and result.stdout == f"{path}: ok: demo 1.0.0 -> out (local)\n"


def test_unset_variable_through_the_cli(write_manifest) -> None:
    path = write_manifest(LOCAL, version="${IMGPUB_TEST_VERSION}")
    result = run("plan", path)
    assert (
        result.exit_code == 2
        and f"{path}:3:12: image.version: environment variable IMGPUB_TEST_VERSION" in result.stderr
    )
    result = run("plan", path, env={"IMGPUB_TEST_VERSION": "9.9"})
    assert result.exit_code == 0 and "demo 9.9" in result.stdout


def test_publish_twice_and_json(write_manifest, tmp_path: Path) -> None:
    path = write_manifest(LOCAL)
    first = run("publish", path)
    assert first.exit_code == 0, first.stderr
    assert (
        "out (local): published" in first.stdout
        and str(tmp_path / "out" / "demo" / "1.0.0" / "disk.raw") in first.stdout
    )
    second = run("publish", path, "--json")
    assert second.exit_code == 0
    report = json.loads(second.stdout)
    assert report["targets"][0]["status"] == "unchanged" and report["targets"][0]["changed"] is False


def test_failed_target_exit_1_with_report(write_manifest, fake_provider, tmp_path: Path) -> None:
    path = write_manifest(
        "- name: good\n  provider: fake\n- name: bad\n  provider: fake\n  behaviour: fail\n"
    )
    result = run("publish", path, "--report", tmp_path / "report.json")
    assert result.exit_code == 1
    assert "bad (fake): FAILED: CreateImage in r1 failed [Quota]: quota exceeded" in result.stdout
    assert "good (fake): published" in result.stdout
    assert "error" not in result.stderr  # a failed target is reported, not raised
    assert "sdk chatter" not in result.stderr
    assert [t["status"] for t in json.loads((tmp_path / "report.json").read_text())["targets"]] == [
        "published",
        "failed",
    ]


def test_github_actions_outputs(write_manifest, fake_provider, tmp_path: Path) -> None:
    out, summary = tmp_path / "gh_out", tmp_path / "gh_summary"
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(tmp_path),
    }
    result = run("publish", write_manifest("- name: good\n  provider: fake\n"), env=env)
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert "good_image_r1=img-good-r1" in lines and f"report={tmp_path / 'imgpub-report.json'}" in lines
    assert json.loads((tmp_path / "imgpub-report.json").read_text())["ok"] is True
    assert "| good | fake | published | r1 |" in summary.read_text()


def test_conflict_then_replace(write_manifest, disk: Path) -> None:
    path = write_manifest(LOCAL)
    assert run("publish", path).exit_code == 0
    with disk.open("r+b") as f:
        f.write(b"other")
    plan = run("plan", path)
    assert plan.exit_code == 1 and "CONFLICT" in plan.stdout
    assert plan.stdout.count("--replace") == 1, plan.stdout
    refused = run("publish", path)
    assert refused.exit_code == 1
    assert refused.stderr.count("--replace") + refused.stdout.count("--replace") == 1
    assert run("publish", path, "--replace").exit_code == 0


def test_dry_run_changes_nothing(write_manifest, tmp_path: Path) -> None:
    result = run("publish", write_manifest(LOCAL), "--dry-run")
    assert result.exit_code == 0 and "+ create" in result.stdout
    assert not (tmp_path / "out").exists()


def test_bad_image_is_exit_2(write_manifest, disk: Path) -> None:
    disk.write_bytes(b"QFI\xfb" + bytes(100))
    result = run("publish", write_manifest(LOCAL))
    assert (
        result.exit_code == 2
        and result.stderr.startswith("imgpub: error: ")
        and result.stderr.count("\n") == 1
    )


def test_unknown_target_and_usage_errors(write_manifest) -> None:
    result = run("plan", write_manifest(LOCAL), "--target", "nope")
    assert result.exit_code == 2 and "no target named 'nope'" in result.stderr
    assert run("publish").exit_code == 2
    assert run("publish", "x.yaml", "--concurrency", "0").exit_code == 2


def test_status_json(write_manifest) -> None:
    path = write_manifest(LOCAL)
    result = run("status", path, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["targets"][0]["status"] == "drifted"


def test_convert_and_inspect(disk: Path, tmp_path: Path) -> None:
    qcow2 = tmp_path / "d.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", disk, qcow2)
    for to, fmt in (("raw", "raw"), ("vhd", "vpc")):
        out = tmp_path / f"o.{to}"
        result = run("convert", qcow2, "--to", to, "-o", out)
        assert result.exit_code == 0, result.stderr
        qemu_img("compare", "-f", "raw", "-F", fmt, disk, out)
    assert (
        run(
            "convert", qcow2, "--to", "gce-tar", "-o", tmp_path / "d.tar.gz", "--compression-level", "6"
        ).exit_code
        == 0
    )
    data = json.loads(run("inspect", qcow2, "--json").stdout)
    assert data["format"] == "qcow2" and data["virtual_size"] == 4 << 20
    assert data["data_extents"][0]["offset"] == 0 and data["partition_table"] == "gpt"
    covered = sorted([(e["offset"], e["length"]) for e in data["data_extents"] + data["zero_extents"]])
    assert sum(n for _, n in covered) == data["virtual_size"] and covered[0][0] == 0


def test_inspect_quickstart_disk() -> None:
    disk = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "disk.qcow2"
    result = run("inspect", disk)
    assert result.exit_code == 0
    assert "partitions      gpt" in result.stdout and "suggested boot  uefi" in result.stdout


def test_missing_image_is_one_line(tmp_path: Path) -> None:
    result = run("inspect", tmp_path / "nope.qcow2")
    assert (
        result.exit_code == 2
        and result.stderr == f"imgpub: error: {tmp_path / 'nope.qcow2'}: image file: no such file\n"
    )


def test_version_and_providers() -> None:
    from imgpub import __version__

    assert run("--version").stdout == f"imgpub {__version__}\n"
    result = run("providers", "--json")
    assert {
        "name": "local",
        "distribution": "imgpub",
        "version": __version__,
        "entry_point": "imgpub.local:LocalProvider",
    } in json.loads(result.stdout)


def test_providers_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgpub import plugins

    monkeypatch.setenv("IMGPUB_PROVIDERS", "local")
    plugins.available.cache_clear()
    try:
        assert [p["name"] for p in json.loads(run("providers", "--json").stdout)] == ["local"]
    finally:
        monkeypatch.delenv("IMGPUB_PROVIDERS")
        plugins.available.cache_clear()


def test_debug_shows_the_traceback_with_the_errors_exit_code(tmp_path: Path) -> None:
    result = run("--debug", "inspect", tmp_path / "nope.qcow2")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr and "ImageFormatError" in result.stderr


def test_error_lines_and_tracebacks_carry_no_credentials(tmp_path: Path) -> None:
    folder = tmp_path / "x?sv=2023&sig=TOPSECRET"
    plain = run("inspect", folder / "disk.qcow2")
    assert plain.exit_code == 2 and "sig=REDACTED" in plain.stderr and "TOPSECRET" not in plain.stderr
    debug = run("--debug", "inspect", folder / "disk.qcow2")
    assert "Traceback" in debug.stderr and "sig=REDACTED" in debug.stderr
    assert "TOPSECRET" not in debug.stderr


@pytest.mark.parametrize(
    ("args", "sdk_level"),
    [(["--debug"], logging.WARNING), (["--debug-wire"], logging.DEBUG)],
)
def test_sdk_wire_logs_need_debug_wire(args: list[str], sdk_level: int, tmp_path: Path) -> None:
    try:
        assert run(*args, "inspect", tmp_path / "nope.qcow2").exit_code == 2
        assert logging.getLogger("botocore").level == sdk_level
        assert logging.getLogger("urllib3").level == sdk_level
        ours = [h for h in logging.getLogger().handlers if getattr(h, "imgpub", False)]
        assert len(ours) == 1 and any(isinstance(f, RedactingFilter) for f in ours[0].filters)
    finally:
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "imgpub", False)]:
            logging.getLogger().removeHandler(handler)


def test_debug_spellings() -> None:
    from imgpub.cli import _debug_spelling

    assert [_debug_spelling(a) for a in ["--debug=wire", "--debug=1", "--debug", "plan"]] == [
        "--debug-wire",
        "--debug",
        "--debug",
        "plan",
    ]


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['imgpub', '--help']\n"
        "from imgpub.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'google', 'azure', 'imgpub_aws', 'imgpub_gcp', 'imgpub_azure', 'pydantic'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["publsh", "x.yaml"],
            "imgpub: error: No such command 'publsh'. Did you mean 'publish'? (see 'imgpub --help')",
        ),
        (["status"], "imgpub: error: Missing argument 'manifest'. (see 'imgpub status --help')"),
        (
            ["inspect", "d.raw", "--bogus"],
            "imgpub: error: No such option: --bogus (see 'imgpub inspect --help')",
        ),
        (
            ["convert", "--to", "zip", "d.raw", "-o", "x"],
            "imgpub: error: Invalid value for '--to': Value error, 'zip' is not one of 'raw', 'vhd', "
            "'gce-tar'. "
            "(see 'imgpub convert --help')",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from imgpub.cli import run as run_cli

    assert run_cli(args) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_run_returns_the_commands_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imgpub.cli import run as run_cli

    assert run_cli(["--version"]) == 0
    assert run_cli(["inspect", str(tmp_path / "none.raw")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert run_cli([]) == 2 and "Usage" in capsys.readouterr().out


def test_validate_lists_every_error_one_line_each(tmp_path: Path, disk: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        f"image:\n  name: demo\n  version: 1.0.0\n  source: {disk}\n  bot: uefi\n  arch: sparc\n"
        "targets:\n  - {name: a, provider: local, path: out, formts: [raw]}\n"
        "  - {name: b, provider: local}\n"
    )
    result = run("validate", path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"imgpub: error: {path}:5:3: image.bot: unknown field 'bot'; did you mean 'boot'?",
        f"imgpub: error: {path}:6:9: image.arch: Input should be 'x86_64' or 'arm64' (got 'sparc')",
        f"imgpub: error: {path}:8:43: targets[0].formts: unknown field 'formts'; did you mean 'formats'?",
        f"imgpub: error: {path}:9:5: targets[1].path: required field is missing",
    ]


def test_at_most_twenty_errors_are_listed(tmp_path: Path, disk: Path) -> None:
    path = tmp_path / "many.yaml"
    typos = "".join(f"  typo{i}: x\n" for i in range(30))
    path.write_text(
        f"image:\n  name: demo\n  version: 1.0.0\n  source: {disk}\n{typos}"
        "targets:\n  - {name: a, provider: local, path: out}\n"
    )
    result = run("validate", path)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 20


def test_plan_summary_and_detailed_exitcode(write_manifest) -> None:
    path = write_manifest(LOCAL)
    before = run("plan", path, "--detailed-exitcode")
    assert before.exit_code == 2 and before.stdout.splitlines()[-1] == "Plan: 4 to create."
    assert run("publish", path).exit_code == 0
    after = run("plan", path, "--detailed-exitcode")
    assert after.exit_code == 0 and after.stdout.splitlines()[-1] == "Plan: nothing to do."
    assert run("plan", path).exit_code == 0


def test_plan_matrix_for_ci_shards(write_manifest, tmp_path: Path) -> None:
    two = write_manifest(LOCAL + "- name: other\n  provider: local\n  path: out2\n")
    shards = json.loads(run("plan", "--matrix", two).stdout)
    assert shards == [
        {"manifest": str(two), "target": "out", "provider": "local"},
        {"manifest": str(two), "target": "other", "provider": "local"},
    ]
    assert json.loads(run("plan", "--matrix", two, "--target", "other").stdout) == [shards[1]]
    one = write_manifest(LOCAL, name="one.yaml")
    per_manifest = json.loads(run("plan", "--matrix", two, one).stdout)
    assert [s["manifest"] for s in per_manifest] == [str(two), str(one)]
    refused = run("plan", two, one)
    assert refused.exit_code == 2 and "several only with --matrix" in refused.stderr


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    assert "--install-completion" in run("--help").stdout
    shown = subprocess.run(
        [sys.executable, "-m", "imgpub", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        env={**os.environ, "SHELL": "/bin/bash", "HOME": str(tmp_path)},
    )
    assert shown.returncode == 0 and "_imgpub_completion" in shown.stdout
    completed = subprocess.run(
        [sys.executable, "-m", "imgpub"],
        capture_output=True,
        text=True,
        env={**os.environ, "_IMGPUB_COMPLETE": "complete_bash", "COMP_WORDS": "imgpub pu", "COMP_CWORD": "1"},
    )
    assert "publish" in completed.stdout


def test_github_actions_annotations_point_at_the_manifest_line(
    tmp_path: Path, disk: Path, write_manifest
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"image:\n  name: demo\n  version: 1.0.0\n  source: {disk}\n  bot: x\ntargets:\n{LOCAL}")
    result = run("validate", path, env={"GITHUB_ACTIONS": "true"})
    assert (
        f"::error file={path},line=5,col=3,title=imgpub::image.bot: unknown field 'bot'; did you mean 'boot'?"
        in (result.stderr.splitlines())
    )
    assert "::error" not in run("validate", path).stderr, "only inside GitHub Actions"


def test_a_failed_target_is_annotated(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: bad\n  provider: fake\n  behaviour: fail\n")
    result = run(
        "publish",
        path,
        "--json",
        env={"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": "", "GITHUB_STEP_SUMMARY": ""},
    )
    assert result.exit_code == 1
    assert (
        "::error title=imgpub%3A target bad::target bad: CreateImage in r1 failed [Quota]: quota exceeded"
        in result.stderr
    )
    json.loads(result.stdout)  # annotations never spoil --json
