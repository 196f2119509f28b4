"""`imgpub inspect` and `imgpub convert` on hypervisor exports: --disk chooses the disk of an OVA,
inspect shows the firmware and the disks, convert checks the manifest digests first, and a file
that is not a disk image is exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from disk.sources import ova, ovf
from imaging import MiB, convert, mixed_raw, qemu_img
from imgpub.cli import app

SIZE = 16 * MiB


def run(*args: str | Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def package(tmp_path: Path) -> Path:
    one = convert(
        mixed_raw(tmp_path / "one.raw", SIZE, seed=1),
        tmp_path / "one.vmdk",
        "vmdk",
        "subformat=streamOptimized",
    )
    two = convert(
        mixed_raw(tmp_path / "two.raw", 2 * SIZE, seed=2),
        tmp_path / "two.vmdk",
        "vmdk",
        "subformat=streamOptimized",
    )
    descriptor = ovf([("disk1.vmdk", SIZE, "byte"), ("disk2.vmdk", 2 * SIZE, "byte")], firmware="efi")
    return ova(tmp_path / "vm.ova", descriptor, {"disk1.vmdk": one, "disk2.vmdk": two}, algorithm="SHA256")


def test_inspect_lists_the_disks_and_the_firmware(package: Path) -> None:
    result = run("inspect", package)
    assert result.exit_code == 2
    assert "holds 2 disks: 0 disk1.vmdk (16.0 MiB), 1 disk2.vmdk (32.0 MiB); choose one with" in result.output
    result = run("inspect", package, "--disk", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{package}: ova/vmdk" in out and "firmware        uefi" in out
    assert (
        "disks             0 disk1.vmdk (16.0 MiB)" in out
        and "disks           * 1 disk2.vmdk (32.0 MiB)" in out
    )
    assert "manifest        vm.mf (SHA256)" in out
    data = json.loads(run("inspect", package, "--disk", "disk1.vmdk", "--json").stdout)
    assert data["format"] == "ova/vmdk" and data["virtual_size"] == SIZE and data["firmware"] == "uefi"
    assert data["container"]["disk"] == "0 disk1.vmdk"


def test_convert_a_chosen_disk(package: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    result = run("convert", package, "--disk", "disk2.vmdk", "--to", "raw", "-o", out)
    assert result.exit_code == 0, result.output
    assert "identical" in qemu_img("compare", "-f", "raw", "-F", "raw", out, tmp_path / "two.raw")


def test_convert_refuses_a_damaged_package(package: Path, tmp_path: Path) -> None:
    data = bytearray(package.read_bytes())
    data[-20000] ^= 0xFF  # inside disk2.vmdk, the last member
    package.write_bytes(data)
    result = run("convert", package, "--disk", "1", "--to", "raw", "-o", tmp_path / "out.raw")
    assert result.exit_code == 2
    assert "SHA256 of disk2.vmdk is " in result.output and "but vm.mf says" in result.output
    assert not (tmp_path / "out.raw").exists()


def test_not_a_disk_is_one_line_and_exit_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not the disks you are looking for\n")
    result = run("inspect", notes)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"imgpub: error: {notes}: image header at byte 0x0: looks like a text file (it starts 'these are not "
        "the disks you are looking'), not a disk image"
    )
