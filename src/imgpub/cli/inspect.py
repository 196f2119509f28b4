"""`imgpub inspect IMAGE [--disk N|NAME]`: format, sizes, data extents, partition table, firmware and
suggested boot mode; for an OVA/OVF, the disks it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from imgpub.cli.console import guarded, human_size, out

SHOWN_EXTENTS = 20


def facts(path: Path, fmt: str = "auto", member: str | int | None = None) -> dict[str, Any]:
    """What `inspect` reports, as JSON-able data."""
    from imgpub.disk import open_image

    with open_image(path, fmt, member=member) as disk:
        st = path.stat()
        alloc = disk.allocation
        data: dict[str, Any] = {
            "path": str(path),
            "format": disk.format,
            "virtual_size": disk.virtual_size,
            "file_size": disk.file_size,
            "allocated_size": st.st_blocks * 512,
            "data_bytes": alloc.data_bytes,
            "data_extents": [{"offset": o, "length": n} for o, n in alloc.data_runs],
            "zero_extents": [{"offset": e.offset, "length": e.length} for e in alloc.extents() if not e.data],
            "zero_bytes": disk.virtual_size - alloc.data_bytes,
            "details": disk.info(),
            "firmware": disk.firmware,
            "container": disk.container,
        }
        data.update(_partitions(disk))
    return data


def _partitions(disk: Any) -> dict[str, Any]:
    try:
        from imgpub.disk.partitions import inspect_partitions
    except ImportError:
        return {"partitions": None, "suggested_boot": None}
    table = inspect_partitions(disk)
    return {
        "partition_table": table.scheme,
        "partitions": [
            {"index": p.index, "start": p.start, "size": p.size, "type": p.type, "name": p.name}
            for p in table.partitions
        ],
        "esp": table.has_esp,
        "bios_boot": table.has_bios_boot or table.mbr_bootable,
        "suggested_boot": table.suggested_boot,
    }


def inspect(
    image: Path = typer.Argument(..., help="Disk image to look at."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Force a format (default: detect)."),
    disk: str | None = typer.Option(
        None, "--disk", help="Which disk of an OVA/OVF: its index (0 first), file name or OVF disk id."
    ),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show an image's format, virtual and allocated size, data extents, partitions and firmware."""
    with guarded():
        data = facts(image, fmt, disk)
        if json_:
            out(json.dumps(data, indent=2))
            return
        _text(data)


def _text(data: dict[str, Any]) -> None:
    size, alloc = human_size(data["file_size"]), human_size(data["allocated_size"])
    runs = data["data_extents"]
    out(f"{data['path']}: {data['format']}")
    out(f"  virtual size    {human_size(data['virtual_size'])} ({data['virtual_size']} bytes)")
    out(f"  file size       {size} (allocated {alloc})")
    out(f"  data            {human_size(data['data_bytes'])} in {len(runs)} extent(s)")
    out(f"  zeros           {human_size(data['zero_bytes'])} in {len(data['zero_extents'])} extent(s)")
    for run in runs[:SHOWN_EXTENTS]:
        out(f"    {run['offset']:>14} +{run['length']}")
    if len(runs) > SHOWN_EXTENTS:
        out(f"    ... {len(runs) - SHOWN_EXTENTS} more (--json lists all)")
    for key, value in data["details"].items():
        out(f"  {key:<15} {value}")
    container = dict(data["container"])
    chosen = container.pop("disk", None)
    for disk in container.pop("disks", None) or ():
        out(f"  {'disks':<15} {'*' if disk.startswith(f'{chosen} (') else ' '} {disk}")
    container.pop("firmware", None)
    for key, value in container.items():
        if value is not None:
            out(f"  {key:<15} {value}")
    out(f"  firmware        {data['firmware'] or 'not stated'}")
    if data.get("partition_table"):
        out(f"  partitions      {data['partition_table']}")
        for p in data["partitions"]:
            where = f"{human_size(p['size']):>10} at {p['start']:<12}"
            out(f"    {p['index']:>3} {where} {p['type']} {p['name']}")
        yes = {True: "yes", False: "no"}
        out(f"  ESP             {yes[bool(data['esp'])]}; BIOS boot {yes[bool(data['bios_boot'])]}")
    out(f"  suggested boot  {data.get('suggested_boot') or 'unknown'}")
