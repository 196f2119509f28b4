"""`imgpub publish MANIFEST`: make every target match the manifest."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def publish(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only plan; change nothing."),
    replace: bool = typer.Option(
        False, "--replace", help="Overwrite a published version whose content differs."
    ),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report to this file."),
    json_: bool = options.JSON,
    concurrency: int = options.CONCURRENCY,
) -> None:
    """Publish the image to every target (or the --target ones), concurrently."""
    with guarded():
        from imgpub.cli.render import show
        from imgpub.journal import default_state_dir
        from imgpub.pipeline import publish as run
        from imgpub.report import build_report, write_github, write_report

        with Board() as board:
            result = run(
                manifest,
                target or None,
                dry_run=dry_run,
                replace=replace,
                concurrency=concurrency,
                progress=board.factory,
            )
        data = build_report(result)
        if report is not None:
            write_report(data, report)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            path = report or Path(os.environ.get("RUNNER_TEMP") or default_state_dir()) / "imgpub-report.json"
            if report is None:
                write_report(data, path)
            write_github(data, os.environ, path)
        show(result, json_, data)
