"""The local target: valid artifacts, an index, idempotent re-runs, conflicts and --replace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imaging import qemu_img, sha256_file
from imgpub.pipeline import publish, status

LOCAL = "- name: out\n  provider: local\n  path: out\n"


def test_artifacts_are_valid(write_manifest, disk: Path, tmp_path: Path) -> None:
    result = publish(write_manifest(LOCAL))
    assert result.exit_code == 0, result.targets[0].error
    folder = tmp_path / "out" / "demo" / "1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "disk.raw",
        "disk.raw.tar.gz",
        "disk.vhd",
    ]
    qemu_img("compare", "-f", "raw", "-F", "raw", disk, folder / "disk.raw")
    qemu_img("compare", "-f", "raw", "-F", "vpc", disk, folder / "disk.vhd")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xSzf", folder / "disk.raw.tar.gz", "-C", unpacked], check=True)
    qemu_img("compare", "-f", "raw", "-F", "raw", disk, unpacked / "disk.raw")
    assert (folder / "disk.raw").stat().st_blocks * 512 < 1 << 20  # sparse
    sums = dict(reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums == {p: sha256_file(folder / p) for p in ("disk.raw", "disk.vhd", "disk.raw.tar.gz")}
    kinds = {a.kind: a.id for a in result.targets[0].published.artifacts}  # type: ignore[union-attr]
    assert kinds == {
        k: str(folder / f) for k, f in (("raw", "disk.raw"), ("vhd", "disk.vhd"), ("gce", "disk.raw.tar.gz"))
    }


def test_rerun_is_a_no_op_and_new_version_adds(write_manifest, tmp_path: Path) -> None:
    path = write_manifest(LOCAL)
    assert publish(path).targets[0].published.changed  # type: ignore[union-attr]
    raw = tmp_path / "out" / "demo" / "1.0.0" / "disk.raw"
    mtime = raw.stat().st_mtime_ns
    again = publish(path).targets[0]
    assert again.published is not None and not again.published.changed
    assert again.plan is not None and again.plan.up_to_date
    assert raw.stat().st_mtime_ns == mtime
    publish(write_manifest(LOCAL, version="1.1.0"))
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(e["name"], e["version"]) for e in index["images"]] == [("demo", "1.0.0"), ("demo", "1.1.0")]
    assert {f["name"] for f in index["images"][1]["files"]} == {"disk.raw", "disk.vhd", "disk.raw.tar.gz"}


def test_changed_image_same_version_conflicts(write_manifest, disk: Path, tmp_path: Path) -> None:
    path = write_manifest(LOCAL)
    publish(path)
    with disk.open("r+b") as f:
        f.write(b"changed")
    result = publish(path)
    assert result.exit_code == 1
    assert "demo 1.0.0 is already in" in str(result.targets[0].error)
    assert "--replace" in str(result.targets[0].error)
    raw = tmp_path / "out" / "demo" / "1.0.0" / "disk.raw"
    assert raw.read_bytes()[:7] != b"changed"
    replaced = publish(path, replace=True)
    assert replaced.exit_code == 0 and raw.read_bytes()[:7] == b"changed"
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert len(index["images"]) == 1 and index["images"][0]["digest"] == replaced.targets[0].digest


def test_failure_leaves_no_partial_version(
    write_manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgpub.disk.write_gce

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imgpub.disk.write_gce, "write_gce_tar", full_disk)  # after raw and vhd are written
    result = publish(write_manifest(LOCAL))
    error = str(result.targets[0].error)
    assert not result.targets[0].ok and error.startswith(f"target out: writing {tmp_path / 'out' / 'demo'}/")
    assert error.endswith("/disk.raw.tar.gz: No space left on device")
    assert list((tmp_path / "out" / "demo").iterdir()) == []
    assert not (tmp_path / "out" / "index.json").exists()


def test_formats_and_status(write_manifest, tmp_path: Path) -> None:
    path = write_manifest(LOCAL + "  formats: [vhd]\n")
    assert status(path).targets[0].status.drift == [f"demo 1.0.0 is not published in {tmp_path / 'out'}"]  # type: ignore[union-attr]
    publish(path)
    assert [p.name for p in (tmp_path / "out" / "demo" / "1.0.0").iterdir() if p.name.startswith("disk")] == [
        "disk.vhd"
    ]
    assert status(path).targets[0].status.drift == []  # type: ignore[union-attr]
    folder = tmp_path / "out" / "demo" / "1.0.0"
    assert (folder / "SHA256SUMS").read_text() == f"{sha256_file(folder / 'disk.vhd')}  disk.vhd\n"


def test_path_that_is_a_file_is_a_manifest_error(write_manifest, tmp_path: Path) -> None:
    from imgpub.errors import ManifestError

    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ManifestError) as err:
        publish(write_manifest(LOCAL))
    assert str(err.value).endswith(f":8:11: targets[0].path: {tmp_path / 'out'} is a file, not a folder")


def test_image_name_override(write_manifest, tmp_path: Path) -> None:
    result = publish(write_manifest(LOCAL + "  image_name: other-name\n"))
    assert result.exit_code == 0
    assert (tmp_path / "out" / "other-name" / "1.0.0" / "disk.raw").is_file()
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(e["name"], e["path"]) for e in index["images"]] == [("other-name", "other-name/1.0.0")]


def test_corrupt_index_is_a_clear_target_error(write_manifest, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "index.json").write_text("{not json")
    result = publish(write_manifest(LOCAL))
    assert result.exit_code == 2
    index = tmp_path / "out" / "index.json"
    assert str(result.targets[0].error).startswith(f"{index}: not a valid imgpub index (")


@pytest.mark.parametrize(
    ("link", "points_to", "message"),
    [
        ("demo", "elsewhere", "out/demo is a symbolic link; imgpub writes only inside"),
        ("demo/1.0.0", "elsewhere", "out/demo/1.0.0 is a symbolic link; imgpub writes only inside"),
        (".imgpub.lock", "elsewhere/planted.lock", "out/.imgpub.lock is a symbolic link"),
        ("index.json", "elsewhere/index.json", "out/index.json is a symbolic link"),
    ],
)
def test_symlinks_inside_the_folder_are_refused(
    write_manifest, tmp_path: Path, link: str, points_to: str, message: str
) -> None:
    """Nothing is written outside `path`, through a link planted at any of the names imgpub uses."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(tmp_path / points_to)
    result = publish(write_manifest(LOCAL))
    target = result.targets[0]
    assert not target.ok and target.exit_code == 2
    assert message in str(target.error)
    assert list(elsewhere.iterdir()) == [], "something was written through the link"


def test_the_folder_itself_may_be_a_link(write_manifest, tmp_path: Path) -> None:
    real = tmp_path / "real-out"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    assert publish(write_manifest(LOCAL)).exit_code == 0
    assert (real / "demo" / "1.0.0" / "disk.raw").is_file()


def test_a_full_disk_names_the_file_it_was_writing(write_manifest, tmp_path: Path) -> None:
    """A write that fails (here EFBIG under RLIMIT_FSIZE, as ENOSPC would) names the file."""
    path = write_manifest(LOCAL)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "sys.argv = ['imgpub', 'publish', sys.argv[1]]\n"
        "from imgpub.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "IMGPUB_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    assert f"writing {tmp_path / 'out' / 'demo'}" in done.stdout
    assert "/disk.raw: File too large" in done.stdout
