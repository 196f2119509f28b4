"""write_gce: the oldgnu sparse tar.gz GCE imports, checked against GNU tar and Python's tarfile."""

from __future__ import annotations

import gzip
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from imaging import GiB, MiB, convert, mixed_raw, pattern, qemu_img, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.digest import content_digest
from imgpub.disk.write_gce import (
    _number,
    gce_disk_size,
    gce_tar_stream,
    sparse_map,
    tar_header,
    tar_stream,
    write_gce_tar,
)

KiB = 1 << 10


def gnu_tar(folder: Path, out: Path) -> bytes:
    """GNU tar's own archive of folder/disk.raw, with the fields we cannot know pinned."""
    subprocess.run(
        ["tar", "--format=oldgnu", "--owner=root:0", "--group=root:0", "--mtime=@0", "--mode=644",
         "-Scf", out, "disk.raw"],
        cwd=folder, check=True,
    )  # fmt: skip
    return out.read_bytes()


def extract(archive: Path, into: Path) -> Path:
    into.mkdir()
    subprocess.run(["tar", "-xSzf", archive, "-C", into], check=True)
    return into / "disk.raw"


@pytest.fixture(scope="module")
def big_sparse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 GiB virtual, 40 small data regions (some past 8 GiB, one across it): a few KiB of data."""
    folder = tmp_path_factory.mktemp("big")
    writes = [(i * 211 * MiB + (i % 3) * 4 * KiB, pattern(4 * KiB, i)) for i in range(38)]
    writes += [(8 * GiB - 4 * KiB, pattern(8 * KiB, 99)), (9 * GiB - 4 * KiB, pattern(4 * KiB, 98))]
    return sparse_raw(folder / "disk.raw", 9 * GiB, writes)


def test_uncompressed_tar_is_byte_identical_to_gnu_tar(big_sparse: Path, tmp_path: Path) -> None:
    with open_image(big_sparse, "raw") as img:
        regions = sparse_map(img)
        ours = b"".join(bytes(p) for p in tar_stream(img, mtime=0))
    assert len(regions) == 40 and regions[-1] == (9 * GiB - 4 * KiB, 4 * KiB)
    assert ours == gnu_tar(big_sparse.parent, tmp_path / "gnu.tar")
    # 40 regions + the {realsize, 0} terminator GNU tar adds even here: header 4, then 21 + 16
    assert ours[482] == 1 and ours[512 + 504] == 1 and ours[1024 + 504] == 0
    assert ours[483:495] == b"\x80" + (9 * GiB).to_bytes(11, "big")  # realsize in base-256


def test_gzip_tarball_round_trips_through_gnu_tar_and_tarfile(big_sparse: Path, tmp_path: Path) -> None:
    archive = tmp_path / "disk.tar.gz"
    steps: list[int] = []
    with open_image(big_sparse, "raw") as img:
        write_gce_tar(img, archive, threads=2, on_progress=steps.append)
        assert sum(steps) == img.allocation.data_bytes
        want = content_digest(img)
        regions = sparse_map(img)
    subprocess.run(["gzip", "-t", archive], check=True)
    out = extract(archive, tmp_path / "x")
    assert out.stat().st_size == 9 * GiB
    assert out.stat().st_blocks * 512 < 4 * MiB
    with open_image(out, "raw") as img:
        assert content_digest(img) == want
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.size, member.type) == ("disk.raw", 9 * GiB, b"S")
        assert member.sparse == regions


@pytest.mark.parametrize("size", [64 * MiB + 3 * 512, 40 * MiB + 512 * KiB + 512])
def test_odd_sizes_are_padded_to_a_whole_gib(tmp_path: Path, size: int) -> None:
    src = mixed_raw(tmp_path / "src.raw", size)
    archive = tmp_path / "disk.tar.gz"
    with open_image(src) as img:
        write_gce_tar(img, archive, level=2)
    out = extract(archive, tmp_path / "x")
    assert out.stat().st_size == GiB == gce_disk_size(size)
    with open(out, "rb") as f:
        assert f.read(size) == src.read_bytes()
    assert "identical" in qemu_img("compare", "-f", "raw", "-F", "raw", out, src)  # the rest is zero
    with tarfile.open(archive) as tar:
        assert tar.getmember("disk.raw").size == GiB
        data = tar.extractfile("disk.raw")
        assert data is not None
        assert data.read(size) == src.read_bytes()
        assert data.read(MiB) == bytes(MiB)


def test_allocated_zeros_are_holes_when_refined_and_data_otherwise(tmp_path: Path) -> None:
    src = mixed_raw(tmp_path / "src.raw", 32 * MiB)  # has 1 MiB of written zeros at 8 MiB
    with open_image(src) as img:
        refined = sparse_map(img, refine=True)
        plain = sparse_map(img, refine=False)
        assert (8 * MiB, MiB) in plain and not any(a <= 8 * MiB < a + n for a, n in refined)
        archive = tmp_path / "plain.tar"
        archive.write_bytes(b"".join(bytes(p) for p in tar_stream(img, regions=plain)))
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xSf", archive, "-C", out], check=True)
    with open(out / "disk.raw", "rb") as f:
        assert f.read(32 * MiB) == src.read_bytes()


def test_empty_disk(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "disk.raw", 3 * GiB - 512, [])
    with open_image(src, "raw") as img:
        assert sparse_map(img) == []
        raw_tar = b"".join(bytes(p) for p in tar_stream(img))
        archive = tmp_path / "disk.tar.gz"
        archive.write_bytes(b"".join(gce_tar_stream(img, threads=1)))
    assert len(raw_tar) == 10240
    assert gzip.decompress(archive.read_bytes()) != raw_tar  # mtime differs, the layout does not
    header = raw_tar[:512]
    assert header[386:410] == _number(3 * GiB, 12) + b"00000000000\0"  # the {realsize, 0} terminator
    assert header[410:482] == bytes(72) and header[482] == 0
    out = extract(archive, tmp_path / "x")
    assert out.stat().st_size == 3 * GiB and out.stat().st_blocks == 0


@pytest.mark.parametrize(("regions", "blocks"), [(0, 1), (3, 1), (4, 2), (24, 2), (25, 3), (45, 3), (46, 4)])
def test_extension_header_counts(regions: int, blocks: int) -> None:
    entries = [(i * MiB, 4 * KiB) for i in range(regions)]  # + the terminator entry
    header = tar_header(GiB, entries)
    assert len(header) == 512 * blocks
    flags = [header[482]] + [header[512 * k + 504] for k in range(1, blocks)]
    assert flags == [1] * (blocks - 1) + [0]
    assert int(header[124:135], 8) == 4 * KiB * regions
    checksum = sum(header[:148]) + 8 * 32 + sum(header[156:512])
    assert header[148:156] == b"%06o\0 " % checksum


def test_numeric_fields_switch_to_base_256_past_8_gib() -> None:
    assert _number(8 * GiB - 1, 12) == b"77777777777\0"
    assert _number(8 * GiB, 12) == b"\x80" + (8 * GiB).to_bytes(11, "big")
    assert _number(0, 12) == b"00000000000\0"
    with pytest.raises(ValueError, match="negative"):
        _number(-1, 12)


def test_dense_data_is_one_region(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "dense.raw", 24 * MiB, [(0, pattern(24 * MiB, 4))])
    with open_image(src, "raw") as img:
        assert sparse_map(img, refine=True) == [(0, 24 * MiB)]
        assert sparse_map(img, refine=False) == [(0, 24 * MiB)]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("qcow2", ("-c", "compression_type=zlib")), ("vmdk", ("subformat=streamOptimized",)), ("qcow2", ())],
)
def test_other_source_formats(tmp_path: Path, fmt: str, options: tuple[str, ...]) -> None:
    src = mixed_raw(tmp_path / "src.raw", 32 * MiB + 512)
    image = convert(src, tmp_path / f"src.{fmt}", fmt, *options, src_fmt="raw")
    archive = tmp_path / "disk.tar.gz"
    with open_image(image) as img:
        compressed = img.file_size < 0.9 * img.allocation.data_bytes
        assert compressed == ("-c" in options or fmt == "vmdk")
        write_gce_tar(img, archive, threads=2)
    out = extract(archive, tmp_path / "x")
    assert out.stat().st_size == GiB
    with open(out, "rb") as f:
        assert f.read(32 * MiB + 512) == src.read_bytes()


def test_abandoning_the_stream_stops_its_threads(tmp_path: Path) -> None:
    src = sparse_raw(tmp_path / "disk.raw", 64 * MiB, [(0, pattern(40 * MiB, 8))])
    before = threading.active_count()
    with open_image(src, "raw") as img:
        stream = gce_tar_stream(img, threads=2)
        assert next(stream).startswith(b"\x1f\x8b\x08")
        next(stream)
        stream.close()
    assert threading.active_count() == before


def test_zero_check_pass_only_for_mostly_allocated_cheap_sources(tmp_path: Path) -> None:
    sparse = mixed_raw(tmp_path / "sparse.raw", 32 * MiB)  # 1 MiB of written zeros at 8 MiB
    with open_image(sparse, "raw") as img:
        assert sparse_map(img) == sparse_map(img, refine=False) != sparse_map(img, refine=True)
    dense = sparse_raw(tmp_path / "dense.raw", 16 * MiB, [(0, pattern(3 * MiB, 5) + bytes(13 * MiB))])
    with open_image(dense, "raw") as img:
        assert img.allocation.data_bytes == 16 * MiB
        assert sparse_map(img) == [(0, 3 * MiB)]


def test_stream_is_deterministic_across_runs_and_thread_counts(tmp_path: Path) -> None:
    src = mixed_raw(tmp_path / "src.raw", 24 * MiB)
    with open_image(src, "raw") as img:
        runs = {b"".join(gce_tar_stream(img, threads=t)) for t in (1, 2, 3, 2)}
    assert len(runs) == 1
