"""Split and multi-extent VMDKs (twoGbMaxExtentSparse/Flat, monolithicFlat, vmfs, vmfsSparse with
COWD extents, monolithicSparse descriptors with several extents, a sparse header of capacity 0 that
only carries a descriptor): byte-identical to `qemu-img convert -O raw`; extents stay in the
descriptor's folder; every refusal names the descriptor line's byte offset."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu, qemu_data_runs, qemu_info_size
from disk.sources import cowd, vmdk_descriptor
from disk.vmdk_stream import header
from imaging import GiB, MiB, convert, mixed_raw, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.digest import content_digest
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.vmdk_extents import VmdkExtentsImage

SIZE = 16 * MiB
PIECES = (5 * MiB, 3 * MiB + 512, SIZE - 8 * MiB - 512)  # extents of odd sizes


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_raw(tmp_path_factory.mktemp("ext") / "src.raw", SIZE, seed=11)


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def _pieces(source: Path, folder: Path) -> list[tuple[Path, int]]:
    data = source.read_bytes()
    out, pos = [], 0
    for i, n in enumerate(PIECES):
        out.append((sparse_raw(folder / f"piece{i}.raw", n, [(0, data[pos : pos + n])]), n))
        pos += n
    return out


def _descriptor(folder: Path, create_type: str, lines: list[str], name: str = "disk.vmdk") -> Path:
    path = folder / name
    path.write_text(vmdk_descriptor(create_type, lines))
    return path


@pytest.mark.parametrize("subformat", ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "monolithicFlat"])
def test_qemu_made_descriptors_read_like_qemu(source: Path, tmp_path: Path, subformat: str) -> None:
    image = convert(source, tmp_path / "split.vmdk", "vmdk", f"subformat={subformat}", src_fmt="raw")
    assert_matches_qemu(image, "vmdk", tmp_path, VmdkExtentsImage)
    with open_image(image) as img:
        assert img.info()["subformat"] == subformat


@pytest.mark.parametrize("kind", ["SPARSE", "FLAT", "VMFSSPARSE"])
def test_several_extents_read_like_qemu(source: Path, tmp_path: Path, kind: str) -> None:
    lines = []
    for i, (piece, n) in enumerate(_pieces(source, tmp_path)):
        name = f"disk-s{i:03}.vmdk"
        if kind == "SPARSE":
            convert(piece, tmp_path / name, "vmdk", "subformat=monolithicSparse", src_fmt="raw")
        elif kind == "VMFSSPARSE":
            (tmp_path / name).write_bytes(cowd(piece.read_bytes(), grain=8 if i else 1))
        else:  # the first flat extent starts 3 sectors into its file
            skip = 3 * 512 if i == 0 else 0
            sparse_raw(tmp_path / name, skip + n, [(skip, piece.read_bytes())])
        lines.append(f'RW {n // 512} {kind} "{name}"' + (f" {3 if i == 0 else 0}" if kind == "FLAT" else ""))
    create_type = {"SPARSE": "twoGbMaxExtentSparse", "FLAT": "twoGbMaxExtentFlat", "VMFSSPARSE": "vmfsSparse"}
    path = _descriptor(tmp_path, create_type[kind], lines)
    assert_matches_qemu(path, "vmdk", tmp_path, VmdkExtentsImage)
    with open_image(path) as img:
        assert len(img.info()["extents"]) == 3
        assert img.files == (path, *(tmp_path / f"disk-s{i:03}.vmdk" for i in range(3)))  # what caches key on


def test_monolithic_sparse_with_several_extents(source: Path, tmp_path: Path) -> None:
    """qemu refuses createType monolithicSparse in a descriptor file; VMware writes it. Compared with
    qemu reading the same extents under twoGbMaxExtentSparse."""
    lines = []
    for i, (piece, n) in enumerate(_pieces(source, tmp_path)):
        convert(piece, tmp_path / f"m{i}.vmdk", "vmdk", "subformat=monolithicSparse", src_fmt="raw")
        lines.append(f'RW {n // 512} SPARSE "m{i}.vmdk"')
    ours = _descriptor(tmp_path, "monolithicSparse", lines)
    theirs = _descriptor(tmp_path, "twoGbMaxExtentSparse", lines, "theirs.vmdk")
    assert_matches_qemu(ours, "vmdk", tmp_path, VmdkExtentsImage, qemu_path=theirs)


def test_descriptor_embedded_in_a_header_of_capacity_zero(source: Path, tmp_path: Path) -> None:
    """A KDMV header with capacity 0 only carries the descriptor (qemu's rule); the extents follow it."""
    lines = []
    for i, (piece, n) in enumerate(_pieces(source, tmp_path)):
        convert(piece, tmp_path / f"e{i}.vmdk", "vmdk", "subformat=monolithicSparse", src_fmt="raw")
        lines.append(f'RW {n // 512} SPARSE "e{i}.vmdk"')
    text = vmdk_descriptor("twoGbMaxExtentSparse", lines).encode().ljust(20 * 512, b"\0")
    head = bytearray(header(0, 21, compress=0, flags=3))
    struct.pack_into("<QQ", head, 28, 1, 20)  # descriptor at sector 1, 20 sectors
    path = tmp_path / "carrier.vmdk"
    path.write_bytes(bytes(head) + text + bytes(512))
    assert_matches_qemu(path, "vmdk", tmp_path, VmdkExtentsImage)


def test_vmfs_descriptor_and_zero_extents(source: Path, tmp_path: Path) -> None:
    data = source.read_bytes()
    (tmp_path / "esx-flat.vmdk").write_bytes(data)
    esx = _descriptor(tmp_path, "vmfs", [f'RW {SIZE // 512} VMFS "esx-flat.vmdk"'], "esx.vmdk")
    assert_matches_qemu(esx, "vmdk", tmp_path, VmdkExtentsImage)
    # qemu drops ZERO extents (the disk would shrink); VMware reads them as zeros
    path = _descriptor(
        tmp_path,
        "monolithicFlat",
        ['RW 2048 FLAT "esx-flat.vmdk" 0', "RW 4096 ZERO", 'RDONLY 2048 FLAT "esx-flat.vmdk" 2048'],
        "zero.vmdk",
    )
    with open_image(path) as img:
        assert img.virtual_size == 4 * MiB
        assert img.read(0, MiB) == data[:MiB]
        assert img.read(MiB, 2 * MiB) == bytes(2 * MiB)
        assert img.read(3 * MiB, MiB) == data[MiB : 2 * MiB]
        assert not any(s < 3 * MiB and s + n > MiB for s, n in img.allocation.data_runs)


def test_big_split_disks_cross_the_2_gib_boundaries(tmp_path: Path) -> None:
    """qemu splits at 2 GiB: a 4.5 GiB disk is three extents; data straddles both boundaries."""
    size = 4 * GiB + 512 * MiB
    writes = [(0, pattern(8192, 1)), (2 * GiB - 4096, text_like(12288, 2)), (4 * GiB - 512, pattern(1024, 3))]
    writes.append((size - 4096, pattern(4096, 4)))
    raw = sparse_raw(tmp_path / "big.raw", size, writes)
    for subformat in ("twoGbMaxExtentSparse", "twoGbMaxExtentFlat"):
        image = convert(raw, tmp_path / f"{subformat}.vmdk", "vmdk", f"subformat={subformat}", src_fmt="raw")
        with open_image(image) as img, open_image(raw, "raw") as ref:
            assert isinstance(img, VmdkExtentsImage) and len(img.parts) == 3
            assert img.virtual_size == size == qemu_info_size(image, "vmdk")
            assert content_digest(img) == content_digest(ref)
            for off, data in writes:
                start = max(0, off - 100)
                assert img.read(start, len(data) + 200) == ref.read(start, len(data) + 200)
            qemu_runs = qemu_data_runs(image, "vmdk")
            for a, n in img.allocation.data_runs:
                assert any(s <= a and a + n <= e for s, e in qemu_runs)
            assert img.allocation.data_bytes < 4 * MiB


def test_readinto_across_extents(source: Path, tmp_path: Path) -> None:
    image = convert(source, tmp_path / "f.vmdk", "vmdk", "subformat=monolithicFlat", src_fmt="raw")
    lines = [f'RW {n // 512} FLAT "piece{i}.raw" 0' for i, (_, n) in enumerate(_pieces(source, tmp_path))]
    path = _descriptor(tmp_path, "twoGbMaxExtentFlat", lines)
    data = source.read_bytes()
    rnd = random.Random(5)
    with open_image(path) as img, open_image(image):
        for _ in range(60):
            off = rnd.randrange(SIZE)
            buf = bytearray(rnd.randrange(1, 3 * MiB))
            n = img.readinto(off, memoryview(buf))
            assert n == min(len(buf), SIZE - off) and buf[:n] == data[off : off + n]


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "error", "words"),
    [
        ('RW 2048 FLAT "/etc/passwd" 0', ImageFormatError, "must be a plain file name"),
        ('RW 2048 FLAT "../outside.raw" 0', ImageFormatError, "must be a plain file name"),
        ('RW 2048 FLAT "link.raw" 0', ImageFormatError, "leaves the folder"),
        ('RW 2048 FLAT "missing.raw" 0', ImageFormatError, "cannot open extent 'missing.raw'"),
        (
            'RW 4096 FLAT "one.raw" 0',
            ImageFormatError,
            "one.raw is 1048576 bytes, the descriptor needs 2097152",
        ),
        ('RW 2048 SPARSE "one.raw"', ImageFormatError, "is not a sparse extent"),
        ('RW 4096 SPARSE "sparse.vmdk"', ImageFormatError, "holds 2048 sectors, the descriptor says 4096"),
        ('NOACCESS 2048 FLAT "one.raw" 0', UnsupportedImageError, "is NOACCESS"),
        ('RW 2048 VMFSRDM "one.raw"', UnsupportedImageError, "extent type VMFSRDM maps a device"),
        ('RW 2048 SESPARSE "one.raw"', UnsupportedImageError, "extent type SESPARSE is not supported"),
        ('RW 0 FLAT "one.raw" 0', ImageFormatError, "extent of 0 sectors"),
    ],
)
def test_bad_extents(tmp_path: Path, line: str, error: type[Exception], words: str) -> None:
    folder = tmp_path / "vm"
    folder.mkdir()
    (tmp_path / "outside.raw").write_bytes(bytes(MiB))
    (folder / "link.raw").symlink_to(tmp_path / "outside.raw")
    (folder / "one.raw").write_bytes(pattern(MiB, 1))
    convert(folder / "one.raw", folder / "sparse.vmdk", "vmdk", "subformat=monolithicSparse", src_fmt="raw")
    text = vmdk_descriptor("twoGbMaxExtentFlat", ['RW 2048 FLAT "one.raw" 0', line])
    path = folder / "disk.vmdk"
    path.write_text(text)
    with pytest.raises(error, match=words) as err:
        open_image(path)
    assert isinstance(err.value, ImageFormatError) and err.value.offset == text.index(line)


def test_descriptor_rules(tmp_path: Path) -> None:
    (tmp_path / "one.raw").write_bytes(pattern(MiB, 1))
    cases = [
        ("fullDevice", "ffffffff", UnsupportedImageError, "maps a physical device"),
        ("vmfsRawDeviceMap", "ffffffff", UnsupportedImageError, "maps a physical device"),
        ("seSparse", "ffffffff", UnsupportedImageError, "createType 'seSparse' is not supported"),
        ("vmfsSparse", "0a1b2c3d", UnsupportedImageError, "delta disk of a snapshot chain"),
    ]
    for create_type, parent, error, words in cases:
        path = tmp_path / "d.vmdk"
        path.write_text(vmdk_descriptor(create_type, ['RW 2048 FLAT "one.raw" 0'], parent))
        with pytest.raises(error, match=words):
            open_image(path)
    path.write_text(vmdk_descriptor("monolithicFlat", []))
    with pytest.raises(ImageFormatError, match="names no extent"):
        open_image(path)


def test_an_extent_alone_is_refused(source: Path, tmp_path: Path) -> None:
    convert(source, tmp_path / "split.vmdk", "vmdk", "subformat=twoGbMaxExtentSparse", src_fmt="raw")
    with pytest.raises(UnsupportedImageError, match="one extent of a multi-file VMDK"):
        open_image(tmp_path / "split-s001.vmdk")
    (tmp_path / "delta.vmdk").write_bytes(cowd(pattern(MiB, 2)))
    with pytest.raises(UnsupportedImageError, match=r"ESX sparse \(COWD\) extent without its descriptor"):
        open_image(tmp_path / "delta.vmdk")


def test_files_are_closed_when_an_extent_fails(source: Path, tmp_path: Path) -> None:
    lines = [f'RW {n // 512} FLAT "piece{i}.raw" 0' for i, (_, n) in enumerate(_pieces(source, tmp_path))]
    path = _descriptor(tmp_path, "twoGbMaxExtentFlat", [*lines, 'RW 8 FLAT "missing.raw" 0'])
    before = _open_fds()
    for _ in range(5):
        with pytest.raises(ImageFormatError, match="cannot open extent"):
            open_image(path)
    assert _open_fds() == before
    path = _descriptor(tmp_path, "twoGbMaxExtentFlat", lines)
    with open_image(path) as img:
        extents = [p.image for p in img.parts if p.image]
        assert _open_fds() == before + 4
    assert all(e.fd == -1 for e in extents) and _open_fds() == before
