"""Text for `prune`, `status --all-versions` and `reconcile` (--json prints the report instead)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from imgpub.cli.console import out
from imgpub.redact import redact

if TYPE_CHECKING:
    from imgpub.lifecycle import LifecycleResult

ACTING = ("deprecate", "delete", "finish")


def show(result: LifecycleResult, json_: bool, *, exit_code: int | None = None) -> None:
    """The result on stdout, then exit with `exit_code` (default: the run's own) when it is not 0."""
    if json_:
        from imgpub.lifecycle_report import lifecycle_report
        from imgpub.report import report_json

        typer.echo(report_json(lifecycle_report(result)), nl=False)
    elif result.command == "versions":
        _matrix(result)
    else:
        _actions(result)
    code = result.exit_code if exit_code is None else exit_code
    if code:
        raise typer.Exit(code)


def acting(result: LifecycleResult) -> int:
    """How many versions the run changes (or would change)."""
    return sum(1 for t in result.targets for v in t.versions if v.verdict in ACTING or v.done)


def _actions(result: LifecycleResult) -> None:
    what = {"prune": "prune", "reconcile": "reconcile"}[result.command]
    mode = " (dry run: nothing changed)" if result.dry_run else ""
    out(f"{result.name}: {what}{mode}")
    for t in result.targets:
        if not t.ok:
            out(f"{t.target} ({t.provider}): FAILED: {redact(t.error or '')}")
            continue
        if result.command == "prune" and (t.policy is None or not t.policy.active) and not t.versions:
            out(f"{t.target} ({t.provider}): no retention policy")
            continue
        out(f"{t.target} ({t.provider}): {len(t.releases)} version(s)")
        for v in t.versions:
            if result.command == "prune" and v.verdict not in ACTING and not result.dry_run:
                continue
            age = f", {v.age_days:.0f}d old" if v.age_days is not None else ""
            mark = "+" if v.verdict in ACTING or (v.verdict == "reconcile" and v.reason != "in sync") else "="
            out(f"  {mark} {v.version:<16} {v.verdict:<10} {v.reason}{age}")
            for line in v.done:
                out(f"      done: {redact(line)}")
            if v.error:
                out(f"      FAILED: {redact(v.error)}")
    failed = [f"{t.target} {v.version}" for t in result.targets for v in t.versions if v.error]
    if failed:
        out(f"{len(failed)} version(s) failed: {', '.join(failed)}")


def _matrix(result: LifecycleResult) -> None:
    from imgpub.lifecycle import version_cells

    out(f"{result.name}: every version (the manifest's is {result.current})")
    for t in result.targets:
        if not t.ok:
            out(f"{t.target} ({t.provider}): FAILED: {redact(t.error or '')}")
            continue
        out(f"{t.target} ({t.provider})")
        cells = version_cells(t)
        if not cells:
            out("  (no version published)")
        for version, region, state in cells:
            where = region or "-"
            flag = "!" if state in ("missing", "failed", "deleting", "drift") else " "
            out(f"  {flag} {version:<16} {where:<16} {state}")
        for r in t.releases:
            for d in r.drift:
                out(f"    {r.version}: {redact(d)}")
    out("in sync" if result.in_sync else "NOT in sync: missing, failed or drifted cells are marked !")
