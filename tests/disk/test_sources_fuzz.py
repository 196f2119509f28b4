"""Fuzzing the readers of issue 11: mutated VDI headers and block maps, tar headers (checksums fixed
up so the fuzzer gets past them; GNU sparse maps, PAX records), OVF XML inside an OVA, and VMDK
descriptors naming several extents. Only DiskError may escape, quickly.

Inputs that once crashed a reader are kept in tests/disk/corpus/ (vdi_*, tar_*, ova_*, vmdkdesc_*)
and replayed. IMGPUB_FUZZ_EXAMPLES=n runs n examples per test instead of 120.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk.sources import ova, ovf, vdi, vmdk_descriptor
from imaging import MiB, convert, mbr, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.errors import DiskError

CORPUS = Path(__file__).parent / "corpus"
INTERESTING = [
    0,
    1,
    2,
    7,
    8,
    511,
    512,
    513,
    0x190,
    4096,
    MiB,
    1 << 31,
    0xFFFFFFFE,
    0xFFFFFFFF,
    1 << 40,
    2**63,
]
SETTINGS = settings(
    max_examples=int(os.environ.get("IMGPUB_FUZZ_EXAMPLES", "120")),  # more for a longer campaign
    deadline=3000,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def exercise(path: Path, fmt: str = "auto", member: str | int | None = None) -> bool:
    """Open and read everything; only DiskError may escape. True if the input was refused."""
    try:
        img = open_image(path, fmt, member=member)
    except DiskError:
        return True
    with img:
        try:
            if img.virtual_size <= 64 * MiB:
                img.read(0, img.virtual_size)
            for _ in img.blocks(256 * 1024):
                pass
            img.read(img.virtual_size // 2, 70_000)
            img.check_integrity()
        except DiskError:
            return True
    return False


def keep(name: str, data: bytes) -> None:
    CORPUS.mkdir(exist_ok=True)
    (CORPUS / f"{name}_{hashlib.sha256(data).hexdigest()[:12]}.bin").write_bytes(data)


@st.composite
def binary_mutation(draw: st.DrawFn, data: bytes, hot: list[int]) -> tuple[bytes, int | None]:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        width = draw(st.sampled_from([1, 2, 4, 8, 12]))
        off = draw(st.one_of(st.sampled_from(hot), st.integers(0, len(buf) - 1)))
        if off + width > len(buf):
            continue
        if width == 12:  # a tar number field: octal text, base-256, or garbage
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**40)))
            form = draw(st.sampled_from(["octal", "b256", "junk"]))
            if form == "octal":
                field = f"{value % 8**11:011o}\0".encode()
            elif form == "b256":
                field = b"\x80" + (value % 2**88).to_bytes(11, "big")
            else:
                field = draw(st.binary(min_size=12, max_size=12))
            buf[off : off + 12] = field
            continue
        old = int.from_bytes(buf[off : off + width], "little")
        value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2 ** (8 * width) - 1)))
        value = draw(st.sampled_from([value, old ^ value, old + 1, old - 1, old + 512, 0]))
        buf[off : off + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    cut = draw(st.one_of(st.none(), st.integers(0, len(buf))))
    return bytes(buf), cut


# ---- VDI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vdi_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("vdi-fuzz")
    raw = sparse_raw(tmp / "s.raw", 4 * MiB + 512, [(0, pattern(70_000, 1)), (3 * MiB, text_like(9000, 2))])
    return {
        "qemu": convert(raw, tmp / "q.vdi", "vdi", src_fmt="raw").read_bytes(),
        "virtualbox": vdi(raw.read_bytes(), static=True),
    }


@pytest.mark.parametrize("seed", ["qemu", "virtualbox"])
def test_vdi_header_and_block_map(vdi_seeds: dict[str, bytes], tmp_path: Path, seed: str) -> None:
    data = vdi_seeds[seed]
    bmap = struct.unpack_from("<I", data, 0x154)[0]
    hot = [*range(0x40, 0x1C8, 4), *range(bmap, bmap + 24, 4)]

    @SETTINGS
    @given(binary_mutation(data, hot))
    def run(case: tuple[bytes, int | None]) -> None:
        buf, cut = case
        path = tmp_path / "m.vdi"
        path.write_bytes(buf if cut is None else buf[:cut])
        try:
            exercise(path)
            exercise(path, "vdi")
        except Exception:
            keep("vdi", path.read_bytes())
            raise

    run()


# ---- tar ------------------------------------------------------------------------------------------


def _fix_checksums(buf: bytearray) -> None:
    """Recompute the checksum of every block that looks like a tar header (magic at 257)."""
    for pos in range(0, len(buf) - 511, 512):
        if buf[pos + 257 : pos + 262] == b"ustar":
            block = buf[pos : pos + 512]
            block[148:156] = b" " * 8
            buf[pos + 148 : pos + 156] = b"%06o\0 " % sum(block)


@pytest.fixture(scope="module")
def tar_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("tar-fuzz")
    long_name = "a" * 120 + ".raw"
    sparse_raw(
        tmp / "disk.raw", 4 * MiB, [(0, mbr(4)), (MiB, pattern(8192, 1)), (3 * MiB, text_like(4096, 2))]
    )
    (tmp / long_name).symlink_to(tmp / "disk.raw")
    out = {}
    for name, options, files in [
        ("oldgnu", ["--format=oldgnu", "-S"], ["disk.raw"]),
        ("pax10", ["--format=pax", "--sparse-version=1.0", "-S"], ["disk.raw"]),
        ("pax00", ["--format=pax", "--sparse-version=0.0", "-S"], ["disk.raw"]),
        ("gnu-long", ["--format=gnu", "-h"], [long_name]),
    ]:
        archive = tmp / f"{name}.tar"
        subprocess.run(["tar", *options, "-cf", str(archive), "-C", str(tmp), *files], check=True)
        data = archive.read_bytes()
        out[name] = data[: data.rfind(bytes(1024)) + 1024] if name == "gnu-long" else data
    return out


@pytest.mark.parametrize("seed", ["oldgnu", "pax10", "pax00", "gnu-long"])
def test_tar_headers_and_sparse_maps(tar_seeds: dict[str, bytes], tmp_path: Path, seed: str) -> None:
    data = tar_seeds[seed]
    hot = [124, 136, 148, 156, 257, 345, 386, 398, 410, 422, 482, 483, 512, 524, 636, 1024, 1036, 1536, 1548]

    @SETTINGS
    @given(binary_mutation(data[: 64 * 1024], hot), st.booleans())
    def run(case: tuple[bytes, int | None], fix: bool) -> None:
        head, cut = case
        buf = bytearray(head + data[64 * 1024 :])
        if fix:
            _fix_checksums(buf)
        path = tmp_path / "m.tar"
        path.write_bytes(buf if cut is None else buf[:cut])
        try:
            exercise(path)
            exercise(path, "raw")
        except Exception:
            keep("tar", path.read_bytes())
            raise

    run()


# ---- OVF inside an OVA ------------------------------------------------------------------------------

XML_PIECES = [
    '<!DOCTYPE Envelope [<!ENTITY x "y">]>',
    "&x;",
    "&#0;",
    "<![CDATA[",
    'ovf:capacity="-1"',
    'ovf:capacity="99999999999999999999999999"',
    'ovf:capacityAllocationUnits="byte * 2^9999"',
    'ovf:capacityAllocationUnits="byte * 7^3"',
    'ovf:href="../../etc/passwd"',
    'ovf:href=""',
    'ovf:diskId=""',
    'vmw:key="firmware" vmw:value=""',
    "<Disk/>",
    "<File/>",
    "<Firmware/>",
    "\x00",
    "\udcff",
    "<a>" * 50,
]


@st.composite
def xml_mutation(draw: st.DrawFn, text: str) -> str:
    out = text
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["insert", "delete", "replace-value"]))
        if kind == "insert":
            piece = draw(st.one_of(st.sampled_from(XML_PIECES), st.text(max_size=12)))
            out = out[:pos] + piece + out[pos:]
        elif kind == "delete":
            out = out[:pos] + out[pos + draw(st.integers(1, 40)) :]
        else:
            values = [m.start(1) for m in re.finditer(r'="([^"]*)"', out)]
            if values:
                start = draw(st.sampled_from(values))
                end = out.index('"', start)
                new = draw(
                    st.one_of(
                        st.sampled_from(["0", "1", "2", "disk1.vmdk", "vmdisk0", "efi", "${x}"]),
                        st.text(max_size=8),
                    )
                )
                out = out[:start] + new.replace('"', "") + out[end:]
    return out


@pytest.fixture(scope="module")
def ova_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("ova-fuzz")
    raw = sparse_raw(tmp / "s.raw", 2 * MiB, [(0, mbr(5)), (MiB, pattern(8192, 5))])
    disk = convert(raw, tmp / "s.vmdk", "vmdk", "subformat=streamOptimized", src_fmt="raw")
    text = ovf([("disk1.vmdk", 2 * MiB, "byte"), ("disk2.vmdk", 1, "byte * 2^30")], firmware="efi").decode()
    return text, disk


def test_ovf_xml_in_an_ova(ova_parts: tuple[str, Path], tmp_path: Path) -> None:
    text, disk = ova_parts

    @SETTINGS
    @given(
        xml_mutation(text),
        st.sampled_from([None, 0, 1, "disk2.vmdk", "vmdisk0"]),
        st.sampled_from([None, "SHA1"]),
    )
    def run(xml: str, member: str | int | None, algorithm: str | None) -> None:
        descriptor = xml.encode("utf-8", "surrogateescape")
        path = tmp_path / "m.ova"
        path.unlink(missing_ok=True)
        ova(path, descriptor, {"disk1.vmdk": disk, "disk2.vmdk": disk}, algorithm=algorithm)
        try:
            exercise(path, member=member)
            (tmp_path / "m.ovf").write_bytes(descriptor)
            (tmp_path / "disk1.vmdk").unlink(missing_ok=True)
            os.link(disk, tmp_path / "disk1.vmdk")
            exercise(tmp_path / "m.ovf", member=member)
        except Exception:
            keep("ova", path.read_bytes())
            raise

    run()


# ---- VMDK descriptors naming extents -------------------------------------------------------------


@st.composite
def descriptor_mutation(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        access = draw(st.sampled_from(["RW", "RDONLY", "NOACCESS", "XX"]))
        sectors = draw(
            st.one_of(st.sampled_from([0, 1, 2048, 4096, 32768, 2**31, 2**64]), st.integers(0, 10**6))
        )
        kind = draw(
            st.sampled_from(["FLAT", "SPARSE", "ZERO", "VMFS", "VMFSSPARSE", "VMFSRDM", "SESPARSE", "BOGUS"])
        )
        name = draw(
            st.sampled_from(
                ["flat.raw", "sparse.vmdk", "cowd.vmdk", "text.vmdk", "missing", "../x", "/dev/zero", ""]
            )
        )
        offset = draw(st.sampled_from(["", " 0", " 1", " 2048", " 99999999999", " -1"]))
        lines.append(f'{access} {sectors} {kind} "{name}"{offset}')
    create = draw(
        st.sampled_from(
            [
                "twoGbMaxExtentSparse",
                "monolithicFlat",
                "vmfs",
                "vmfsSparse",
                "monolithicSparse",
                "fullDevice",
                "",
            ]
        )
    )
    parent = draw(st.sampled_from(["ffffffff", "1234abcd"]))
    return vmdk_descriptor(create, lines, parent)


def test_vmdk_descriptors_with_extents(tmp_path: Path) -> None:
    from disk.sources import cowd

    sparse_raw(tmp_path / "flat.raw", 2 * MiB, [(0, pattern(4096, 1))])
    convert(
        tmp_path / "flat.raw", tmp_path / "sparse.vmdk", "vmdk", "subformat=monolithicSparse", src_fmt="raw"
    )
    (tmp_path / "cowd.vmdk").write_bytes(cowd(pattern(MiB, 2)))
    (tmp_path / "text.vmdk").write_text(vmdk_descriptor("monolithicFlat", ['RW 4096 FLAT "text.vmdk" 0']))

    @SETTINGS
    @given(descriptor_mutation())
    def run(text: str) -> None:
        path = tmp_path / "d.vmdk"
        path.write_text(text)
        try:
            exercise(path)
        except Exception:
            keep("vmdkdesc", text.encode())
            raise

    run()


REPLAY: dict[str, Callable[[Path], bool]] = {
    "vdi": exercise,
    "tar": exercise,
    "ova": exercise,
    "vmdkdesc": exercise,
}


@pytest.mark.parametrize("case", sorted(p.name for k in REPLAY for p in CORPUS.glob(f"{k}_*.bin")))
def test_corpus_regressions(case: str, tmp_path: Path) -> None:
    """Hazards kept by name (a block shared by two guest blocks, overlapping sparse regions, an
    entity bomb, an extent outside its folder) must be refused; crash inputs saved by the fuzzer
    (named by digest) must only not crash."""
    kind = case.split("_")[0]
    path = tmp_path / ("d.vmdk" if kind == "vmdkdesc" else case)
    path.write_bytes((CORPUS / case).read_bytes())
    refused = REPLAY[kind](path)
    assert refused or re.fullmatch(r"[a-z]+_[0-9a-f]{12}\.bin", case)
