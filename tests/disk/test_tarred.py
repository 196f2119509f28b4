"""Tarred raw disks (disk.raw in .tar, .tar.gz, .tar.zst, .tar.xz; GNU sparse, oldgnu and PAX
sparse members): the inner disk, byte for byte, read where it lies; any other tar layout is refused
with what is inside. The tar index agrees with CPython's tarfile on every layout GNU tar writes."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from imaging import GiB, MiB, convert, mixed_raw, pattern, sparse_raw, text_like
from imgpub.disk import open_image
from imgpub.disk.digest import content_digest
from imgpub.disk.errors import ImageFormatError
from imgpub.disk.raw import RawImage
from imgpub.disk.tar import Member, read_members
from imgpub.disk.tarred import TarDiskImage
from imgpub.disk.write_gce import write_gce_tar

KiB = 1024
SIZE = 20 * MiB + 3 * 512
GNU_FORMATS = {
    "gnu": ["--format=gnu"],
    "oldgnu": ["--format=oldgnu"],
    "pax-0.0": ["--format=pax", "--sparse-version=0.0"],
    "pax-0.1": ["--format=pax", "--sparse-version=0.1"],
    "pax-1.0": ["--format=pax", "--sparse-version=1.0"],
    "ustar": ["--format=ustar"],
}
COMPRESSORS = {"": [], ".gz": ["gzip", "-1"], ".zst": ["zstd", "-q", "-1"], ".xz": ["xz", "-0"]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """disk.raw: a GPT disk with data, allocated zeros and holes."""
    path = tmp_path_factory.mktemp("tarred")
    mixed_raw(path / "disk.raw", SIZE, seed=21)
    return path


def gnu_tar(
    folder: Path, dst: Path, options: list[str], sparse: bool = True, names: tuple[str, ...] = ("disk.raw",)
) -> Path:
    subprocess.run(
        ["tar", *options, *(["-S"] if sparse else []), "-cf", str(dst), "-C", str(folder), *names], check=True
    )
    return dst


def compressed(src: Path, suffix: str) -> Path:
    if not suffix:
        return src
    dst = src.with_name(src.name + suffix)
    with open(src, "rb") as f, open(dst, "wb") as g:
        subprocess.run(COMPRESSORS[suffix], stdin=f, stdout=g, check=True)
    return dst


def members(path: Path) -> list[Member]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_members(path, lambda o, n: os.pread(fd, n, o), os.fstat(fd).st_size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("layout", sorted(GNU_FORMATS))
def test_index_agrees_with_tarfile(folder: Path, tmp_path: Path, layout: str) -> None:
    archive = gnu_tar(folder, tmp_path / "d.tar", GNU_FORMATS[layout], sparse=layout != "ustar")
    (ours,) = members(archive)
    with tarfile.open(archive) as tar:
        (theirs,) = tar.getmembers()
        assert ours.name == theirs.name == "disk.raw" and ours.size == theirs.size == SIZE
        assert ours.sparse == theirs.issparse()
        if theirs.sparse:
            assert [(o, n) for o, n, _ in ours.regions] == [(o, n) for o, n in theirs.sparse if n]
        assert ours.regions[0][2] == theirs.offset_data


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("layout", ["oldgnu", "pax-1.0", "ustar"])
def test_tarred_disk_is_the_inner_disk(folder: Path, tmp_path: Path, layout: str, suffix: str) -> None:
    archive = compressed(gnu_tar(folder, tmp_path / "d.tar", GNU_FORMATS[layout], layout != "ustar"), suffix)
    data = (folder / "disk.raw").read_bytes()
    with open_image(archive) as img:
        assert isinstance(img, TarDiskImage) and img.format == "tar"
        assert img.virtual_size == SIZE
        assert img.read(0, SIZE) == data
        full = dict(img.blocks(MiB, skip_zero=False))
        assert b"".join(full.get(i, bytes(MiB)) for i in range(-(-SIZE // MiB)))[:SIZE] == data
        got = bytearray(SIZE)
        for index, block in img.blocks(64 * KiB):
            got[index * 64 * KiB : index * 64 * KiB + len(block)] = block
        assert got == data
        for ext in img.allocation.extents():
            if not ext.data:
                assert not any(data[ext.offset : ext.end])
        if layout != "ustar" or suffix:
            assert img.allocation.data_bytes < SIZE // 2  # holes stay holes
        if suffix:
            assert img.container["compression"] == {".gz": "gzip", ".zst": "zstd", ".xz": "xz"}[suffix]
            assert os.fstat(img.fd).st_blocks * 512 < SIZE // 2  # the temp file holds only data


def test_imgpub_gce_tarball_publishes_the_inner_disk(folder: Path, tmp_path: Path) -> None:
    """Issue 11: disk.raw.tar.gz used to be read as a gzip-compressed raw disk (tar headers as sector 0)."""
    archive = tmp_path / "disk.raw.tar.gz"
    with open_image(folder / "disk.raw") as src:
        write_gce_tar(src, archive)
        want = content_digest(src)
    with open_image(archive) as img:
        assert isinstance(img, TarDiskImage) and img.member.sparse
        assert img.virtual_size == GiB  # padded to a whole GiB for GCE
        assert img.read(0, 512) == (folder / "disk.raw").read_bytes()[:512]
        assert content_digest(img) != want  # the padding is part of the disk
        assert img.read(SIZE, GiB - SIZE) == bytes(GiB - SIZE)
        assert img.allocation.data_bytes < 8 * MiB


def test_large_member_past_8_gib_uses_base_256(tmp_path: Path) -> None:
    size = 9 * GiB
    writes = [(0, pattern(4096, 1)), (8 * GiB - 2048, text_like(8192, 2)), (size - 512, pattern(512, 3))]
    src = sparse_raw(tmp_path / "disk.raw", size, [*writes, (512, b"EFI PART")])
    for layout in ("oldgnu", "pax-1.0"):
        archive = gnu_tar(tmp_path, tmp_path / f"{layout}.tar", GNU_FORMATS[layout])
        with open_image(archive) as img, open_image(src, "raw") as ref:
            assert img.virtual_size == size
            for off, data in writes:
                assert img.read(off, len(data)) == ref.read(off, len(data))
            assert content_digest(img) == content_digest(ref)


def test_a_tar_of_two_files_is_refused_listing_them(folder: Path, tmp_path: Path) -> None:
    (folder / "README").write_text("hello\n")
    try:
        archive = gnu_tar(folder, tmp_path / "two.tar", ["--format=gnu"], names=("disk.raw", "README"))
    finally:
        (folder / "README").unlink()
    with pytest.raises(ImageFormatError) as err:
        open_image(archive)
    assert str(err.value) == (
        f"{archive}: tar archive: holds 2 entries: disk.raw (20.0 MiB), README (6 bytes); a tarred disk "
        "holds exactly one file, disk.raw (extract the disk image you mean and publish that file)"
    )
    with pytest.raises(ImageFormatError, match="holds 2 entries"):
        open_image(compressed(archive, ".zst"))


def _tar(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif name.endswith("@"):
                info.name, info.type, info.linkname = name[:-1], tarfile.SYMTYPE, "disk.raw"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_other_tar_layouts(folder: Path, tmp_path: Path) -> None:
    disk = (folder / "disk.raw").read_bytes()
    ok = _tar(tmp_path / "dir.tar", [("images/", None), ("images/disk.raw", disk)])  # directories are fine
    with open_image(ok) as img:
        assert img.read(0, SIZE) == disk and img.info()["member"] == "images/disk.raw"
    cases = [
        ([("images/", None)], "holds no file"),
        (
            [("disk.raw", disk), ("link@", b"")],
            r"holds 2 entries: disk.raw \(20.0 MiB\), link -> disk.raw \(symlink\)",
        ),
        (
            [("a.bin", pattern(MiB, 1))],
            r"a.bin: not a recognised disk image; if this is a raw disk without a partition",
        ),
        ([("notes.txt", b"just some text!\n" * 64)], "notes.txt: looks like a text file"),
        ([("disk.raw", b"\x01" * 1000)], "is 1000 bytes, not a whole number of 512-byte sectors"),
    ]
    for entries, words in cases:
        with pytest.raises(ImageFormatError, match=words):
            open_image(_tar(tmp_path / "x.tar", entries))
    odd = _tar(tmp_path / "odd.tar", [("a.bin", pattern(MiB, 1))])
    with open_image(odd, "raw") as img:  # format: raw takes the single file without a partition table
        assert isinstance(img, TarDiskImage) and img.read(0, MiB) == pattern(MiB, 1)


def test_an_image_inside_a_tar_is_refused_with_advice(folder: Path, tmp_path: Path) -> None:
    qcow2 = convert(folder / "disk.raw", tmp_path / "disk.qcow2", "qcow2", src_fmt="raw")
    archive = _tar(tmp_path / "q.tar", [("disk.qcow2", qcow2.read_bytes())])
    with pytest.raises(
        ImageFormatError, match=r"disk.qcow2 is a qcow2 image, not a raw disk; extract it \(tar -xf\)"
    ):
        open_image(archive)


def test_a_forced_raw_tar_is_still_unwrapped(folder: Path, tmp_path: Path) -> None:
    """format: raw names the disk inside: a tar's headers never become sector 0."""
    archive = gnu_tar(folder, tmp_path / "d.tar", ["--format=gnu"])
    with open_image(archive, "raw") as img:
        assert isinstance(img, TarDiskImage)
        assert img.read(0, SIZE) == (folder / "disk.raw").read_bytes()
    with open_image(folder / "disk.raw", "raw") as img:
        assert type(img) is RawImage


def test_damaged_archives(folder: Path, tmp_path: Path) -> None:
    archive = gnu_tar(folder, tmp_path / "d.tar", ["--format=oldgnu"])
    data = bytearray(archive.read_bytes())
    bad = tmp_path / "bad.tar"
    data[100] ^= 0x10  # the mode field: the checksum no longer matches
    bad.write_bytes(data)
    with pytest.raises(ImageFormatError, match=r"tar header at byte 0x0: checksum does not match"):
        open_image(bad, "tar")
    bad.write_bytes(archive.read_bytes()[: 512 + 4096])
    with pytest.raises(ImageFormatError, match=r"member 'disk.raw' .* runs past the end of the archive"):
        open_image(bad)


@pytest.mark.parametrize("layout", ["gnu", "pax-1.0", "ustar"])
def test_long_member_names(folder: Path, tmp_path: Path, layout: str) -> None:
    """GNU long names ('L'), PAX path records and the ustar prefix field all give the full name."""
    deep = tmp_path / ("d" * 60) / ("e" * 70 + ".raw")
    deep.parent.mkdir()
    os.link(folder / "disk.raw", deep)
    name = str(deep.relative_to(tmp_path))
    archive = gnu_tar(tmp_path, tmp_path / "long.tar", GNU_FORMATS[layout], layout != "ustar", names=(name,))
    (ours,) = [m for m in members(archive) if m.kind == "file"]
    with tarfile.open(archive) as tar:
        assert ours.name == name == next(m.name for m in tar.getmembers() if m.isfile())
    with open_image(archive) as img:
        assert img.info()["member"] == name and img.read(0, 4096) == (folder / "disk.raw").read_bytes()[:4096]
