"""`imgpub reconcile MANIFEST`: every published version back in line with the settings."""

from __future__ import annotations

from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def reconcile(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would change."),
    json_: bool = options.JSON,
) -> None:
    """Fill in missing regions from a copy that exists, re-apply sharing, tags and deprecation for
    every published version; never uploads."""
    with guarded():
        from imgpub.cli.lifecycle_render import show
        from imgpub.lifecycle import reconcile as run

        with Board() as board:
            result = run(manifest, target or None, apply=not dry_run, progress=board.factory)
        show(result, json_)
