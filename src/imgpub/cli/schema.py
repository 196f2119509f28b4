"""`imgpub schema`: the manifest's JSON Schema, with every installed provider's settings."""

from __future__ import annotations

from pathlib import Path

import typer

from imgpub.cli.console import guarded


def schema(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print the JSON Schema of imgpub.yaml (point your editor's YAML plugin at it)."""
    with guarded():
        from imgpub.manifest.schema import schema_text

        text = schema_text()
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text)
