"""`imgpub validate MANIFEST`: check the manifest (and measure a local image) without publishing."""

from __future__ import annotations

from pathlib import Path

from imgpub.cli import options
from imgpub.cli.console import guarded, out, warning_line


def validate(manifest: Path = options.MANIFEST) -> None:
    """Check the manifest: syntax, fields, providers' rules. Exit 2 on the first problem."""
    with guarded():
        from imgpub.pipeline import validate as run

        loaded = run(manifest)
        for warning in loaded.warnings:
            warning_line(warning)
        names = ", ".join(f"{t.name} ({t.provider})" for t in loaded.targets)
        out(f"{manifest}: ok: {loaded.image.name} {loaded.image.version} -> {names}")
