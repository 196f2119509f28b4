"""content_digest: the same guest bytes give the same digest whatever the container or sparseness."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imaging import MiB, convert, mixed_raw, sparse_raw
from imgpub.disk import open_image
from imgpub.disk.digest import content_digest


def digest_of(path: Path, fmt: str = "auto") -> str:
    with open_image(path, fmt) as img:
        return content_digest(img)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_raw(tmp_path_factory.mktemp("digest") / "src.raw", 48 * MiB)


def test_sparse_and_dense_copies_agree(source: Path, tmp_path: Path) -> None:
    dense = tmp_path / "dense.raw"
    with open(source, "rb") as f, open(dense, "wb") as g:
        shutil.copyfileobj(f, g)  # writes the holes out as zero bytes
    assert digest_of(dense) == digest_of(source)
    assert len(digest_of(source)) == 64


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("qcow2", ()), ("qcow2", ("-c", "compression_type=zlib")), ("vmdk", ("subformat=streamOptimized",)),
     ("vpc", ("subformat=fixed", "force_size=on")), ("vpc", ("subformat=dynamic", "force_size=on"))],
)  # fmt: skip
def test_other_formats_agree(source: Path, tmp_path: Path, fmt: str, options: tuple[str, ...]) -> None:
    converted = convert(source, tmp_path / f"img.{fmt}", fmt, *options, src_fmt="raw")
    assert digest_of(converted) == digest_of(source)


def test_one_byte_or_the_size_changes_the_digest(source: Path, tmp_path: Path) -> None:
    base = digest_of(source)
    changed = tmp_path / "changed.raw"
    shutil.copyfile(source, changed)
    with open(changed, "r+b") as f:
        f.seek(20 * MiB + 17)
        f.write(b"\x01")
    assert digest_of(changed) != base
    bigger = tmp_path / "bigger.raw"
    shutil.copyfile(source, bigger)
    with open(bigger, "r+b") as f:
        f.truncate(49 * MiB)
    assert digest_of(bigger) != base


def test_empty_disk_equals_a_zero_filled_one(tmp_path: Path) -> None:
    holes = sparse_raw(tmp_path / "holes.raw", 8 * MiB, [])
    zeros = sparse_raw(tmp_path / "zeros.raw", 8 * MiB, [(0, bytes(8 * MiB))])
    assert digest_of(holes, "raw") == digest_of(zeros, "raw")
