"""Options shared by several commands."""

from __future__ import annotations

import typer

MANIFEST = typer.Argument(..., exists=False, dir_okay=False, help="The manifest (imgpub.yaml).")
TARGETS = typer.Option(None, "--target", "-t", help="Only this target (repeatable).")
JSON = typer.Option(False, "--json", help="Print the JSON report on stdout instead of text.")
CONCURRENCY = typer.Option(4, "--concurrency", "-j", min=1, max=64, help="Targets worked on at once.")
