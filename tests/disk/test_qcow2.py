"""qcow2 reader: byte-identical to `qemu-img convert -O raw` over a matrix of real qemu-made images,
allocation consistent with `qemu-img map`, every refusal and every corruption a clear error."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from imaging import MiB, convert, pattern, qemu_img, sparse_raw, text_like, to_raw
from imgpub.disk import open_image
from imgpub.disk.errors import ImageFormatError, UnsupportedImageError
from imgpub.disk.qcow2 import Qcow2Image

SIZE = 6 * MiB + 3 * 512  # not a multiple of any cluster size


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random data, compressible text, written zeros, holes and a last partial cluster."""
    return sparse_raw(
        tmp_path_factory.mktemp("qcow2") / "src.raw",
        SIZE,
        [
            (0, pattern(70_000, 1)),
            (MiB + 512, text_like(600_000, 2)),
            (2 * MiB, bytes(300_000)),
            (3 * MiB + 4096, pattern(5000, 3) + text_like(200_000, 4)),
            (SIZE - 1536, pattern(1536, 5)),
        ],
    )


def qemu_map(path: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(qemu_img("map", "--output=json", "-f", "qcow2", path))
    return out


def assert_matches_qemu(path: Path, tmp: Path) -> Qcow2Image:
    ref = to_raw(path, tmp / f"{path.stem}.ref.raw", src_fmt="qcow2").read_bytes()
    with open_image(path) as img:
        assert isinstance(img, Qcow2Image)
        assert img.virtual_size == len(ref)
        assert img.read(0, img.virtual_size) == ref
        for bs in (512 * 1024, 3 * 65536):
            got = bytearray(len(ref))
            indexes = []
            for index, block in img.blocks(bs):
                assert block == ref[index * bs : index * bs + bs]
                assert any(block)
                got[index * bs : index * bs + len(block)] = block
                indexes.append(index)
            assert got == ref
            assert indexes == sorted(set(indexes))
        rnd = random.Random(path.name)
        for _ in range(50):
            off = rnd.randrange(len(ref))
            n = rnd.randrange(1, 300_000)
            assert img.read(off, n) == ref[off : off + n]
            buf = bytearray(b"\xa5" * n)  # readinto must overwrite holes with zeros too
            got_n = img.readinto(off, memoryview(buf))
            assert got_n == len(ref[off : off + n])
            assert buf[:got_n] == ref[off : off + n]
        runs = img.allocation.data_runs
        for rec in qemu_map(path):
            if rec["data"] and not rec["zero"]:  # data that qemu knows reads as zeros may be a hole
                start, length = int(str(rec["start"])), int(str(rec["length"]))
                assert any(a <= start and start + length <= a + n for a, n in runs), rec
        # every byte outside the data runs is zero
        for ext in img.allocation.extents():
            if not ext.data:
                assert not any(ref[ext.offset : ext.end])
        return img


MATRIX = {
    "v2": ["compat=0.10"],
    "v3": ["compat=1.1"],
    "c512": ["cluster_size=512"],
    "c4k-v2": ["cluster_size=4096", "compat=0.10"],
    "c2m": ["cluster_size=2M"],
    "deflate": ["-c", "cluster_size=64k"],
    "deflate-v2-c4k": ["-c", "compat=0.10", "cluster_size=4096"],
    "deflate-c2m": ["-c", "cluster_size=2M"],
    "zstd": ["-c", "compression_type=zstd"],
    "zstd-c512": ["-c", "compression_type=zstd", "cluster_size=512"],
    "extl2-16k": ["extended_l2=on", "cluster_size=16k"],
    "extl2-2m": ["extended_l2=on", "cluster_size=2M"],
    "extl2-deflate": ["extended_l2=on", "-c"],
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_matches_qemu(source: Path, tmp_path: Path, case: str) -> None:
    img = convert(source, tmp_path / f"{case}.qcow2", "qcow2", *MATRIX[case], src_fmt="raw")
    reader = assert_matches_qemu(img, tmp_path)
    info = reader.info()
    assert info["version"] == (2 if "compat=0.10" in MATRIX[case] else 3)
    assert info["extended_l2"] == ("extended_l2=on" in MATRIX[case])
    if "-c" in MATRIX[case]:
        assert info["compressed_clusters"] > 0
        assert info["compression"] == ("zstd" if "compression_type=zstd" in MATRIX[case] else "deflate")


def qemu_io(path: Path, *commands: str) -> None:
    args = ["qemu-io", "-f", "qcow2"]
    for c in commands:
        args += ["-c", c]
    subprocess.run([*args, str(path)], check=True, capture_output=True)


@pytest.mark.parametrize("options", [["compat=1.1"], ["extended_l2=on"]])
def test_zero_writes_are_holes(source: Path, tmp_path: Path, options: list[str]) -> None:
    img = convert(source, tmp_path / "z.qcow2", "qcow2", *options, src_fmt="raw")
    qemu_io(img, "write -z 0 64k", "write -z 1040k 16k", "write -P 0x5a 5M 8k")
    zero_recs = [r for r in qemu_map(img) if r["zero"] and r["present"]]
    assert zero_recs  # qemu kept them as zero-flag (sub)clusters, not unallocated ones
    reader = assert_matches_qemu(img, tmp_path)
    runs = reader.allocation.data_runs
    for r in zero_recs:
        start, length = int(str(r["start"])), int(str(r["length"]))
        assert not any(a < start + length and start < a + n for a, n in runs), r


def test_partial_subcluster_writes(tmp_path: Path) -> None:
    img = tmp_path / "sub.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", img, "3M")
    qemu_io(img, "write -P 0x11 4k 2k", "write -P 0x22 66k 1k", "write -P 0x33 2044k 4k")
    reader = assert_matches_qemu(img, tmp_path)
    assert reader.allocation.data_bytes < 64 * 1024  # subclusters, not whole clusters


def test_snapshot_reads_active_layer(source: Path, tmp_path: Path) -> None:
    img = convert(source, tmp_path / "snap.qcow2", "qcow2", "compat=1.1", src_fmt="raw")
    qemu_img("snapshot", "-c", "before", img)
    qemu_io(img, "write -P 0xab 0 64k", "write -z 1M 64k", "write -P 0xcd 4M 4k")
    reader = assert_matches_qemu(img, tmp_path)
    assert reader.info()["snapshots"] == 1
    with open_image(img) as again:
        assert again.read(0, 4) == b"\xab" * 4


def test_empty_image(tmp_path: Path) -> None:
    img = tmp_path / "empty.qcow2"
    qemu_img("create", "-f", "qcow2", img, "100M")
    with open_image(img) as reader:
        assert reader.virtual_size == 100 * MiB
        assert reader.allocation.data_runs == ()
        assert list(reader.blocks(MiB)) == []
        assert reader.read(5 * MiB, 10) == bytes(10)


def test_large_sparse_image_opens_fast(tmp_path: Path) -> None:
    img = tmp_path / "big.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=4096", img, "2T")
    qemu_io(img, "write -P 1 1T 4k")
    with open_image(img) as reader:
        assert reader.allocation.data_runs == ((1 << 40, 4096),)
        assert reader.read((1 << 40) - 2, 4) == b"\0\0\x01\x01"


# -- refusals -------------------------------------------------------------------------------------


def refused(path: Path, *words: str) -> str:
    with pytest.raises(UnsupportedImageError) as info:
        open_image(path)
    msg = str(info.value)
    assert str(path) in msg and "qemu-img" in msg
    for w in words:
        assert w in msg
    return msg


def test_refuses_backing_file(tmp_path: Path) -> None:
    qemu_img("create", "-f", "qcow2", tmp_path / "base.qcow2", "1M")
    qemu_img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", tmp_path / "top.qcow2")
    refused(tmp_path / "top.qcow2", "backing file", "qemu-img convert -O qcow2")


def test_refuses_luks_encryption(tmp_path: Path) -> None:
    img = tmp_path / "enc.qcow2"
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=hunter2"]
    args += ["-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", str(img), "1M"]
    for _ in range(20):  # qemu's PBKDF benchmark fails at random with "Unable to get accurate CPU usage"
        if subprocess.run(args, capture_output=True).returncode == 0:
            break
    refused(img, "encryption (crypt_method 2)")


def test_refuses_legacy_aes_encryption(tmp_path: Path) -> None:
    img = tmp_path / "aes.qcow2"
    qemu_img(
        "create", "-f", "qcow2", "--object", "secret,id=s0,data=hunter2",
        "-o", "encrypt.format=aes,encrypt.key-secret=s0", img, "1M",
    )  # fmt: skip
    refused(img, "encryption (crypt_method 1)")


def test_refuses_encryption_header_extension(small: Path) -> None:
    """The full-disk-encryption extension alone (crypt_method cleared) is still refused."""
    header_length = get(small, 100, ">I")
    put(small, header_length, ">IIQQ", 0x0537BE77, 16, 4096, 4096)
    put(small, header_length + 24, ">II", 0, 0)
    refused(small, "full-disk-encryption")


def test_refuses_external_data_file(tmp_path: Path) -> None:
    img = tmp_path / "ext.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", img, "1M")
    refused(img, "external data file")


def put(path: Path, offset: int, fmt: str, *values: int) -> Path:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))
    return path


def get(path: Path, offset: int, fmt: str) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        value: int = struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    return value


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A v3 image with 4 KiB clusters: two L2 tables in use, one compressed cluster."""
    raw = sparse_raw(
        tmp_path / "s.raw", 4 * MiB, [(0, pattern(8192, 9)), (2 * MiB + 4096, text_like(4096, 1))]
    )
    plain = convert(raw, tmp_path / "plain.qcow2", "qcow2", "cluster_size=4096", src_fmt="raw")
    return plain


@pytest.mark.parametrize(
    ("bit", "words"), [(1, "corrupt"), (2, "external data file"), (5, "unknown"), (40, "unknown")]
)
def test_refuses_incompatible_bits(small: Path, bit: int, words: str) -> None:
    put(small, 72, ">Q", get(small, 72, ">Q") | 1 << bit)
    refused(small, words)


def test_dirty_bit_is_readable(small: Path, tmp_path: Path) -> None:
    put(small, 72, ">Q", get(small, 72, ">Q") | 1)
    with open_image(small) as img:
        assert img.info()["dirty"] is True
        assert img.read(0, 8192) == pattern(8192, 9)


# -- corruption -----------------------------------------------------------------------------------


def broken(path: Path, structure: str, offset: int | None = None, words: str = "") -> ImageFormatError:
    with pytest.raises(ImageFormatError) as info, open_image(path) as img:
        img.read(0, img.virtual_size)
    err = info.value
    assert not isinstance(err, UnsupportedImageError)
    assert err.fmt == "qcow2" and err.structure == structure, str(err)
    if offset is not None:
        assert err.offset == offset, str(err)
    assert words in str(err)
    assert "\n" not in str(err)
    return err


def l1_offset(path: Path) -> int:
    return get(path, 40, ">Q")


def l2_offset(path: Path, index: int = 0) -> int:
    return get(path, l1_offset(path) + 8 * index, ">Q") & 0x00FF_FFFF_FFFF_FE00


@pytest.mark.parametrize("size", [0, 50, 71, 100])
def test_truncated_header(small: Path, size: int) -> None:
    with open(small, "r+b") as f:
        f.truncate(size)
    with pytest.raises(ImageFormatError) as info:
        Qcow2Image(small, os.open(small, os.O_RDONLY))
    assert "truncated" in str(info.value) or "file ends" in str(info.value)


def test_truncated_before_tables(small: Path) -> None:
    with open(small, "r+b") as f:
        f.truncate(l2_offset(small) + 100)
    broken(small, "L2 table", l2_offset(small), "file ends")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "structure", "words"),
    [
        (4, ">I", 4, "header", "version 4"),
        (20, ">I", 8, "header", "cluster_bits 8"),
        (20, ">I", 22, "header", "cluster_bits 22"),
        (24, ">Q", 1 << 60, "header", "64 TiB"),
        (36, ">I", 0xFFFF_FFFF, "header", "l1_size"),
        (36, ">I", 0, "header", "too small"),
        (40, ">Q", 0, "header", "L1 table offset"),
        (40, ">Q", 4096 * 1000, "L1 table", "file ends"),
        (40, ">Q", 4096 + 8, "header", "cluster-aligned"),
        (100, ">I", 4097, "header", "header_length"),
    ],
)
def test_bad_header_fields(
    small: Path, offset: int, fmt: str, value: int, structure: str, words: str
) -> None:
    broken(put(small, offset, fmt, value), structure, None, words)


def test_l2_offset_past_eof(small: Path) -> None:
    put(small, l1_offset(small), ">Q", 1 << 40)
    broken(small, "L2 table", 1 << 40, "file ends")


def test_l2_table_overlapping_header(small: Path) -> None:
    put(small, l1_offset(small), ">Q", 0)
    put(small, l1_offset(small), ">Q", 1 << 63)  # COPIED bit only: offset 0 is unallocated, fine
    with open_image(small) as img:
        assert img.read(0, 8192) == bytes(8192)
    put(small, l1_offset(small), ">Q", 512)
    broken(small, "L1 entry", l1_offset(small), "not cluster aligned")


def test_l2_table_referenced_twice(small: Path) -> None:
    first = get(small, l1_offset(small), ">Q")
    put(small, l1_offset(small) + 8, ">Q", first)
    broken(small, "L1 entry", l1_offset(small) + 8, "referenced twice")


@pytest.mark.parametrize(
    ("entry", "words"),
    [(1 << 40, "inside the file"), (4096 + 512, "cluster-aligned"), (4096 * 0, "")],
)
def test_bad_data_cluster(small: Path, entry: int, words: str) -> None:
    l2 = l2_offset(small)
    put(small, l2, ">Q", entry or 1 << 63 | 0)
    if not words:  # COPIED without an offset: unallocated, reads as zeros
        with open_image(small) as img:
            assert img.read(0, 4096) == bytes(4096)
        return
    broken(small, "L2 entry", l2, words)


def test_data_cluster_overlapping_header(small: Path) -> None:
    l2 = l2_offset(small)
    put(small, l2, ">Q", 1 << 63)  # offset 0 with COPIED: unallocated
    put(small, l2 + 8, ">Q", 1 << 63 | 0)
    put(small, l2, ">Q", 1 << 9)  # 512: misaligned and inside the header cluster
    broken(small, "L2 entry", l2, "not a cluster-aligned offset")


@pytest.fixture
def compressed(tmp_path: Path) -> Path:
    raw = sparse_raw(tmp_path / "c.raw", MiB, [(0, text_like(65536, 3))])
    return convert(raw, tmp_path / "c.qcow2", "qcow2", "-c", "cluster_size=64k", src_fmt="raw")


def compressed_entry(path: Path) -> tuple[int, int]:
    l2 = l2_offset(path)
    entry = get(path, l2, ">Q")
    assert entry & 1 << 62
    return l2, entry


def test_compressed_cluster_corrupt(compressed: Path) -> None:
    _, entry = compressed_entry(compressed)
    coffset = entry & ((1 << 54) - 1)
    put(compressed, coffset + 10, ">Q", 0xDEADBEEFDEADBEEF)
    broken(compressed, "compressed cluster", coffset, "guest offset 0x0")


def test_compressed_cluster_inflates_short(compressed: Path) -> None:
    l2, entry = compressed_entry(compressed)
    shift = 62 - (16 - 8)
    put(compressed, l2, ">Q", entry & ~(((1 << 8) - 1) << shift))  # one sector: the stream is cut
    broken(compressed, "compressed cluster", None, "expected 65536")


def test_compressed_cluster_past_eof(compressed: Path) -> None:
    l2, entry = compressed_entry(compressed)
    put(compressed, l2, ">Q", (entry & ~((1 << 54) - 1)) | (1 << 50))
    broken(compressed, "L2 entry", l2, "outside the file")


def test_mapping_denser_than_the_file_is_refused(tmp_path: Path) -> None:
    """Every L2 entry pointing at one host cluster: memory must stay bounded by the file's size."""
    img = tmp_path / "dense.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=512", img, "8M")
    qemu_io(img, *(f"write -P 1 {i * 32}k 512" for i in range(256)))
    data = bytearray(img.read_bytes())
    l1, l1_size = get(img, 40, ">Q"), get(img, 36, ">I")
    target = struct.unpack_from(">Q", data, struct.unpack_from(">Q", data, l1)[0] & 0xFFFF_FFFF_FE00)[0]
    for i in range(l1_size):
        l2 = struct.unpack_from(">Q", data, l1 + 8 * i)[0] & 0x00FF_FFFF_FFFF_FE00
        for j in range(64):
            struct.pack_into(">Q", data, l2 + 8 * j, target)
    img.write_bytes(data)
    broken(img, "L2 table", None, "separate clusters")


def test_abandoned_blocks_iteration_stops_its_threads(source: Path, tmp_path: Path) -> None:
    img = convert(source, tmp_path / "c.qcow2", "qcow2", "-c", "cluster_size=4096", src_fmt="raw")
    before = threading.active_count()
    with open_image(img) as reader:
        blocks = reader.blocks(64 * 1024)
        first = next(blocks)
        assert first[0] == 0
        blocks.close()
        assert threading.active_count() == before
        assert reader.read(0, 10) == first[1][:10]


@pytest.mark.parametrize("prealloc", ["metadata", "falloc", "full"])
def test_preallocated_images(tmp_path: Path, prealloc: str) -> None:
    """Mapped clusters that were never written: the host file's holes read as zeros, and are holes."""
    img = tmp_path / f"{prealloc}.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"preallocation={prealloc}", img, "20M")
    qemu_io(img, "write -P 7 1M 64k", "write -P 9 17M 4k")
    reader = assert_matches_qemu(img, tmp_path)
    with open_image(img) as again:
        assert [i for i, _ in again.blocks(MiB)] == [1, 17]
        if prealloc == "metadata":
            assert reader.allocation.data_runs == ((MiB, 65536), (17 * MiB, 4096))
