"""A user's `pip install 'imgpub[aws]'`, from the wheels `uv build` makes, in a fresh venv: the CLI
runs and finds exactly the providers it was installed with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from packaging_tools import UV, Dists, run


def test_install_imgpub_aws_from_the_wheels(dists: Dists, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert run(UV, "venv", "--quiet", "--python", sys.executable, venv).returncode == 0
    # Our packages pinned to the built version, so only the wheels here can satisfy them; the
    # third-party dependencies come from the index.
    pins = [f"imgpub[aws]=={dists.version}", f"imgpub-aws=={dists.version}"]
    done = run(UV, "pip", "install", "--quiet", "--python", venv, "--find-links", dists.dir, *pins)
    assert done.returncode == 0, done.stderr

    imgpub = venv / "bin" / "imgpub"
    version = run(imgpub, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"imgpub {dists.version}")
    providers = run(imgpub, "providers", "--json")
    assert providers.returncode == 0, providers.stderr
    names = {row["name"]: row for row in json.loads(providers.stdout)}
    assert set(names) == {"local", "aws"}
    assert names["aws"]["distribution"] == "imgpub-aws" and names["aws"]["version"] == dists.version
    listed = run(imgpub, "providers")
    assert "aws" in listed.stdout and "gcp" not in listed.stdout and "azure" not in listed.stdout
