"""One publish of a target at a time on a machine: an advisory lock per image version and target.

The lock file sits next to the target's journal in the state dir. `flock` is released by the kernel
when its holder exits, however it exits (kill -9 included), so a lock is never stale; the file only
names its latest holder (pid, host, time) for the message a waiting run shows. A second publish of
the same target waits, then finds the work done. Runs on other machines (other state dirs) are not
seen here: the providers protect themselves there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["target_lock"]


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"imgpub pid {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another imgpub run"


@contextlib.contextmanager
def target_lock(path: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock at `path` for the block; when another run holds it, say so through `on_wait`
    and wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"waiting for {_holder(fd)}, which is publishing this target")
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        os.close(fd)
