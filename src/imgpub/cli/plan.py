"""`imgpub plan MANIFEST`: what publish would do on every target (or, with --matrix, the CI shards)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def plan(
    manifests: list[Path] = typer.Argument(
        ..., dir_okay=False, help="The manifest (several only with --matrix).", metavar="MANIFEST..."
    ),
    target: list[str] | None = options.TARGETS,
    json_: bool = options.JSON,
    concurrency: int = options.CONCURRENCY,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 when there is nothing to do, 2 when there are changes."
    ),
    matrix: bool = typer.Option(
        False,
        "--matrix",
        help="Print a JSON list for a CI matrix (one entry per target; per manifest when given several) "
        "and contact nothing.",
    ),
) -> None:
    """Show what publish would create, copy or replace on each target. Changes nothing."""
    with guarded():
        from imgpub.errors import ConfigurationError

        if matrix:
            typer.echo(json.dumps(_matrix(manifests, target or None)))
            return
        if len(manifests) != 1:
            raise ConfigurationError("plan takes one manifest (several only with --matrix)")
        from imgpub.cli.render import show
        from imgpub.pipeline import plan as run

        with Board() as board:
            result = run(manifests[0], target or None, concurrency=concurrency, progress=board.factory)
        code = result.exit_code
        if detailed_exitcode and not code and any(not t.plan.up_to_date for t in result.targets if t.plan):
            code = 2
        show(result, json_, exit_code=code)


def _matrix(manifests: list[Path], targets: list[str] | None) -> list[dict[str, str]]:
    """Shards for `strategy.matrix` / `parallel: matrix:`: each publishes on its own, and imgpub's
    tag-based identity keeps shards of one image safe to run at once."""
    from imgpub.manifest import load_manifest

    if len(manifests) > 1:
        return [{"manifest": str(path), "name": load_manifest(path).image.name} for path in manifests]
    loaded = load_manifest(manifests[0])
    return [
        {"manifest": str(manifests[0]), "target": t.name, "provider": t.provider}
        for t in loaded.select(targets)
    ]
