"""Benchmark corpus: a sparse GPT-ish raw disk with about 1 GiB of mixed data, and its conversions.

    ensure_corpus(kind, size_gib=8, data_gib=1.0) -> Path
    kind: raw | qcow2 | qcow2c | vmdk | vhd | vdi | ova

Files live in $IMGPUB_BENCH_DIR (default /tmp/imgpub-bench) and are reused when their recipe
matches. The raw disk has a protective MBR and primary/backup GPT headers, then 64 data extents
spread over the disk at 4 KiB (not MiB) alignment: half of them hold the contents of files under
/usr/share and /usr/lib (compressible, in sorted order), half deterministic random bytes, with
an allocated but all-zero run in the middle (as ext4 unwritten extents look once cached). The
other kinds are made by qemu-img: qcow2, qcow2 -c ("qcow2c"), VMDK streamOptimized ("vmdk"),
fixed VHD with force_size ("vhd") and dynamic VDI ("vdi"); "ova" is a tar (as VMware exports one)
of an .ovf naming the VMDK stream as disk1.vmdk, a SHA256 .mf, and the VMDK stream.

CLI: python benchmarks/corpus.py [--size-gib 8] [--data-gib 1]   builds every kind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
KINDS = ("raw", "qcow2", "qcow2c", "vmdk", "vhd", "vdi", "ova")
EXTENTS = 64
RECIPE_VERSION = 1
_CONVERT = {
    "qcow2": ["-O", "qcow2"],
    "qcow2c": ["-O", "qcow2", "-c"],
    "vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "vhd": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
    "vdi": ["-O", "vdi"],
}
_SUFFIX = {
    "raw": "raw",
    "qcow2": "qcow2",
    "qcow2c": "c.qcow2",
    "vmdk": "vmdk",
    "vhd": "vhd",
    "vdi": "vdi",
    "ova": "ova",
}
OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:id="file1" ovf:href="disk1.vmdk" ovf:size="{file_size}"/></References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}"
      ovf:capacityAllocationUnits="byte" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="corpus"><Info>A virtual machine</Info>
    <VirtualHardwareSection><Info>Virtual hardware requirements</Info>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/></VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def bench_dir() -> Path:
    path = Path(os.environ.get("IMGPUB_BENCH_DIR", "/tmp/imgpub-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _system_bytes() -> Iterator[bytes]:
    """Contents of regular files under /usr/share and /usr/lib, in a sorted walk, forever."""
    while True:
        for root in ("/usr/share", "/usr/lib"):
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    path = Path(folder, name)
                    try:
                        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * MiB:
                            continue
                        yield path.read_bytes()
                    except OSError:
                        continue


def _text(stream: Iterator[bytes], n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += next(stream)
    return bytes(out[:n])


def _gpt_stub(size: int) -> list[tuple[int, bytes]]:
    """Protective MBR, primary GPT header + entry array, backup header: enough to look like a disk."""
    mbr = bytearray(512)
    mbr[446:462] = bytes([0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0]) + b"\xff\xff\xff\xff"
    mbr[510:512] = b"\x55\xaa"
    entries = bytearray(128 * 128)
    entries[0:16] = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")  # EFI system partition
    entries[16:32] = random.Random(1).randbytes(16)
    entries[32:48] = (2048).to_bytes(8, "little") + (size // 512 - 34).to_bytes(8, "little")
    header = bytearray(92)
    header[0:12] = b"EFI PART\x00\x00\x01\x00"
    header[12:16] = (92).to_bytes(4, "little")
    header[24:32] = (1).to_bytes(8, "little")
    header[32:40] = (size // 512 - 1).to_bytes(8, "little")
    header[72:80] = (2).to_bytes(8, "little")
    header[80:88] = (128).to_bytes(4, "little") + (128).to_bytes(4, "little")
    header[88:92] = zlib.crc32(entries).to_bytes(4, "little")
    header[16:20] = zlib.crc32(header).to_bytes(4, "little")
    return [(0, bytes(mbr)), (512, bytes(header)), (1024, bytes(entries)), (size - 512, bytes(header))]


def _layout(size: int, data: int) -> list[tuple[int, int, str]]:
    """(offset, length, content) of the data extents: 'text', 'random' or 'zero', 4 KiB-aligned."""
    rnd = random.Random(42)
    each = data // EXTENTS // 4096 * 4096
    slot = (size - 2 * MiB) // EXTENTS
    out = []
    for i in range(EXTENTS):
        offset = MiB + i * slot + rnd.randrange(0, max(1, (slot - each) // 4096)) * 4096
        kind = "zero" if i == EXTENTS // 2 else ("text" if i % 2 == 0 else "random")
        out.append((offset, each, kind))
    return out


def _build_raw(path: Path, size: int, data: int) -> None:
    tmp = path.with_suffix(".tmp")
    text = _system_bytes()
    rnd = random.Random(7)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for off, blob in _gpt_stub(size):
            os.pwrite(fd, blob, off)
        for offset, length, kind in _layout(size, data):
            for pos in range(0, length, 4 * MiB):
                n = min(4 * MiB, length - pos)
                blob = bytes(n) if kind == "zero" else _text(text, n) if kind == "text" else rnd.randbytes(n)
                os.pwrite(fd, blob, offset + pos)
    finally:
        os.close(fd)
    tmp.replace(path)


def _build_ova(path: Path, vmdk: Path, capacity: int) -> None:
    """ovf, mf (SHA256), then the VMDK stream, in a ustar archive (what ovftool writes)."""
    import hashlib
    import io
    import tarfile

    descriptor = OVF.format(file_size=vmdk.stat().st_size, capacity=capacity).encode()
    digest = hashlib.sha256()
    with open(vmdk, "rb") as f:
        while chunk := f.read(16 * MiB):
            digest.update(chunk)
    manifest = (
        f"SHA256(corpus.ovf)= {hashlib.sha256(descriptor).hexdigest()}\n"
        f"SHA256(disk1.vmdk)= {digest.hexdigest()}\n"
    ).encode()
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("corpus.ovf", descriptor), ("corpus.mf", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(vmdk, arcname="disk1.vmdk")
    tmp.replace(path)


def ensure_corpus(kind: str, size_gib: int = 8, data_gib: float = 1.0) -> Path:
    """The corpus file of `kind`, built on first use (raw first, the others by qemu-img)."""
    if kind not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}; one of {', '.join(KINDS)}")
    folder = bench_dir()
    stem = f"corpus-{size_gib}g-{data_gib:g}g"
    path = folder / f"{stem}.{_SUFFIX[kind]}"
    stamp = path.with_name(path.name + ".json")
    recipe = {"version": RECIPE_VERSION, "kind": kind, "size_gib": size_gib, "data_gib": data_gib}
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == recipe:
        return path
    if kind == "raw":
        _build_raw(path, size_gib * GiB, int(data_gib * GiB))
    elif kind == "ova":
        _build_ova(path, ensure_corpus("vmdk", size_gib, data_gib), size_gib * GiB)
    else:
        raw = ensure_corpus("raw", size_gib, data_gib)
        tmp = path.with_name(path.name + ".tmp")
        subprocess.run(["qemu-img", "convert", "-f", "raw", *_CONVERT[kind], str(raw), str(tmp)], check=True)
        tmp.replace(path)
    stamp.write_text(json.dumps(recipe))
    return path


def main() -> None:
    raw_help = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw_help)
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=float, default=1.0)
    args = parser.parse_args()
    for kind in KINDS:
        path = ensure_corpus(kind, args.size_gib, args.data_gib)
        st = path.stat()
        apparent, allocated = st.st_size / MiB, st.st_blocks * 512 / MiB
        print(f"{kind:7} {path}  {apparent:9.1f} MiB apparent  {allocated:8.1f} MiB allocated")


if __name__ == "__main__":
    main()
