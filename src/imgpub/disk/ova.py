"""OVA and OVF packages, as VMware and VirtualBox export them: the chosen disk is read where it lies.

An OVA is a tar: the .ovf descriptor, an optional .mf manifest (SHA1/SHA256/SHA512 per file), an
optional .cert, and the disks (streamOptimized VMDK usually; VHD, VHDX, qcow2, VDI or raw too). The
disk's reader works on the byte range of its member in the OVA (no extraction, no copy). A bare .ovf
names its disk files next to it. `check_integrity` verifies the manifest digests of the descriptor
and of the chosen disk's file; opening reads only metadata.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from imgpub.disk.errors import ImageFormatError, UnsupportedImageError, human
from imgpub.disk.image import DiskImage, ProgressFn
from imgpub.disk.ovf import (
    MAX_MANIFEST,
    MAX_OVF,
    Ovf,
    OvfDisk,
    check_disk,
    check_size,
    choose,
    parse_manifest,
    parse_ovf,
)
from imgpub.disk.siblings import sibling_path
from imgpub.disk.sniff import HEAD, NOT_A_DISK, judge
from imgpub.disk.tar import Member, read_members

CHUNK = 4 << 20
HASHES = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
Digests = dict[str, tuple[str, str]]
Source = tuple[str, Callable[[Callable[[bytes], None]], None]]  # file name, feeds its bytes


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _digest(
    algorithm: str, feed: Callable[[Callable[[bytes], None]], None], on_progress: ProgressFn | None
) -> str:
    h = HASHES[algorithm]()

    def update(chunk: bytes) -> None:
        h.update(chunk)
        if on_progress is not None:
            on_progress(len(chunk))

    feed(update)
    return h.hexdigest()


def _verify(
    path: Path, fmt: str, mf_name: str, digests: Digests, sources: list[Source]
) -> Callable[[ProgressFn | None], None]:
    """A check of `sources` against the manifest: every file the disk is read from must be listed."""

    def check(on_progress: ProgressFn | None) -> None:
        for name, feed in sources:
            if name not in digests:
                raise ImageFormatError(path, fmt, "manifest", None, f"{mf_name} lists no digest for {name}")
            algorithm, expected = digests[name]
            try:
                got = _digest(algorithm, feed, on_progress)
            except OSError as exc:
                raise ImageFormatError(path, fmt, "manifest", None, f"cannot read {name}: {exc}") from None
            if got != expected:
                raise ImageFormatError(
                    path,
                    fmt,
                    "manifest",
                    None,
                    f"{algorithm} of {name} is {got}, but {mf_name} says {expected}: the file is "
                    "damaged or was changed after export",
                )

    return check


def _feed_range(
    fd_of: Callable[[], int], offset: int, length: int
) -> Callable[[Callable[[bytes], None]], None]:
    def feed(sink: Callable[[bytes], None]) -> None:
        fd = fd_of()
        pos = 0
        while pos < length:
            chunk = os.pread(fd, min(CHUNK, length - pos), offset + pos)
            if not chunk:
                raise OSError(f"short read at byte {offset + pos}")
            sink(chunk)
            pos += len(chunk)

    return feed


def _feed_file(path: Path) -> Callable[[Callable[[bytes], None]], None]:
    def feed(sink: Callable[[bytes], None]) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                sink(chunk)

    return feed


def _contiguous(m: Member) -> tuple[int, int]:
    return (m.regions[0][2] if m.regions else 0), m.stored


def open_ova(path: Path, fd: int, member: str | int | None) -> DiskImage:
    """The chosen disk of the OVA open as `fd` (which the returned image then owns)."""
    size = os.fstat(fd).st_size
    members = read_members(path, lambda o, n: os.pread(fd, n, o), size, "ova")
    files = {_member_name(m.name): m for m in members if m.kind == "file"}
    ovfs = [m for name, m in files.items() if name.lower().endswith(".ovf")]
    if len(ovfs) != 1:
        raise ImageFormatError(path, "ova", "archive", None, f"holds {len(ovfs)} .ovf descriptors, not one")
    desc_member = ovfs[0]
    desc_at, desc_size = _contiguous(desc_member)
    if desc_size > MAX_OVF or desc_member.sparse:
        raise ImageFormatError(path, "ova", "descriptor", desc_member.header, f"{desc_size} bytes is absurd")
    ovf = parse_ovf(os.pread(fd, desc_size, desc_at), path, "ova", desc_at)
    index, disk = choose(ovf.disks, member, path, "ova")
    check_disk(disk, path, "ova")
    found = files.get(_member_name(disk.href))
    if found is None:
        raise ImageFormatError(
            path, "ova", "archive", None, f"holds no file {disk.href!r} for disk {disk.disk_id!r}"
        )
    check_size(disk, found.size, path, "ova")
    label = Path(f"{path}[{disk.href}]")
    image = _open_member(label, fd, found, disk)
    try:
        mfs = [m for name, m in files.items() if name.lower().endswith(".mf")]
        digests: Digests = {}
        algorithms, mf_name = "", ""
        if mfs:
            mf = next((m for m in mfs if Path(m.name).stem == Path(desc_member.name).stem), mfs[0])
            at, n = _contiguous(mf)
            digests, algorithms = parse_manifest(os.pread(fd, min(n, MAX_MANIFEST + 1), at), path, "ova", at)
            mf_name = _member_name(mf.name)
            sources: list[Source] = [
                (_member_name(m.name), _feed_range(lambda: image.fd, *_contiguous(m)))
                for m in (desc_member, found)
            ]
            image.integrity = _verify(path, "ova", mf_name, digests, sources)
        _finish(image, "ova", ovf, index, disk, _member_name(desc_member.name), mf_name, algorithms)
        image.files = (path,)
    except BaseException:
        image.fd = -1  # the caller closes fd
        raise
    return image


def _open_member(label: Path, fd: int, found: Member, disk: OvfDisk) -> DiskImage:
    from imgpub.disk.detect import container_format
    from imgpub.disk.tarred import TarDiskImage

    at, n = _contiguous(found)
    if found.size == 0:
        raise ImageFormatError(label, "ova", "member", found.header, "the disk file is empty")
    head = os.pread(fd, min(HEAD, n), at)
    kind = container_format(head)
    if found.sparse and kind is not None:
        raise UnsupportedImageError(
            label,
            "ova",
            "member",
            found.header,
            f"a {kind} file stored as a sparse tar member; pack the OVA again without --sparse",
        )
    if kind is None:  # raw: the OVF says it is a disk, so only what is plainly something else is refused
        verdict = judge(head, found.size)
        if verdict is not None and not verdict[1].startswith(NOT_A_DISK):
            raise ImageFormatError(label, "ova", "disk", verdict[0], verdict[1])
        if found.size % 512:
            raise ImageFormatError(
                label, "ova", "disk", None, f"{found.size} bytes is not a whole number of sectors"
            )
        return TarDiskImage(label, fd, found)
    window = (at, n)
    if kind == "vmdk" and head.startswith(b"KDMV"):
        from imgpub.disk.vmdk import VmdkSparseImage

        return VmdkSparseImage(label, fd, window=window)
    opener = _WINDOWED.get(kind)
    if opener is None:
        raise UnsupportedImageError(
            label,
            "ova",
            "disk",
            0,
            f"is a {kind} file that names other files; export the disk as streamOptimized VMDK",
        )
    return opener(label, fd, window)


def _qcow2(label: Path, fd: int, window: tuple[int, int]) -> DiskImage:
    from imgpub.disk.qcow2 import Qcow2Image

    return Qcow2Image(label, fd, window=window)


def _vhd(label: Path, fd: int, window: tuple[int, int]) -> DiskImage:
    from imgpub.disk.vhd import VhdImage

    return VhdImage(label, fd, window=window)


def _vhdx(label: Path, fd: int, window: tuple[int, int]) -> DiskImage:
    from imgpub.disk.vhdx import VhdxImage

    return VhdxImage(label, fd, window=window)


def _vdi(label: Path, fd: int, window: tuple[int, int]) -> DiskImage:
    from imgpub.disk.vdi import VdiImage

    return VdiImage(label, fd, window=window)


_WINDOWED = {"qcow2": _qcow2, "vhd": _vhd, "vhdx": _vhdx, "vdi": _vdi}


def _finish(
    image: DiskImage, fmt: str, ovf: Ovf, index: int, disk: OvfDisk, desc: str, mf: str, algorithms: str
) -> None:
    """Capacity check, then what the package says about the disk, on the image."""
    if disk.capacity is not None and disk.capacity < image.virtual_size:
        raise ImageFormatError(
            image.path,
            fmt,
            "descriptor",
            None,
            f"disk {disk.label!r} has a capacity of {disk.capacity} bytes in {desc}, but its file holds "
            f"{image.virtual_size}",
        )
    image.format = f"{fmt}/{image.format}"
    image.firmware = ovf.firmware
    image.container = {
        "package": fmt,
        "descriptor": desc,
        "disk": f"{index} {disk.label}",
        "disks": [f"{i} {d.label} ({human(d.capacity)})" for i, d in enumerate(ovf.disks)],
        "ovf_capacity": disk.capacity,
        "manifest": f"{mf} ({algorithms})" if mf else None,
        "firmware": ovf.firmware,
    }


def open_ovf(path: Path, fd: int, member: str | int | None) -> DiskImage:
    """The chosen disk of the bare .ovf open as `fd`, from its file next to it (`fd` is closed)."""
    from imgpub.disk.detect import open_image

    size = os.fstat(fd).st_size
    if size > MAX_OVF:
        raise ImageFormatError(path, "ovf", "descriptor", None, f"{size} bytes is absurd for an OVF")
    ovf = parse_ovf(os.pread(fd, size, 0), path, "ovf")
    index, disk = choose(ovf.disks, member, path, "ovf")
    check_disk(disk, path, "ovf")
    disk_path = sibling_path(path, disk.href, "ovf", None, "disk file")
    if disk_path.is_file():
        check_size(disk, disk_path.stat().st_size, path, "ovf")
    mf_path = path.with_suffix(".mf")
    digests: Digests = {}
    algorithms = ""
    if mf_path.is_file():
        digests, algorithms = parse_manifest(mf_path.read_bytes()[: MAX_MANIFEST + 1], mf_path, "ovf", 0)
    try:
        image = open_image(disk_path)
    except ImageFormatError as exc:  # the OVF says it is a disk: no partition table is no reason to refuse
        if not exc.what.startswith(NOT_A_DISK):
            raise
        image = open_image(disk_path, "raw")
    try:
        if "/" in image.format:
            raise UnsupportedImageError(
                path, "ovf", "disk", None, f"{disk.href} is itself a {image.format} package"
            )
        if digests:
            sources: list[Source] = [(path.name, _feed_file(path)), (disk.href, _feed_file(disk_path))]
            image.integrity = _verify(mf_path, "ovf", mf_path.name, digests, sources)
        _finish(image, "ovf", ovf, index, disk, path.name, mf_path.name if digests else "", algorithms)
        image.files = (path, *image.files, *((mf_path,) if mf_path.is_file() else ()))
    except BaseException:
        image.close()
        raise
    os.close(fd)
    return image
