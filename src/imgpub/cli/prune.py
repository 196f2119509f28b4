"""`imgpub prune MANIFEST`: the retention policy, planned, then applied with --yes or at the prompt."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def prune(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what the policy would do."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    json_: bool = options.JSON,
) -> None:
    """Deprecate and delete older versions by the manifest's retention policy, on every target."""
    with guarded():
        from imgpub.cli.lifecycle_render import acting, show
        from imgpub.errors import ConfigurationError
        from imgpub.lifecycle import prune as run

        planned = run(manifest, target or None, apply=False)
        if dry_run or acting(planned) == 0 or planned.exit_code:
            show(planned, json_)
            return
        if not yes:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise ConfigurationError(
                    f"prune would change {acting(planned)} version(s); refusing without --yes when not on "
                    "a terminal (run with --dry-run to see them)"
                )
            show(planned, False)
            if not typer.confirm("Apply this?", default=False):
                raise typer.Exit(1)
        with Board() as board:
            done = run(manifest, target or None, apply=True, progress=board.factory)
        show(done, json_)
