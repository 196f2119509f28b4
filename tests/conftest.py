"""Suite-wide fixtures: an isolated environment for every test (no real cloud, no user state)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_CLOUD_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "AZURE_", "ARM_", "MSI_", "IDENTITY_")
_CLOUD_ENV_NAMES = ("STORAGE_EMULATOR_HOST", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's cloud credentials, state directory or CI variables."""
    for key in list(os.environ):
        if key.startswith(_CLOUD_ENV_PREFIXES) or key in _CLOUD_ENV_NAMES:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("IMGPUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGPUB_PROVIDERS", raising=False)
    yield
