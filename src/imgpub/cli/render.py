"""Human text for a run (the --json output is the report itself)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from imgpub.cli.console import annotate, out, warning_line
from imgpub.errors import ImageConflictError
from imgpub.redact import redact

if TYPE_CHECKING:
    from imgpub.pipeline import RunResult, TargetResult


def show(
    result: RunResult, json_: bool, report: Mapping[str, Any] | None = None, *, exit_code: int | None = None
) -> None:
    """The run on stdout, as the JSON report (`report`, if already built) or as text; then exit with
    `exit_code` (default: the run's own) when it is not 0."""
    for warning in result.warnings:
        warning_line(warning)
    for t in result.targets:
        if not t.ok:
            annotate("error", t.error or "failed", title=f"imgpub: target {t.target}")
        for w in t.published.warnings if t.published else []:
            annotate("warning", w, title=f"imgpub: target {t.target}")
    if json_:
        from imgpub.report import build_report, report_json

        typer.echo(report_json(build_report(result) if report is None else report), nl=False)
    else:
        render(result)
    code = result.exit_code if exit_code is None else exit_code
    if code:
        raise typer.Exit(code)


def _where(a_region: str | None) -> str:
    return f" [{a_region}]" if a_region else ""


def _head(t: TargetResult, state: str) -> None:
    out(f"{t.target} ({t.provider}): {state}")


def render(result: RunResult) -> None:
    image = result.image
    out(f"{image.name} {image.version}  content {image.content_digest[:16]}  ({result.command})")
    if image.boot_source != "image.boot":
        out(f"boot {image.boot} (from {image.boot_source}; set image.boot to choose)")
    for t in result.targets:
        if not t.ok:
            _head(t, f"FAILED: {redact(_without_target_prefix(t.error or '', t.target))}")
            continue
        if t.status is not None:
            _head(t, "drifted" if t.status.drift else "published")
            for a in t.status.artifacts:
                out(f"  {a.kind:<10} {a.id}{_where(a.region)}")
            for d in t.status.drift:
                out(f"  ! {redact(d)}")
        elif t.published is not None:
            _head(t, "published" if t.published.changed else "unchanged (already published)")
            for a in t.published.artifacts:
                out(f"  {a.kind:<10} {a.id}{_where(a.region)}")
            for w in t.published.warnings:
                out(f"  warning: {redact(w)}")
        elif t.plan is not None:
            if t.plan.conflict:
                _head(t, f"CONFLICT: {t.plan.conflict}; {t.plan.conflict_hint or ImageConflictError.HINT}")
            else:
                _head(t, "up to date" if t.plan.up_to_date else f"{len(t.plan.actions)} action(s)")
            for act in t.plan.actions:
                out(f"  + {act.kind:<8} {act.resource}{_where(act.region)}  ({act.detail})")
            for a in t.plan.existing if t.plan.up_to_date else []:
                out(f"  = {a.kind:<8} {a.id}{_where(a.region)}")
    failed = [t.target for t in result.targets if not t.ok]
    if failed:
        out(f"{len(failed)} of {len(result.targets)} target(s) failed: {', '.join(failed)}")
    if result.command == "plan" or result.dry_run:
        out(summary(result))


def summary(result: RunResult) -> str:
    """`Plan: 1 to upload, 3 to create, 1 to copy.` (or `nothing to do`), counted over every target."""
    counts: dict[str, int] = {}
    for t in result.targets:
        for act in t.plan.actions if t.plan else []:
            counts[act.kind] = counts.get(act.kind, 0) + 1
    conflicts = len(result.conflicts)
    parts = [f"{n} to {kind}" for kind, n in counts.items()]
    if conflicts:
        parts.append(f"{conflicts} in conflict")
    return f"Plan: {', '.join(parts)}." if parts else "Plan: nothing to do."


def _without_target_prefix(error: str, target: str) -> str:
    """`target x: msg` -> `msg`: the line already starts with the target's name."""
    prefix = f"target {target}: "
    return error[len(prefix) :] if error.startswith(prefix) else error
