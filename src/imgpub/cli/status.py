"""`imgpub status MANIFEST`: what is published for this image, and how it drifts."""

from __future__ import annotations

from pathlib import Path

from imgpub.cli import options
from imgpub.cli.console import Board, guarded


def status(
    manifest: Path = options.MANIFEST,
    target: list[str] | None = options.TARGETS,
    json_: bool = options.JSON,
) -> None:
    """Show every target's artifacts for this image version and what differs from the manifest."""
    with guarded():
        from imgpub.cli.render import show
        from imgpub.pipeline import status as run

        with Board() as board:
            result = run(manifest, target or None, progress=board.factory)
        show(result, json_)
