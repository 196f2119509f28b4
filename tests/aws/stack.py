"""The patched moto server (moto_server.py) as a subprocess: used by the aws tests, e2e and the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from fakes.process import free_port, stop, wait_until_ready

HERE = Path(__file__).parent


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
        where = f" (see {log.name})" if log is not None else ""
        wait_until_ready(
            proc,
            lambda: urllib.request.urlopen(url + "/moto-api/", timeout=2).close(),
            timeout=60,
            poll=0.2,
            failure=f"moto server did not start on {url}{where}",
        )
        yield url
    finally:
        stop(proc)
