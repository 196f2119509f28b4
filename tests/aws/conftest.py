"""A patched moto server (tests/aws/moto_server.py) for the whole session, reset before each test,
and the contract check: every request any botocore client sends in these tests is validated against
botocore's service model and its documented rules (tests/aws/contract.py) before it goes out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient

from aws.contract import Contract, ContractViolation, violations
from aws.motoaws import UNCHECKED, Moto
from aws.stack import running_moto
from imaging import MiB, gpt_raw, pattern, text_like
from imgpub.disk import DiskImage, open_image
from imgpub_aws import AwsSettings


@pytest.fixture(autouse=True)
def contract(monkeypatch: pytest.MonkeyPatch) -> Iterator[Contract]:
    """Wraps BaseClient._make_api_call: validate, then call through (the call itself is untouched)."""
    log = Contract()
    send = BaseClient._make_api_call

    def checked(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if not getattr(self, UNCHECKED, False):
            service = self.meta.service_model.service_name
            log.checked.append(f"{service}.{operation}")
            found = violations(service, operation, params, self.meta.region_name)
            if found:
                log.broken += [f"{service}.{operation}: {v}" for v in found]
                raise ContractViolation("; ".join(map(str, found)))
        return send(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", checked)
    yield log
    assert not log.broken, "requests that break the AWS contract (even if the code swallowed the error)"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with (tmp_path_factory.mktemp("moto") / "moto.log").open("wb") as log, running_moto(log=log) as url:
        yield Moto(url)


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
    """A GPT disk (an EFI system partition and a root partition, as golden images are) whose last
    512 KiB block is partial, with data, text, allocated zeros (never sent) and holes."""
    size = 30 * MiB + 7 * 4096
    path = gpt_raw(
        tmp_path / "disk.raw",
        size,
        [
            (MiB, pattern(5 * MiB + 4096, 1)),
            (9 * MiB + 512, text_like(3 * MiB, 2)),
            (14 * MiB, bytes(MiB)),  # allocated zeros: never sent
            (20 * MiB + 12345, pattern(300 * 1024, 3)),
            (30 * MiB, pattern(4096, 4)),
        ],
    )
    with open_image(path) as img:
        yield img
