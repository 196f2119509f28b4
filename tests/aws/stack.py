"""The patched moto server (moto_server.py) as a subprocess: used by the aws tests, e2e and the sandbox."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_moto(port: int = 0, log: IO[bytes] | None = None) -> Iterator[str]:
    """Base URL of a moto server with imgpub's patches and test API, on `port` (0: a free one)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py"), str(port)],
        env=env,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    where = f" (see {log.name})" if log is not None else ""
                    raise RuntimeError(f"moto server did not start on {url}{where}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
