"""The local target under kill -9 and concurrency, through the `imgpub` command as users run it.

After any kill, a re-run exits 0 and the folder holds exactly what its index lists: no staging or
moved-aside folders from the killed run, every file matching its SHA256SUMS. Two publishes at once
(separate state dirs, so only the folder's own lock keeps them apart) both exit 0 with one version.
IMGPUB_FAULTS_LONG=<n> runs n kill points instead of a handful.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaging import MiB, gpt_raw, pattern, text_like

KILLS = int(os.environ.get("IMGPUB_FAULTS_LONG") or 6)
SEED = 20261129


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    gpt_raw(
        tmp_path / "disk.raw",
        96 * MiB,
        [(2 * MiB, pattern(8 * MiB, 1)), (20 * MiB, text_like(24 * MiB, 2)), (90 * MiB, pattern(4 * MiB, 3))],
    )
    path = tmp_path / "imgpub.yaml"
    path.write_text(
        "image:\n  name: demo\n  version: 1.0.0\n  source: disk.raw\n  boot: uefi\n"
        "targets:\n  - name: out\n    provider: local\n    path: out\n"
    )
    return path


def command(manifest: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "IMGPUB_STATE_DIR": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "imgpub", "publish", str(manifest)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def assert_folder_is_exactly_the_index(out: Path) -> None:
    index = json.loads((out / "index.json").read_text())
    listed = {(out / e["path"] / f["name"]): f["sha256"] for e in index["images"] for f in e["files"]}
    present = {p for p in out.rglob("*") if p.is_file() and p.name not in ("index.json", ".imgpub.lock")}
    sums = {p.parent / "SHA256SUMS" for p in listed}
    assert present == set(listed) | sums, "files the index does not list (a killed run's leftovers)"
    assert [p for p in out.rglob("*") if p.is_dir() and p.name.startswith(".")] == []
    for path, digest in listed.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path


def test_kill_at_random_points_then_rerun(manifest: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    code, text = finished(command(manifest, tmp_path / "timing-state"))
    assert code == 0, text
    whole = time.monotonic() - started
    for p in (tmp_path / "out").iterdir():  # the timing run's output goes; the trials start empty
        subprocess.run(["rm", "-rf", str(p)], check=True)
    rng = random.Random(SEED)
    held = 0
    for trial in range(KILLS):
        state = tmp_path / f"state-{trial}"
        proc = command(manifest, state)
        if trial % 2:  # anywhere in the run
            time.sleep(rng.uniform(0.05, whole))
        else:  # while it writes: once its staging folder exists
            deadline = time.monotonic() + 60
            while not list((tmp_path / "out").glob("demo/.1.0.0.*")) and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(rng.uniform(0, whole / 3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        code, text = finished(command(manifest, state))
        assert code == 0, f"trial {trial}: the re-run failed: {text}"
        assert_folder_is_exactly_the_index(tmp_path / "out")
        held += 1
        subprocess.run(["rm", "-rf", str(tmp_path / "out")], check=True)
    assert held == KILLS


def test_two_publishes_at_once_with_separate_state(manifest: Path, tmp_path: Path) -> None:
    procs = [command(manifest, tmp_path / f"state-{i}") for i in range(2)]
    results = [finished(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(e["name"], e["version"]) for e in index["images"]] == [("demo", "1.0.0")]
    assert_folder_is_exactly_the_index(tmp_path / "out")
