"""`imgpub plan MANIFEST`: what publish would do on every target."""

from __future__ import annotations

from pathlib import Path

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def plan(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    json_: bool = options.JSON,
    concurrency: int = options.CONCURRENCY,
) -> None:
    """Show what publish would create, copy or replace on each target. Changes nothing."""
    with guarded():
        from imgpub.cli.render import show
        from imgpub.pipeline import plan as run

        with Board() as board:
            result = run(manifest, target or None, concurrency=concurrency, progress=board.factory)
        show(result, json_)
