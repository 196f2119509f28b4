"""The AMI's root volume: type, size, IOPS and throughput by EBS's rules, and its block device mapping.

The ranges are the ones botocore's EC2 model documents for EbsBlockDevice (Iops, Throughput,
VolumeSize); tests/aws/test_volume.py reads that documentation and fails when AWS changes them.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from imgpub.provider import Problem

__all__ = ["IOPS", "SIZES", "THROUGHPUT", "VolumeType", "block_device", "volume_problems"]

VolumeType = Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"]

IOPS: dict[str, tuple[int, int]] = {"gp3": (3000, 80000), "io1": (100, 64000), "io2": (100, 256000)}
"""Provisioned IOPS per volume type (EbsBlockDevice.Iops); required for io1 and io2, optional for
gp3 (3,000 by default), not accepted for the others."""
NEEDS_IOPS = ("io1", "io2")
THROUGHPUT: dict[str, tuple[int, int]] = {"gp3": (125, 2000)}
"""MiB/s (EbsBlockDevice.Throughput): "valid only for gp3 volumes"."""
SIZES: dict[str, tuple[int, int]] = {
    "gp2": (1, 16384),
    "gp3": (1, 65536),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
"""GiB per volume type (EbsBlockDevice.VolumeSize)."""
NOT_BOOTABLE = ("st1", "sc1")
"""HDD volume types cannot be boot volumes (Amazon EBS User Guide, "Amazon EBS volume types")."""


class _Settings(Protocol):
    """The AwsSettings fields read here (settings.py imports VolumeType from this module)."""

    @property
    def volume_type(self) -> str: ...
    @property
    def volume_size(self) -> int | None: ...
    @property
    def iops(self) -> int | None: ...
    @property
    def throughput(self) -> int | None: ...
    @property
    def root_device_name(self) -> str: ...


def volume_problems(settings: _Settings, image_gib: int) -> list[Problem]:
    """`image_gib`: the smallest root volume that holds the disk."""
    kind: str = settings.volume_type
    out: list[Problem] = []
    if kind in NOT_BOOTABLE:
        return [Problem("volume_type", f"{kind} volumes cannot be boot volumes; use gp3, gp2, io1 or io2")]
    size = max(image_gib, settings.volume_size or 0)
    low, high = SIZES[kind]
    if not low <= size <= high:
        field = "volume_size" if settings.volume_size else "volume_type"
        out.append(
            Problem(field, f"{kind} volumes are {low}-{high} GiB; the root volume would be {size} GiB")
        )
    iops = settings.iops
    if iops is None and kind in NEEDS_IOPS:
        out.append(
            Problem(
                "volume_type", f"{kind} volumes need iops ({_range(IOPS[kind])}): RegisterImage requires it"
            )
        )
    elif iops is not None and kind not in IOPS:
        out.append(Problem("iops", f"iops is for {', '.join(IOPS)} volumes, not {kind}"))
    elif iops is not None and not IOPS[kind][0] <= iops <= IOPS[kind][1]:
        out.append(Problem("iops", f"{kind} takes {_range(IOPS[kind])} IOPS, not {iops}"))
    throughput = settings.throughput
    if throughput is not None and kind not in THROUGHPUT:
        out.append(Problem("throughput", f"throughput is for gp3 volumes only, not {kind}"))
    elif throughput is not None and not THROUGHPUT[kind][0] <= throughput <= THROUGHPUT[kind][1]:
        out.append(Problem("throughput", f"gp3 takes {_range(THROUGHPUT[kind])} MiB/s, not {throughput}"))
    return out


def _range(bounds: tuple[int, int]) -> str:
    return f"{bounds[0]:,}-{bounds[1]:,}"


def block_device(settings: _Settings, snapshot_id: str, volume_size: int) -> dict[str, Any]:
    """The root mapping for RegisterImage. No `Encrypted`: with a SnapshotId the request would fail
    (the volume takes the snapshot's encryption)."""
    ebs: dict[str, Any] = {
        "SnapshotId": snapshot_id,
        "VolumeSize": max(volume_size, settings.volume_size or 0),
        "VolumeType": settings.volume_type,
        "DeleteOnTermination": True,
    }
    if settings.iops is not None:
        ebs["Iops"] = settings.iops
    if settings.throughput is not None:
        ebs["Throughput"] = settings.throughput
    return {"DeviceName": settings.root_device_name, "Ebs": ebs}
