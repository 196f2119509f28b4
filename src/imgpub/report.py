"""The run report: JSON with every artifact per target and region, and GitHub Actions outputs."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from imgpub.pipeline import RunResult, TargetResult
from imgpub.provider import Artifact
from imgpub.redact import redact_data

__all__ = [
    "REPORT_VERSION",
    "build_report",
    "github_outputs",
    "markdown_summary",
    "write_github",
    "write_report",
]

REPORT_VERSION = 1


def _artifact(a: Artifact) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "id": a.id,
        "region": a.region,
        "uri": a.uri,
        **({"extra": dict(a.extra)} if a.extra else {}),
    }


def _state(t: TargetResult, result: RunResult) -> str:
    if not t.ok:
        return "failed"
    if t.status is not None:
        return "drifted" if t.status.drift or not t.status.artifacts else "published"
    if t.published is not None:
        return "published" if t.published.changed else "unchanged"
    if t.plan is not None:
        if t.plan.conflict:
            return "conflict"
        return "up-to-date" if t.plan.up_to_date else "planned"
    return "skipped"


def _target(t: TargetResult, result: RunResult) -> dict[str, Any]:
    artifacts: list[Artifact] = []
    if t.published is not None:
        artifacts = t.published.artifacts
    elif t.status is not None:
        artifacts = t.status.artifacts
    elif t.plan is not None:
        artifacts = t.plan.existing
    out: dict[str, Any] = {
        "name": t.target,
        "provider": t.provider,
        "status": _state(t, result),
        "ok": t.ok,
        "error": t.error,
        "digest": t.digest,
        "started": t.started,
        "seconds": t.seconds,
        "artifacts": [_artifact(a) for a in artifacts],
    }
    if t.plan is not None:
        out["plan"] = {"actions": [asdict(a) for a in t.plan.actions], "conflict": t.plan.conflict}
    if t.published is not None:
        out["changed"] = t.published.changed
        out["warnings"] = list(t.published.warnings)
    if t.pruned is not None:
        out["pruned"] = [
            {"version": v.version, "action": v.verdict, "reason": v.reason, "done": v.done, "error": v.error}
            for v in t.pruned.versions
        ]
    if t.status is not None:
        out["drift"] = list(t.status.drift)
    return out


def build_report(result: RunResult) -> dict[str, Any]:
    """Plain JSON-able data: the image, and per target its status, timings, digest and artifacts.
    Every string is redacted (imgpub.redact): reports land in CI logs and summaries."""
    image = result.image
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "command": result.command,
        "dry_run": result.dry_run,
        "manifest": str(result.manifest),
        "ok": result.ok,
        "exit_code": result.exit_code,
        "started": result.started,
        "seconds": result.seconds,
        "image": {
            "name": image.name,
            "version": image.version,
            "arch": image.arch,
            "boot": image.boot,
            "boot_source": image.boot_source,
            "virtual_size": image.virtual_size,
            "content_digest": image.content_digest,
            "source": image.source,
        },
        "warnings": list(result.warnings),
        "targets": [_target(t, result) for t in result.targets],
    }
    redacted: dict[str, Any] = redact_data(report)
    return redacted


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def write_report(report: Mapping[str, Any], path: Path) -> None:
    _atomic_write(path, report_json(report))


def _key(*parts: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(p for p in parts if p)).strip("_")


def github_outputs(report: Mapping[str, Any], report_path: Path | None = None) -> list[str]:
    """`<target>_<kind>_<region>=<id>` lines (region left out when there is none), and `report=`."""
    lines = []
    for t in report["targets"]:
        lines.append(f"{_key(t['name'], 'status')}={t['status']}")
        lines.append(f"{_key(t['name'], 'digest')}={t['digest']}")
        for a in t["artifacts"]:
            lines.append(f"{_key(t['name'], a['kind'], a['region'])}={a['id']}")
    lines.append(f"ok={'true' if report['ok'] else 'false'}")
    if report_path is not None:
        lines.append(f"report={report_path}")
    return lines


def markdown_summary(report: Mapping[str, Any]) -> str:
    image = report["image"]
    out = [
        f"### imgpub {report['command']}: {image['name']} {image['version']}",
        "",
        "| target | provider | status | region | artifact | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        status = t["status"] + (f": {t['error']}" if t["error"] else "")
        rows = t["artifacts"] or [{"region": None, "kind": "", "id": ""}]
        for a in rows:
            artifact = f"{a['kind']} `{a['id']}`" if a["id"] else ""
            cell = status.replace("|", "\\|")
            region = a["region"] or ""
            out.append(f"| {t['name']} | {t['provider']} | {cell} | {region} | {artifact} | {t['seconds']} |")
    return "\n".join(out) + "\n"


def write_github(report: Mapping[str, Any], env: Mapping[str, str], report_path: Path | None = None) -> None:
    """Append outputs to $GITHUB_OUTPUT and a table to $GITHUB_STEP_SUMMARY (when they are set)."""
    if output := env.get("GITHUB_OUTPUT"):
        with Path(output).open("a") as f:
            f.write("".join(line + "\n" for line in github_outputs(report, report_path)))
    if summary := env.get("GITHUB_STEP_SUMMARY"):
        with Path(summary).open("a") as f:
            f.write(markdown_summary(report))
