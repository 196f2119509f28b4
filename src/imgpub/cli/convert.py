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
    image: Path = typer.Argument(
        ..., help="Source disk image (qcow2, raw, vmdk, vhd, vhdx, vdi, ova, ovf, tar; compressed too)."
    ),
    to: Target = typer.Option(..., "--to", help="Output format."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file."),
    compression_level: int = typer.Option(
        1, "--compression-level", min=1, max=9, help="gzip level (gce-tar)."
    ),
    fmt: str = typer.Option("auto", "--format", "-f", help="Source format (default: detect)."),
    disk: str | None = typer.Option(
        None, "--disk", help="Which disk of an OVA/OVF: its index (0 first), file name or OVF disk id."
    ),
) -> None:
    """Convert a disk image to a sparse raw file, a fixed VHD or a GCE disk.raw.tar.gz."""
    with guarded():
        from imgpub.disk import open_image

        with open_image(image, fmt, member=disk) as src, Board() as board:
            progress = board.factory(output.name)
            if src.integrity is not None:
                progress.stage("verify digests", src.file_size)
                src.check_integrity(progress.advance)
            progress.stage(f"write {to.value}", src.allocation.data_bytes)
            if to is Target.raw:
                from imgpub.disk.write_raw import write_raw

                write_raw(src, output, on_progress=progress.advance)
            elif to is Target.vhd:
                from imgpub.disk.write_vhd import write_vhd

                write_vhd(src, output, on_progress=progress.advance)
            else:
                from imgpub.disk.write_gce import write_gce_tar

                write_gce_tar(src, output, level=compression_level, on_progress=progress.advance)
        out(f"{output}: {to.value}, {output.stat().st_size} bytes")
