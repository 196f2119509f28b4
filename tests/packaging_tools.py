"""Helpers of tests/packaging: what users get from PyPI, the GitHub Action and the GitLab component.

The programs called here come with the dev group (jactionlint, check-jsonschema, ruff) and
./scripts/test (uv, shellcheck). Subprocesses get the real caches of uv and pip: the suite-wide
fixture points HOME at an empty directory, which would download everything again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """A program the tests call: the venv's own first, then PATH."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed (./scripts/test installs it)"
    return str(found)


UV = os.environ.get("UV") or program("uv")
_REAL_ENV = dict(os.environ)
_UV_CACHE = subprocess.run([UV, "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
CACHES = {
    "UV_CACHE_DIR": _UV_CACHE,
    "PIP_CACHE_DIR": str(Path(_REAL_ENV.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"),
}


def tool_env(**extra: str) -> dict[str, str]:
    """The current environment (as the isolating fixture left it), with the real caches."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    return {**env, **CACHES, **extra}


def run(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=600
    )


@dataclass(frozen=True)
class Dists:
    dir: Path
    version: str

    def wheel(self, dist: str) -> Path:
        return self.dir / f"{dist.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def sdist(self, dist: str) -> Path:
        return self.dir / f"{dist.replace('-', '_')}-{self.version}.tar.gz"


DISTRIBUTIONS = ("imgpub", "imgpub-aws", "imgpub-gcp", "imgpub-azure")
