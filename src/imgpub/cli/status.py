"""`imgpub status MANIFEST`: what is published for this image, and how it drifts."""

from __future__ import annotations

from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def status(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    all_versions: bool = typer.Option(
        False, "--all-versions", help="Every version x target x region, with its state."
    ),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when anything is missing, failed or drifted (0: in sync)."
    ),
    json_: bool = options.JSON,
) -> None:
    """Show every target's artifacts for this image version and what differs from the manifest."""
    with guarded():
        if all_versions:
            from imgpub.cli.lifecycle_render import show as show_matrix
            from imgpub.lifecycle import matrix

            found = matrix(manifest, target or None)
            code = found.exit_code or (2 if detailed_exitcode and not found.in_sync else 0)
            show_matrix(found, json_, exit_code=code)
            return
        from imgpub.cli.render import show
        from imgpub.pipeline import status as run

        with Board() as board:
            result = run(manifest, target or None, progress=board.factory)
        code = result.exit_code
        if detailed_exitcode and not code and any(t.status and t.status.drift for t in result.targets):
            code = 2
        show(result, json_, exit_code=code)
