"""VMDK reader: byte-identical to `qemu-img convert -O raw` for qemu-made monolithicSparse,
streamOptimized and monolithicFlat images and for a VMware-style stream (GD_AT_END + footer);
every refusal and corruption is a clear DiskError. Split and multi-extent disks: test_vmdk_extents."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from disk.oracle import assert_matches_qemu
from disk.vmdk_stream import GD_AT_END, descriptor, header, write_vmware_stream
from imaging import MiB, convert, pattern, qemu_img, sparse_raw, text_like, to_raw
from imgpub.disk import open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.vmdk import VmdkSparseImage
from imgpub.disk.vmdk_extents import VmdkExtentsImage

SIZE = 5 * MiB + 3 * 512  # the last grain is short


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparse_raw(
        tmp_path_factory.mktemp("vmdk") / "src.raw",
        SIZE,
        [
            (0, pattern(70_000, 1)),
            (MiB + 512, text_like(400_000, 2)),
            (2 * MiB, bytes(200_000)),
            (3 * MiB + 4096, pattern(5000, 3)),
            (SIZE - 1536, pattern(1536, 5)),
        ],
    )


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized", "monolithicFlat"])
def test_qemu_made_images_read_like_qemu(source: Path, tmp_path: Path, subformat: str) -> None:
    img = convert(source, tmp_path / f"{subformat}.vmdk", "vmdk", f"subformat={subformat}")
    cls = VmdkExtentsImage if subformat == "monolithicFlat" else VmdkSparseImage
    assert_matches_qemu(img, "vmdk", tmp_path, cls)


@pytest.mark.parametrize("size", [512, 64 * 1024 - 512, 40 * MiB + 7 * 512])
def test_odd_sizes(tmp_path: Path, size: int) -> None:
    raw = sparse_raw(tmp_path / "odd.raw", size, [(0, pattern(min(size, 1000), 9)), (size - 512, b"x" * 512)])
    for sub in ("monolithicSparse", "streamOptimized"):
        img = convert(raw, tmp_path / f"{sub}.vmdk", "vmdk", f"subformat={sub}")
        assert_matches_qemu(img, "vmdk", tmp_path, VmdkSparseImage)


def test_vmware_stream_with_footer_and_zeroed_grains(source: Path, tmp_path: Path) -> None:
    path = write_vmware_stream(tmp_path / "vmware.vmdk", source.read_bytes())
    assert struct.unpack_from("<Q", path.read_bytes(), 56)[0] == GD_AT_END
    assert_matches_qemu(path, "vmdk", tmp_path, VmdkSparseImage)
    with open_image(path) as img:
        assert img.info()["footer"] is True
        assert img.info()["subformat"] == "streamOptimized"


def test_vmware_stream_many_grain_tables(tmp_path: Path) -> None:
    size = 70 * MiB + 512  # three grain tables, the middle one empty
    raw = bytearray(size)
    raw[0:4096] = pattern(4096, 1)
    raw[size - 100_000 :] = text_like(100_000, 2)
    path = write_vmware_stream(tmp_path / "big.vmdk", bytes(raw), grain=16)
    assert_matches_qemu(path, "vmdk", tmp_path, VmdkSparseImage)


def test_stream_blocks_are_ordered_and_complete_for_every_block_size(tmp_path: Path) -> None:
    raw = sparse_raw(tmp_path / "r.raw", 8 * MiB, [(i * 300_000, pattern(70_000, i)) for i in range(26)])
    img_path = convert(raw, tmp_path / "s.vmdk", "vmdk", "subformat=streamOptimized")
    ref = raw.read_bytes()
    with open_image(img_path) as img:
        for bs in (512, 65536, 1 << 20, 4 << 20, 100_352):
            got = bytearray(len(ref))
            last = -1
            for index, block in img.blocks(bs):
                assert index > last
                last = index
                got[index * bs : index * bs + len(block)] = block
            assert got == ref


def test_abandoned_blocks_generator_leaves_no_threads_behind(tmp_path: Path) -> None:
    raw = sparse_raw(tmp_path / "r.raw", 8 * MiB, [(0, pattern(8 * MiB, 1))])
    with open_image(convert(raw, tmp_path / "s.vmdk", "vmdk", "subformat=streamOptimized")) as img:
        gen = img.blocks(65536)
        assert next(gen)[0] == 0
        gen.close()


# ---- refusals ----------------------------------------------------------------------------------


def _patch(path: Path, offset: int, data: bytes) -> Path:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return path


def _stream(source: Path, tmp: Path, name: str = "s.vmdk") -> Path:
    return convert(source, tmp / name, "vmdk", "subformat=streamOptimized")


def _embedded_descriptor(path: Path, text: bytes) -> Path:
    return _patch(path, 512, text.ljust(20 * 512, b"\x00"))


def test_delta_disk_is_refused(source: Path, tmp_path: Path) -> None:
    path = _embedded_descriptor(_stream(source, tmp_path), descriptor(SIZE // 512, parent="1234abcd"))
    with pytest.raises(UnsupportedImageError, match=r"delta disk.*qemu-img convert"):
        open_image(path)


@pytest.mark.parametrize("create_type", ["twoGbMaxExtentSparse", "vmfsSparse", "seSparse"])
def test_unsupported_create_types_are_refused(source: Path, tmp_path: Path, create_type: str) -> None:
    path = _embedded_descriptor(_stream(source, tmp_path), descriptor(SIZE // 512, create_type))
    with pytest.raises(UnsupportedImageError, match=f"createType '{create_type}'"):
        open_image(path)


def test_unknown_compression_is_refused(source: Path, tmp_path: Path) -> None:
    path = _patch(_stream(source, tmp_path), 77, struct.pack("<H", 2))
    with pytest.raises(UnsupportedImageError, match=r"compression algorithm 2.*subformat=streamOptimized"):
        open_image(path)


def _flat_descriptor(tmp: Path, body: str) -> Path:
    path = tmp / "d.vmdk"
    path.write_text(f"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n{body}\n")
    return path


@pytest.mark.parametrize(
    ("extent", "match"),
    [
        ('RW 2048 FLAT "/etc/passwd" 0', "plain file name"),
        ('RW 2048 FLAT "../escape-flat.vmdk" 0', "plain file name"),
        ('RW 2048 FLAT "missing-flat.vmdk" 0', "cannot open extent"),
        ('RW 2048 FLAT "short-flat.vmdk" 0', "descriptor needs"),
        ('RW 2048 FLAT "link-flat.vmdk" 0', "leaves the folder"),
    ],
)
def test_flat_extent_paths_are_confined(tmp_path: Path, extent: str, match: str) -> None:
    (tmp_path / "short-flat.vmdk").write_bytes(bytes(4096))
    (tmp_path.parent / "escape-flat.vmdk").write_bytes(bytes(2048 * 512))
    (tmp_path / "link-flat.vmdk").symlink_to(tmp_path.parent / "escape-flat.vmdk")
    path = _flat_descriptor(tmp_path, f'createType="monolithicFlat"\n{extent}')
    with pytest.raises(ImageFormatError, match=match):
        open_image(path)


def test_flat_extent_at_an_offset(tmp_path: Path) -> None:
    data = pattern(8192, 4)
    (tmp_path / "x-flat.vmdk").write_bytes(bytes(4096) + data)
    with open_image(
        _flat_descriptor(tmp_path, 'createType="monolithicFlat"\nRW 16 FLAT "x-flat.vmdk" 8')
    ) as img:
        assert img.virtual_size == 8192
        assert img.read(0, 8192) == data
        assert img.allocation.data_bytes == 8192


# ---- corruption --------------------------------------------------------------------------------


def _sparse(source: Path, tmp: Path) -> Path:
    return convert(source, tmp / "m.vmdk", "vmdk", "subformat=monolithicSparse")


def _gd(path: Path) -> tuple[int, int]:
    """(byte offset of the grain directory, byte offset of the first grain table)."""
    buf = path.read_bytes()
    gd = struct.unpack_from("<Q", buf, 56)[0] * 512
    return gd, struct.unpack_from("<I", buf, gd)[0] * 512


def _read_all(path: Path) -> None:
    with open_image(path, "vmdk") as img:
        for _ in img.blocks(65536):
            pass


@pytest.mark.parametrize("maker", [_sparse, _stream])
def test_truncated_files_fail_cleanly(source: Path, tmp_path: Path, maker: object) -> None:
    path = maker(source, tmp_path)  # type: ignore[operator]
    full = path.read_bytes()
    for cut in (0, 100, 511, 4096, 128 * 512 + 100, len(full) // 2):
        path.write_bytes(full[:cut])
        with pytest.raises(ImageFormatError):
            _read_all(path)


@pytest.mark.parametrize(
    ("where", "value", "match"),
    [
        ("gd", 10**9, "outside the file|truncated"),
        ("gd", 0x0, None),  # a missing table is a hole, not an error
        ("gd", 1, "overlaps"),  # the table would sit on the descriptor... and the header page
        ("gt", 10**8, "outside the grain area"),
        ("gt", 5, "outside the grain area"),  # into the header / descriptor
    ],
)
def test_bad_table_entries(source: Path, tmp_path: Path, where: str, value: int, match: str | None) -> None:
    path = _sparse(source, tmp_path)
    gd, gt = _gd(path)
    _patch(path, gd if where == "gd" else gt, struct.pack("<I", value))
    if match is None:
        with open_image(path) as img:
            assert img.read(0, 65536) == bytes(65536)
        return
    if where == "gd" and value == 1:
        with pytest.raises(ImageFormatError, match=r"grain directory entry|grain table entry"):
            open_image(path)
        return
    with pytest.raises(ImageFormatError, match=match):
        open_image(path)


def test_two_directory_entries_sharing_a_table(tmp_path: Path) -> None:
    raw = sparse_raw(tmp_path / "r.raw", 70 * MiB, [(0, b"a" * 512), (40 * MiB, b"b" * 512)])
    path = convert(raw, tmp_path / "m.vmdk", "vmdk", "subformat=monolithicSparse")
    gd, gt = _gd(path)
    _patch(path, gd + 4, struct.pack("<I", gt // 512))
    with pytest.raises(ImageFormatError, match=r"grain directory entry at byte .*overlaps"):
        open_image(path)


def test_absurd_capacity_is_bounded(source: Path, tmp_path: Path) -> None:
    path = _patch(_sparse(source, tmp_path), 12, struct.pack("<Q", 1 << 60))
    with pytest.raises(ImageFormatError, match="absurd capacity"):
        open_image(path)
    path = _patch(path, 12, struct.pack("<Q", (60 << 40) // 512))  # allowed size, GD past EOF
    with pytest.raises(ImageFormatError, match="grain directory"):
        open_image(path)


def test_crlf_damage_is_named(source: Path, tmp_path: Path) -> None:
    path = _patch(_sparse(source, tmp_path), 73, b"\r\n\r\n")
    with pytest.raises(ImageFormatError, match="text mode"):
        open_image(path)


def _first_grain(path: Path) -> int:
    _, gt = _gd(path)
    return struct.unpack_from("<I", path.read_bytes(), gt)[0] * 512


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (lambda off: (off, struct.pack("<Q", 128)), "expected lba 0"),  # wrong lba in the marker
        (lambda off: (off + 8, struct.pack("<I", 1 << 30)), "expected lba 0 and a size up to"),
        (lambda off: (off + 12, b"\x78\x9c\xff\xff\xff\xff"), "invalid deflate|inflates"),
        (lambda off: (off + 8, struct.pack("<I", 20)), "inflates|invalid deflate"),  # cut stream
    ],
)
def test_corrupt_grains_fail_on_read(source: Path, tmp_path: Path, patch: object, match: str) -> None:
    path = _stream(source, tmp_path)
    off, data = patch(_first_grain(path))  # type: ignore[operator]
    _patch(path, off, data)
    with pytest.raises(ImageFormatError, match=match):
        _read_all(path)
    with open_image(path) as img, pytest.raises(ImageFormatError, match=match):
        img.read(0, 512)


def test_grain_that_inflates_to_the_wrong_length(tmp_path: Path) -> None:
    import zlib

    raw = pattern(65536, 3)
    path = write_vmware_stream(tmp_path / "w.vmdk", raw + bytes(65536))
    buf = bytearray(path.read_bytes())
    comp = zlib.compress(raw[:60000])
    struct.pack_into("<QI", buf, 128 * 512, 0, len(comp))
    buf[128 * 512 + 12 : 128 * 512 + 12 + len(comp)] = comp
    path.write_bytes(bytes(buf))
    with open_image(path) as img, pytest.raises(ImageFormatError, match="inflates to 60000 bytes"):
        img.read(0, 65536)


def test_missing_footer_with_gd_at_end(tmp_path: Path) -> None:
    path = write_vmware_stream(tmp_path / "w.vmdk", pattern(65536, 1))
    path.write_bytes(path.read_bytes()[:-512])
    with pytest.raises(ImageFormatError, match=r"GD_AT_END.*footer"):
        open_image(path)


def test_header_fields_out_of_range(source: Path, tmp_path: Path) -> None:
    cases = [
        (20, struct.pack("<Q", 100), "grain size"),
        (44, struct.pack("<I", 0), "numGTEsPerGT"),
        (4, struct.pack("<I", 9), "version"),
    ]
    for off, data, match in cases:
        path = _patch(_sparse(source, tmp_path), off, data)
        with pytest.raises(ImageFormatError, match=match):
            open_image(path)


def test_errors_name_file_format_and_offset(source: Path, tmp_path: Path) -> None:
    path = _sparse(source, tmp_path)
    _, gt = _gd(path)
    _patch(path, gt, struct.pack("<I", 10**8))
    with pytest.raises(ImageFormatError) as err:
        open_image(path)
    assert str(err.value).startswith(f"{path}: vmdk grain table entry at byte {gt:#x}: ")
    assert err.value.exit_code == 2


def test_qemu_reads_our_test_writer_output(tmp_path: Path) -> None:
    """The synthetic VMware stream is itself valid: qemu-img converts it to the same bytes."""
    raw = text_like(300_000, 1) + bytes(200_000) + pattern(100_000, 2)
    raw += bytes(-len(raw) % 512)
    path = write_vmware_stream(tmp_path / "w.vmdk", raw)
    assert to_raw(path, tmp_path / "w.raw", src_fmt="vmdk").read_bytes() == raw
    assert qemu_img("check", "-f", "vmdk", path) is not None
    assert path.stat().st_size % 512 == 0
    assert header(1, 1)[:4] == b"KDMV"
