"""`imgpub providers`: the installed provider plugins and their versions."""

from __future__ import annotations

import typer

from imgpub.cli.console import guarded, out


def providers(json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the installed providers (allow-listed by IMGPUB_PROVIDERS), without importing them."""
    with guarded():
        import json
        from importlib.metadata import EntryPoint

        from imgpub import plugins

        rows = []
        for name, entry in plugins.available().items():
            if isinstance(entry, EntryPoint):
                dist = entry.dist
                rows.append(
                    {
                        "name": name,
                        "distribution": dist.name if dist else "?",
                        "version": dist.version if dist else "?",
                        "entry_point": entry.value,
                    }
                )
            else:
                rows.append(
                    {
                        "name": name,
                        "distribution": "(registered)",
                        "version": "",
                        "entry_point": entry.__module__,
                    }
                )
        if json_:
            out(json.dumps(rows, indent=2))
            return
        for row in rows:
            out(f"{row['name']:<10} {row['distribution']} {row['version']}  ({row['entry_point']})")
