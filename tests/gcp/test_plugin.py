"""The gcp distribution's public face: one provider, one settings model, found by its entry point."""

from __future__ import annotations

import subprocess
import sys

import imgpub_gcp
from imgpub import plugins
from imgpub_gcp import GcpProvider, GcpSettings


def test_entry_point_name_matches_provider_and_settings() -> None:
    assert plugins.load("gcp") is GcpProvider
    assert GcpProvider.name == "gcp" and GcpProvider.settings_model is GcpSettings
    assert GcpSettings.model_fields["provider"].default == "gcp"
    assert imgpub_gcp.__all__ == ["GcpProvider", "GcpSettings"]


def test_importing_the_provider_loads_no_google_sdk() -> None:
    code = (
        "import sys, imgpub_gcp; "
        "print(sorted(m for m in sys.modules if m.startswith(('google', 'requests', 'grpc'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
