"""`imgpub status MANIFEST`: what is published for this image, and how it drifts."""

from __future__ import annotations

from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def status(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    json_: bool = options.JSON,
) -> None:
    """Show every target's artifacts for this image version and what differs from the manifest."""
    with guarded():
        from imgpub.cli.render import render
        from imgpub.pipeline import status as run
        from imgpub.report import build_report, report_json

        with Board() as board:
            result = run(manifest, target or None, progress=board.factory)
        if json_:
            typer.echo(report_json(build_report(result)), nl=False)
        else:
            render(result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)
