"""Acceptance runs against real cloud accounts: opt-in, and skipped (with the reason) otherwise.

    IMGPUB_LIVE_AWS=<region>                              e.g. eu-west-1
    IMGPUB_LIVE_GCP=<project>/<bucket>                    e.g. my-project/my-upload-bucket
    IMGPUB_LIVE_AZURE=<subscription>/<resource group>     plus IMGPUB_LIVE_AZURE_LOCATION and
                                                          IMGPUB_LIVE_AZURE_STORAGE (account name)

Credentials come from each SDK's standard chain, exactly as for a user. Each test publishes the
quickstart disk (64 MiB, GPT + ESP) under a unique version, checks what the cloud holds, and deletes
everything it made, also when it fails. Run them before a release:

    IMGPUB_LIVE_AWS=eu-west-1 uv run pytest tests/live -v
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REAL_ENV = dict(os.environ)
"""The environment before the suite's `isolated_env` fixture hides the developer's credentials."""
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "disk.qcow2"


def opt_in(variable: str, form: str, parts: int = 1) -> list[str]:
    """The `/`-separated parts of an opt-in variable, or skip the test saying how to opt in."""
    value = REAL_ENV.get(variable, "")
    if not value:
        pytest.skip(f"live test: set {variable}={form} (and credentials) to run it against a real account")
    pieces = value.split("/")
    if len(pieces) != parts or not all(pieces):
        pytest.fail(f"{variable}={value!r}: expected {form}")
    return pieces


@dataclass(frozen=True)
class LiveRun:
    """A unique image name and version for one live test, and where its manifest and disk are."""

    name: str
    version: str
    folder: Path

    def manifest(self, targets_yaml: str, image_extra: str = "") -> Path:
        path = self.folder / "imgpub.yaml"
        path.write_text(
            "image:\n"
            f"  name: {self.name}\n"
            f"  version: {self.version}\n"
            "  source: disk.qcow2\n"
            "  arch: x86_64\n"
            "  boot: uefi\n"
            "  labels: {purpose: imgpub-live-test}\n"
            f"{image_extra}"
            f"targets:\n{targets_yaml}"
        )
        return path


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the test back the real credentials (environment, HOME with ~/.aws, ~/.azure, gcloud)."""
    for key, value in REAL_ENV.items():
        if key.startswith(("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "AZURE_", "ARM_", "MSI_", "IDENTITY_")):
            monkeypatch.setenv(key, value)
    if "HOME" in REAL_ENV:
        monkeypatch.setenv("HOME", REAL_ENV["HOME"])


@pytest.fixture
def live_run(tmp_path: Path, live_env: None) -> Iterator[LiveRun]:
    shutil.copyfile(QUICKSTART, tmp_path / "disk.qcow2")
    token = uuid.uuid4().hex[:8]
    yield LiveRun(name=f"imgpub-live-{token}", version=f"0.0.{int(token, 16) % 100000}", folder=tmp_path)
