"""OVA and OVF packages: the chosen disk is read straight from its byte range of the OVA (qemu, pointed
at the same range, agrees byte for byte), or from its file next to a bare .ovf; the manifest's SHA1 or
SHA256 digests are checked on demand; firmware comes from VMware's or VirtualBox's section; several
disks need a choice; DTDs, entities, escapes and unreadable layouts are refused."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu, byte_range
from disk.sources import iso9660, member_range, ova, ovf, vdi
from disk.vmdk_stream import write_vmware_stream
from imaging import MiB, convert, mixed_raw, pattern
from imgpub.disk import DiskImage, open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.qcow2 import Qcow2Image
from imgpub.disk.tarred import TarDiskImage
from imgpub.disk.vdi import VdiImage
from imgpub.disk.vhd import VhdImage
from imgpub.disk.vmdk import VmdkSparseImage

SIZE = 24 * MiB + 512
SMALL = 16 * MiB


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same guest disk as a qemu stream, a VMware stream (footer), and a second smaller disk."""
    folder = tmp_path_factory.mktemp("ova")
    raw = mixed_raw(folder / "src.raw", SIZE, seed=31)
    small = mixed_raw(folder / "small.raw", SMALL, seed=32)
    return {
        "raw": raw,
        "stream": convert(raw, folder / "stream.vmdk", "vmdk", "subformat=streamOptimized", src_fmt="raw"),
        "vmware": write_vmware_stream(folder / "vmware.vmdk", raw.read_bytes()),
        "small": convert(small, folder / "small.vmdk", "vmdk", "subformat=streamOptimized", src_fmt="raw"),
        "small.raw": small,
    }


def _ranged(package: Path, name: str, fmt: str = "vmdk") -> str:
    return byte_range(package, fmt, *member_range(package, name))


@pytest.mark.parametrize(
    ("style", "algorithm", "gnu", "firmware", "expected"),
    [
        ("vmware", "SHA256", False, "efi", "uefi"),
        ("vmware", "SHA1", True, "bios", "bios"),
        ("virtualbox", "SHA256", True, "EFI", "uefi"),
        ("virtualbox", "SHA1", False, "BIOS", "bios"),
        ("vmware", None, False, None, None),
    ],
)
def test_ova_disk_reads_like_qemu_on_the_same_bytes(
    disks: dict[str, Path],
    tmp_path: Path,
    style: str,
    algorithm: str | None,
    gnu: bool,
    firmware: str | None,
    expected: str | None,
) -> None:
    source = disks["vmware" if style == "vmware" else "stream"]
    descriptor = ovf([("disk1.vmdk", SIZE, "byte")], style=style, firmware=firmware)
    package = ova(tmp_path / "vm.ova", descriptor, {"disk1.vmdk": source}, algorithm=algorithm, gnu=gnu)
    assert_matches_qemu(package, "vmdk", tmp_path, VmdkSparseImage, qemu_path=_ranged(package, "disk1.vmdk"))
    with open_image(package) as img:
        assert img.format == "ova/vmdk" and img.firmware == expected
        assert img.path == Path(f"{package}[disk1.vmdk]") and img.files == (package,)
        assert img.container["descriptor"] == "vm.ovf"
        assert img.container["manifest"] == (f"vm.mf ({algorithm})" if algorithm else None)
        hashed: list[int] = []
        img.check_integrity(hashed.append)
        assert sum(hashed) == (source.stat().st_size + len(descriptor) if algorithm else 0)
        assert os.fstat(img.fd).st_ino == package.stat().st_ino  # read in place: no copy anywhere


def test_opening_reads_metadata_only(
    disks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_image must stay cheap: digests are computed by check_integrity, not at open."""
    package = ova(tmp_path / "vm.ova", ovf([("d.vmdk", SIZE, "byte")]), {"d.vmdk": disks["stream"]})
    calls: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        calls.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting)
    with open_image(package):
        pass
    assert sum(calls) < 512 * 1024 < disks["stream"].stat().st_size


@pytest.mark.parametrize("kind", ["qcow2", "vhd", "vdi", "raw"])
def test_other_disk_formats_in_an_ova(disks: dict[str, Path], tmp_path: Path, kind: str) -> None:
    raw = disks["raw"]
    if kind == "vdi":
        disk = tmp_path / "d.vdi"
        disk.write_bytes(vdi(raw.read_bytes()))
    elif kind == "raw":
        disk = raw
    else:
        opts = ["subformat=dynamic"] if kind == "vhd" else []
        disk = convert(raw, tmp_path / f"d.{kind}", "vpc" if kind == "vhd" else kind, *opts, src_fmt="raw")
    name = f"disk.{kind}"
    package = ova(tmp_path / "vm.ova", ovf([(name, 64, "byte * 2^20")]), {name: disk})
    cls = {"qcow2": Qcow2Image, "vhd": VhdImage, "vdi": VdiImage, "raw": TarDiskImage}[kind]
    qemu_fmt = {"vhd": "vpc"}.get(kind, kind)
    assert_matches_qemu(package, qemu_fmt, tmp_path, cls, qemu_path=_ranged(package, name, qemu_fmt))
    with open_image(package) as img:
        assert img.format == f"ova/{'tar' if kind == 'raw' else kind}"


def test_several_disks_need_a_choice(disks: dict[str, Path], tmp_path: Path) -> None:
    descriptor = ovf([("disk1.vmdk", SIZE, "byte"), ("disk2.vmdk", 16, "MegaBytes")], firmware="efi")
    package = ova(
        tmp_path / "two.ova", descriptor, {"disk1.vmdk": disks["stream"], "disk2.vmdk": disks["small"]}
    )
    with pytest.raises(ImageFormatError) as err:
        open_image(package)
    assert str(err.value) == (
        f"{package}: ova descriptor: holds 2 disks: 0 disk1.vmdk (24.0 MiB), 1 disk2.vmdk (16.0 MiB); "
        "choose one with image.disk in the manifest or --disk"
    )
    small = disks["small.raw"].read_bytes()
    for member in (1, "1", "disk2.vmdk", "vmdisk1"):
        with open_image(package, member=member) as img:
            assert img.virtual_size == SMALL and img.read(0, SMALL) == small
            assert img.container["disk"] == "1 disk2.vmdk" and img.firmware == "uefi"
            img.check_integrity()
    with open_image(package, member=0) as img:
        assert img.virtual_size == SIZE
    for member in (2, "disk3.vmdk", -1):
        with pytest.raises(
            ImageFormatError, match=r"has no disk .*; it holds 0 disk1.vmdk \(24.0 MiB\), 1 disk2"
        ):
            open_image(package, member=member)
    with pytest.raises(
        ImageFormatError, match=r"holds one disk; choosing a disk \(1\) applies to OVA and OVF only"
    ):
        open_image(disks["stream"], member=1)


def test_a_bare_ovf_reads_its_disks_next_to_it(disks: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "disk1.vmdk").symlink_to(disks["vmware"])  # a link inside the folder that leads out
    os.link(disks["small"], folder / "disk2.vmdk")
    descriptor = ovf(
        [("disk1.vmdk", SIZE, "byte"), ("disk2.vmdk", SMALL, "byte")], style="virtualbox", firmware="EFI"
    )
    (folder / "vm.ovf").write_bytes(descriptor)
    with pytest.raises(ImageFormatError, match=r"disk file path 'disk1\.vmdk' leaves the folder"):
        open_image(folder / "vm.ovf", member=0)
    assert_matches_qemu(
        folder / "vm.ovf", "vmdk", tmp_path, VmdkSparseImage, qemu_path=folder / "disk2.vmdk", member=1
    )
    (folder / "vm.mf").write_text(
        f"SHA256(vm.ovf)= {hashlib.sha256(descriptor).hexdigest()}\n"
        f"SHA256(disk2.vmdk)= {hashlib.sha256(disks['small'].read_bytes()).hexdigest()}\n"
    )
    with open_image(folder / "vm.ovf", member="disk2.vmdk") as img:
        assert img.format == "ovf/vmdk" and img.firmware == "uefi" and img.path == folder / "disk2.vmdk"
        assert img.files == (folder / "vm.ovf", folder / "disk2.vmdk", folder / "vm.mf")
        img.check_integrity()
    (folder / "vm.ovf").write_bytes(descriptor.replace(b"disk2.vmdk", b"../small.vmdk"))
    with pytest.raises(ImageFormatError, match=r"disk file path '../small.vmdk' must be a plain file name"):
        open_image(folder / "vm.ovf", member=1)


def _damaged(package: Path, name: str) -> None:
    offset, size = member_range(package, name)
    with open(package, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256"])
def test_a_digest_mismatch_names_the_file_and_both_digests(
    disks: dict[str, Path], tmp_path: Path, algorithm: str
) -> None:
    package = ova(
        tmp_path / "vm.ova",
        ovf([("disk1.vmdk", SIZE, "byte")]),
        {"disk1.vmdk": disks["stream"]},
        algorithm=algorithm,
    )
    expected = hashlib.new(algorithm.lower(), disks["stream"].read_bytes()).hexdigest()
    _damaged(package, "disk1.vmdk")
    with open_image(package) as img, pytest.raises(ImageFormatError) as err:
        img.check_integrity()
    text = str(err.value)
    assert (
        f"{algorithm} of disk1.vmdk is " in text and f"but vm.mf says {expected}" in text and "\n" not in text
    )
    assert err.value.exit_code == 2


def test_manifest_problems(disks: dict[str, Path], tmp_path: Path) -> None:
    descriptor = ovf([("disk1.vmdk", SIZE, "byte")])
    package = tmp_path / "vm.ova"
    with tarfile.open(package, "w") as tar:
        for name, data in [
            ("vm.ovf", descriptor),
            ("vm.mf", f"SHA256(vm.ovf)= {hashlib.sha256(descriptor).hexdigest()}\n".encode()),
        ]:
            path = tmp_path / name
            path.write_bytes(data)
            tar.add(path, arcname=name)
        tar.add(disks["stream"], arcname="disk1.vmdk")
    with (
        open_image(package) as img,
        pytest.raises(ImageFormatError, match=r"vm\.mf lists no digest for disk1\.vmdk"),
    ):
        img.check_integrity()
    with tarfile.open(package, "w") as tar:
        (tmp_path / "vm.mf").write_text("MD5(vm.ovf)= 0123\n")
        tar.add(tmp_path / "vm.ovf", arcname="vm.ovf")
        tar.add(tmp_path / "vm.mf", arcname="vm.mf")
        tar.add(disks["stream"], arcname="disk1.vmdk")
    with pytest.raises(
        ImageFormatError, match=r"ova manifest at byte 0x[0-9a-f]+: unreadable line 'MD5\(vm.ovf\)= 0123'"
    ):
        open_image(package)


def _package(tmp_path: Path, descriptor: bytes, disks: dict[str, Path]) -> Path:
    return ova(tmp_path / "x.ova", descriptor, disks, algorithm=None)


@pytest.mark.parametrize(
    ("mutate", "error", "words"),
    [
        (
            lambda d: d.replace(
                b'<?xml version="1.0" encoding="UTF-8"?>\n',
                b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n',
            ),
            ImageFormatError,
            "holds a DTD or entity declaration; refused",
        ),
        (lambda d: d.replace(b"<References>", b"<References>&xxe;"), ImageFormatError, "is not valid XML"),
        (lambda d: d[:200], ImageFormatError, "is not valid XML"),
        (lambda d: d.replace(b"Envelope", b"Envelop"), ImageFormatError, "is not an OVF envelope"),
        (
            lambda d: d.replace(b'ovf:capacity="25166336"', b'ovf:capacity="lots"'),
            ImageFormatError,
            "unreadable capacity 'lots'",
        ),
        (
            lambda d: d.replace(b'ovf:capacity="25166336"', b'ovf:capacity="24"'),
            ImageFormatError,
            "has a capacity of 24 bytes in x.ovf, but its file holds 25166336",
        ),
        (
            lambda d: d.replace(b'ovf:href="disk1.vmdk"', b'ovf:href="disk1.vmdk" ovf:compression="gzip"'),
            UnsupportedImageError,
            "stored gzip-compressed",
        ),
        (
            lambda d: d.replace(b'ovf:href="disk1.vmdk"', b'ovf:href="disk1.vmdk" ovf:chunkSize="1000"'),
            UnsupportedImageError,
            "stored in chunks",
        ),
        (
            lambda d: d.replace(b'ovf:href="disk1.vmdk"', b'ovf:href="http://example.com/disk1.vmdk"'),
            UnsupportedImageError,
            "outside the package",
        ),
        (
            lambda d: d.replace(b'ovf:fileRef="file0"', b'ovf:fileRef="file0" ovf:parentRef="vmdisk9"'),
            UnsupportedImageError,
            "differencing disk",
        ),
        (
            lambda d: d.replace(b'ovf:fileRef="file0"', b""),
            UnsupportedImageError,
            "has no file: it is an empty disk",
        ),
        (
            lambda d: d.replace(b'ovf:fileRef="file0"', b'ovf:fileRef="file7"'),
            ImageFormatError,
            "names a missing file 'file7'",
        ),
        (
            lambda d: d.replace(b'ovf:href="disk1.vmdk"', b'ovf:href="disk1.vmdk" ovf:size="12"'),
            ImageFormatError,
            r"disk1\.vmdk is \d+ bytes, but the OVF says 12 \(truncated or damaged\?\)",
        ),
        (
            lambda d: d.replace(b'ovf:href="disk1.vmdk"', b'ovf:href="other.vmdk"'),
            ImageFormatError,
            "holds no file 'other.vmdk'",
        ),
    ],
)
def test_refused_descriptors(
    disks: dict[str, Path], tmp_path: Path, mutate: object, error: type[Exception], words: str
) -> None:
    descriptor = mutate(ovf([("disk1.vmdk", SIZE, "byte")]))  # type: ignore[operator]
    with pytest.raises(error, match=words):
        open_image(_package(tmp_path, descriptor, {"disk1.vmdk": disks["stream"]}))


def test_capacity_units_and_property_references(disks: dict[str, Path], tmp_path: Path) -> None:
    for capacity, units in [
        (SIZE, "byte"),
        (SIZE // 512, "byte * 2^9"),
        (SIZE, "byte * 10^0"),
        ("${disk.size}", "byte"),
    ]:
        with open_image(
            _package(tmp_path, ovf([("disk1.vmdk", capacity, units)]), {"disk1.vmdk": disks["stream"]})
        ) as img:  # type: ignore[list-item]
            assert img.virtual_size == SIZE
            assert img.container["ovf_capacity"] == (None if isinstance(capacity, str) else SIZE)
    with open_image(
        _package(tmp_path, ovf([("disk1.vmdk", 1, "byte * 2^30")]), {"disk1.vmdk": disks["stream"]})
    ) as img:
        assert img.container["ovf_capacity"] == 1 << 30  # larger than the disk: the disk's own size wins
    size = disks["stream"].stat().st_size
    descriptor = ovf([("disk1.vmdk", SIZE, "byte")])
    descriptor = descriptor.replace(
        b'ovf:href="disk1.vmdk"', f'ovf:href="disk1.vmdk" ovf:size="{size}"'.encode()
    )
    with open_image(_package(tmp_path, descriptor, {"disk1.vmdk": disks["stream"]})) as img:
        assert img.virtual_size == SIZE  # the file's ovf:size matches: fine


def test_an_ova_is_not_a_raw_disk(disks: dict[str, Path], tmp_path: Path) -> None:
    package = ova(tmp_path / "vm.raw", ovf([("disk1.vmdk", SIZE, "byte")]), {"disk1.vmdk": disks["stream"]})
    fd = os.open(package, os.O_RDONLY)
    try:
        from imgpub.disk import detect_format

        assert detect_format(package, fd) == "ova"
    finally:
        os.close(fd)
    with open_image(package) as img:
        assert isinstance(img, DiskImage) and img.read(0, 512) == disks["raw"].read_bytes()[:512]


def test_raw_disks_of_a_package_need_no_partition_table(tmp_path: Path) -> None:
    """The OVF says the file is a disk: a raw one without an MBR or GPT is read, not refused."""
    data = pattern(MiB, 7)
    (tmp_path / "disk.img").write_bytes(data)
    package = ova(tmp_path / "vm.ova", ovf([("disk.img", MiB, "byte")]), {"disk.img": tmp_path / "disk.img"})
    with open_image(package) as img:
        assert img.format == "ova/tar" and img.read(0, MiB) == data
    (tmp_path / "vm.ovf").write_bytes(ovf([("disk.img", MiB, "byte")]))
    with open_image(tmp_path / "vm.ovf") as img:
        assert img.format == "ovf/raw" and img.read(0, MiB) == data
    (tmp_path / "iso.img").write_bytes(iso9660())
    package = ova(tmp_path / "iso.ova", ovf([("iso.img", MiB, "byte")]), {"iso.img": tmp_path / "iso.img"})
    with pytest.raises(ImageFormatError, match="ISO 9660"):  # what is plainly something else still is refused
        open_image(package)


def test_empty_and_sparse_disk_members(disks: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty.vmdk").touch()
    package = ova(
        tmp_path / "e.ova", ovf([("empty.vmdk", MiB, "byte")]), {"empty.vmdk": tmp_path / "empty.vmdk"}
    )
    with pytest.raises(
        ImageFormatError, match=r"e\.ova\[empty\.vmdk\]: ova member at byte .*: the disk file is empty"
    ):
        open_image(package)
    holey = tmp_path / "holey.vmdk"
    holey.write_bytes(disks["stream"].read_bytes())
    with open(holey, "r+b") as f:
        f.truncate(holey.stat().st_size + 4 * MiB)  # a trailing hole: GNU tar -S stores a sparse member
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "vm.ovf").write_bytes(ovf([("holey.vmdk", SIZE, "byte")]))
    os.link(holey, folder / "holey.vmdk")
    package = tmp_path / "sparse.ova"
    subprocess.run(["tar", "-S", "-cf", str(package), "-C", str(folder), "vm.ovf", "holey.vmdk"], check=True)
    with pytest.raises(
        UnsupportedImageError, match="vmdk file stored as a sparse tar member; pack the OVA again"
    ):
        open_image(package)


def test_ovf_2_and_dot_slash_member_names(disks: dict[str, Path], tmp_path: Path) -> None:
    """OVF 2.0's namespace, and members named ./vm.ovf as `tar -C dir .` writes them."""
    descriptor = ovf([("disk1.vmdk", SIZE, "byte")], style="virtualbox", firmware="EFI")
    descriptor = descriptor.replace(b"dmtf.org/ovf/envelope/1", b"dmtf.org/ovf/envelope/2")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "vm.ovf").write_bytes(descriptor)
    os.link(disks["stream"], folder / "disk1.vmdk")
    (folder / "vm.mf").write_text(
        f"SHA1(vm.ovf)= {hashlib.sha1(descriptor).hexdigest()}\n"
        f"SHA1(disk1.vmdk)= {hashlib.sha1(disks['stream'].read_bytes()).hexdigest()}\n"
    )
    package = tmp_path / "vm.ova"
    subprocess.run(
        ["tar", "-cf", str(package), "-C", str(folder), "./vm.ovf", "./vm.mf", "./disk1.vmdk"], check=True
    )
    with open_image(package) as img:
        assert img.format == "ova/vmdk" and img.firmware == "uefi" and img.virtual_size == SIZE
        img.check_integrity()
