"""`imgpub convert IMAGE --to raw|vhd|gce-tar -o OUT`: write one cloud format locally."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from imgpub.cli.console import Board, guarded, out


class Target(StrEnum):
    raw = "raw"
    vhd = "vhd"
    gce_tar = "gce-tar"


def convert(
    image: Path = typer.Argument(..., help="Source disk image (qcow2, raw, vmdk, vhd, vhdx, compressed)."),
    to: Target = typer.Option(..., "--to", help="Output format."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file."),
    compression_level: int = typer.Option(
        1, "--compression-level", min=1, max=9, help="gzip level (gce-tar)."
    ),
    fmt: str = typer.Option("auto", "--format", "-f", help="Source format (default: detect)."),
) -> None:
    """Convert a disk image to a sparse raw file, a fixed VHD or a GCE disk.raw.tar.gz."""
    with guarded():
        from imgpub.disk import open_image

        with open_image(image, fmt) as disk, Board() as board:
            progress = board.factory(output.name)
            progress.stage(f"write {to.value}", disk.allocation.data_bytes)
            if to is Target.raw:
                from imgpub.disk.write_raw import write_raw

                write_raw(disk, output, on_progress=progress.advance)
            elif to is Target.vhd:
                from imgpub.disk.write_vhd import write_vhd

                write_vhd(disk, output, on_progress=progress.advance)
            else:
                from imgpub.disk.write_gce import write_gce_tar

                write_gce_tar(disk, output, level=compression_level, on_progress=progress.advance)
        out(f"{output}: {to.value}, {output.stat().st_size} bytes")
