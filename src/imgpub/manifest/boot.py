"""How the image boots: `image.boot`, or the disk's own word for it, and whether the disk can.

When the manifest leaves `boot` out, an OVF's firmware setting decides, else the partition table
(an EFI system partition means UEFI; one with BIOS boot code too means either). Then the disk must
be able to boot that way: UEFI needs an EFI system partition (arm64 always does), BIOS on a GPT disk
needs a BIOS boot partition or boot code in the protective MBR. Each failure names `image.boot`;
`image.boot_check: warn` turns them into warnings for layouts imgpub cannot judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgpub.disk.partitions import PartitionTable
from imgpub.manifest.models import ImageSpec
from imgpub.provider import BootMode

__all__ = ["Boot", "resolve_boot"]

FIRMWARE: dict[str, BootMode] = {"uefi": "uefi", "efi": "uefi", "bios": "bios"}


@dataclass(frozen=True)
class Boot:
    mode: BootMode | None
    """None: the manifest says nothing and neither does the disk (a problem says so)."""
    source: str
    """Where `mode` came from: "image.boot", "the OVF firmware" or "the partition table"."""
    problems: list[str] = field(default_factory=list)
    """What the disk lacks to boot that way (errors, or warnings with boot_check: warn)."""


def resolve_boot(spec: ImageSpec, table: PartitionTable | None, firmware: str | None) -> Boot:
    """The boot mode and its source, with what the disk lacks for it. `table` is None when the
    partition table could not be read."""
    mode: BootMode
    if spec.boot is not None:
        mode, source = spec.boot, "image.boot"
    elif firmware is not None and firmware in FIRMWARE:
        mode, source = FIRMWARE[firmware], "the OVF firmware"
    elif table is not None and table.suggested_boot in ("uefi", "bios", "uefi-preferred"):
        mode, source = table.suggested_boot, "the partition table"  # type: ignore[assignment]
    else:
        what = "no partition table" if table is None or table.scheme == "none" else "no ESP and no boot code"
        return Boot(None, "", [f"boot is not set and the disk does not say ({what}); set image.boot"])
    return Boot(mode, source, _lacks(spec, mode, source, table))


def _lacks(spec: ImageSpec, mode: BootMode, source: str, table: PartitionTable | None) -> list[str]:
    if table is None:
        return []
    said = "" if source == "image.boot" else f" (from {source})"
    disk = (
        "the disk has no partition table" if table.scheme == "none" else f"this {table.scheme.upper()} disk"
    )
    fix = "; fix the disk, set image.boot to match it, or set image.boot_check: warn for an unusual layout"
    out = []
    if mode in ("uefi", "uefi-preferred") and not table.has_esp:
        where = disk if table.scheme == "none" else f"{disk} has none"
        out.append(f"boot {mode}{said} needs an EFI system partition, but {where}{fix}")
    elif spec.arch == "arm64" and not table.has_esp:
        out.append(f"arm64 images boot with UEFI from an EFI system partition, but {disk} has none{fix}")
    if mode in ("bios", "uefi-preferred") and not (table.has_bios_boot or table.mbr_bootable):
        lacking = {
            "gpt": "neither a BIOS boot partition nor boot code in its protective MBR",
            "mbr": "no boot code in its MBR and no active partition",
        }
        where = disk if table.scheme == "none" else f"{disk} has {lacking[table.scheme]}"
        out.append(f"boot {mode}{said} needs BIOS boot code, but {where}{fix}")
    return out
