"""JSON for `prune`, `status --all-versions` and `reconcile`: per target, every version, with what
the policy said and what was done; the version matrix as cells. Redacted like every report."""

from __future__ import annotations

from typing import Any

from imgpub.lifecycle import LifecycleResult, TargetLifecycle, version_cells
from imgpub.redact import redact_data

__all__ = ["lifecycle_report"]

REPORT_VERSION = 1


def _target(t: TargetLifecycle, result: LifecycleResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.target,
        "provider": t.provider,
        "ok": t.ok and not any(v.error for v in t.versions),
        "error": t.error,
        "regions": t.regions,
    }
    if result.command == "prune":
        out["policy"] = None if t.policy is None else t.policy.model_dump(mode="json")
    if result.command == "versions":
        out["cells"] = [
            {"version": version, "region": region, "state": state}
            for version, region, state in version_cells(t)
        ]
        out["releases"] = [
            {
                "version": r.version,
                "state": r.state,
                "created": r.created.isoformat() if r.created else None,
                "regions": list(r.regions),
                "digest": r.digest,
                "artifacts": [{"kind": a.kind, "id": a.id, "region": a.region} for a in r.artifacts],
                "drift": list(r.drift),
            }
            for r in t.releases
        ]
    else:
        out["versions"] = [
            {
                "version": v.version,
                "state": v.state,
                "action": v.verdict,
                "reason": v.reason,
                "age_days": v.age_days,
                "done": v.done,
                "error": v.error,
            }
            for v in t.versions
        ]
    return out


def lifecycle_report(result: LifecycleResult) -> dict[str, Any]:
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "command": result.command,
        "dry_run": result.dry_run,
        "manifest": str(result.manifest),
        "image": result.name,
        "current_version": result.current,
        "ok": result.exit_code == 0,
        "exit_code": result.exit_code,
        "started": result.started,
        "seconds": result.seconds,
        "targets": [_target(t, result) for t in result.targets],
    }
    if result.command == "versions":
        report["in_sync"] = result.in_sync
    redacted: dict[str, Any] = redact_data(report)
    return redacted
