"""A patched moto server (tests/aws/moto_server.py) for the whole session, reset before each test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aws.motoaws import Moto
from imaging import MiB, pattern, sparse_raw, text_like
from imgpub.disk import DiskImage, open_image
from imgpub_aws import AwsSettings

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py"), str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start (see {log.name})") from None
            time.sleep(0.2)
    try:
        yield Moto(url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def moto(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> Moto:
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    return moto_server


@pytest.fixture
def settings_for(moto: Moto) -> Any:
    def make(**kw: Any) -> AwsSettings:
        base: dict[str, Any] = {
            "name": "aws-main",
            "region": "us-east-1",
            "endpoint_url": moto.url,
            "concurrency": 4,
        }
        return AwsSettings.model_validate({**base, **kw})

    return make


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskImage]:
    size = 30 * MiB + 7 * 4096  # the last 512 KiB block is partial
    path = sparse_raw(
        tmp_path / "disk.raw",
        size,
        [
            (0, pattern(6 * MiB + 4096, 1)),
            (9 * MiB + 512, text_like(3 * MiB, 2)),
            (14 * MiB, bytes(MiB)),  # allocated zeros: never sent
            (20 * MiB + 12345, pattern(300 * 1024, 3)),
            (size - 4096, pattern(4096, 4)),
        ],
    )
    with open_image(path) as img:
        yield img
