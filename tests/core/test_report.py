"""The JSON report and the GitHub Actions outputs."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imgpub.cli import app
from imgpub.pipeline import publish
from imgpub.report import build_report, github_outputs, markdown_summary, write_github, write_report

TWO = (
    "- name: good\n  provider: fake\n  regions: [r1, r2]\n- name: bad\n  provider: fake\n  behaviour: fail\n"
)


def test_report_lists_every_artifact_per_target_and_region(
    write_manifest, fake_provider, tmp_path: Path
) -> None:
    result = publish(write_manifest(TWO))
    report = build_report(result)
    assert report["ok"] is False and report["exit_code"] == 1 and report["command"] == "publish"
    assert report["image"]["content_digest"] == result.image.content_digest
    good, bad = report["targets"]
    assert good["status"] == "published" and good["digest"] == result.targets[0].digest
    assert [(a["region"], a["id"]) for a in good["artifacts"]] == [
        ("r1", "img-good-r1"),
        ("r2", "img-good-r2"),
    ]
    assert bad["status"] == "failed" and bad["error"].endswith("quota exceeded") and bad["artifacts"] == []
    assert isinstance(good["seconds"], float) and good["started"]
    write_report(report, tmp_path / "r" / "report.json")
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == json.loads(json.dumps(report))


def test_github_outputs_and_summary(write_manifest, fake_provider, tmp_path: Path) -> None:
    report = build_report(publish(write_manifest(TWO)))
    lines = github_outputs(report, tmp_path / "report.json")
    assert "good_image_r1=img-good-r1" in lines and "good_image_r2=img-good-r2" in lines
    assert "good_status=published" in lines and "bad_status=failed" in lines
    assert f"good_digest={report['targets'][0]['digest']}" in lines
    assert lines[-2:] == ["ok=false", f"report={tmp_path / 'report.json'}"]
    out, summary = tmp_path / "out.txt", tmp_path / "summary.md"
    out.write_text("earlier=1\n")
    write_github(
        report, {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}, tmp_path / "report.json"
    )
    assert out.read_text().splitlines() == ["earlier=1", *lines]
    table = summary.read_text()
    assert table == markdown_summary(report)
    assert "| good | fake | published | r2 | image `img-good-r2` |" in table
    assert "| bad | fake | failed: target bad: CreateImage in r1 failed [Quota]: quota exceeded |" in table


def test_report_carries_warnings_and_the_cli_prints_them(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: w\n  provider: fake\n  regions: [new-region-1]\n")
    report = build_report(publish(path))
    assert report["exit_code"] == 0
    assert report["warnings"] == [f"{path}:8:15: targets[0].regions[0]: unknown region 'new-region-1'"]
    validated = CliRunner().invoke(app, ["validate", str(path)])
    assert validated.exit_code == 0
    assert f"imgpub: warning: {report['warnings'][0]}" in validated.stderr


def test_no_credential_reaches_the_report_summary_or_the_error_line(write_manifest, fake_provider) -> None:
    path = write_manifest("- name: leaky\n  provider: fake\n  behaviour: leak\n")
    report = build_report(publish(path))
    text = json.dumps(report) + markdown_summary(report) + "\n".join(github_outputs(report))
    assert "SASSECRET" not in text and "SESSIONSECRET" not in text
    assert "sig=REDACTED" in report["targets"][0]["error"]
    shown = CliRunner().invoke(app, ["publish", str(path)])
    assert shown.exit_code == 1 and "upload_id=REDACTED" in shown.stdout
    assert "SASSECRET" not in shown.stdout + shown.stderr
