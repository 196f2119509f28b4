"""One publish of a target at a time: the state-dir lock, its message, and a killed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imgpub
from imgpub.lock import target_lock
from imgpub.pipeline import publish

HOLD = """
import sys, time
from pathlib import Path
import imgpub
from imgpub.lock import target_lock
with target_lock(Path(sys.argv[1]), print):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_waits_and_is_told_who_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state" / "demo@1.0" / "t.lock"
    proc = holder(path, 0.5)
    told: list[str] = []
    started = time.monotonic()
    with target_lock(path, told.append):
        assert time.monotonic() - started > 0.3, "the lock was taken while its holder still held it"
    proc.wait()
    assert len(told) == 1
    assert told[0].startswith(f"waiting for imgpub pid {proc.pid} on ")
    assert told[0].endswith("which is publishing this target")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    proc = holder(path, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    told: list[str] = []
    started = time.monotonic()
    with target_lock(path, told.append):
        pass
    assert told == [] and time.monotonic() - started < 5


def test_the_lock_file_is_not_followed_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "t.lock").symlink_to(outside)
    try:
        with target_lock(tmp_path / "state" / "t.lock", print):
            raise AssertionError("a symlinked lock file was opened")
    except OSError:
        pass
    assert not outside.exists()


def test_two_publishes_of_one_target_take_turns(write_manifest, fake_provider, tmp_path: Path) -> None:
    path = write_manifest("- name: slow\n  provider: fake\n  behaviour: slow\n  wait: 0.4\n")
    state = tmp_path / "shared-state"
    results = []

    def run() -> None:
        results.append(publish(path, state_dir=state))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.exit_code for r in results] == [0, 0]
    steps = [c[0] for c in fake_provider.calls]
    assert steps == ["plan", "publish", "slept", "plan", "publish", "slept"], "the publishes overlapped"


def test_plans_do_not_wait_for_a_publish(write_manifest, fake_provider, tmp_path: Path) -> None:
    path = write_manifest("- name: t\n  provider: fake\n")
    lock = tmp_path / "state" / "demo@1.0.0" / "t.lock"
    proc = holder(lock, 30)
    try:
        started = time.monotonic()
        assert imgpub.plan(path, state_dir=tmp_path / "state").exit_code == 0
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
        proc.wait()
