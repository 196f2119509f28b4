"""Fixtures of tests/packaging (helpers in tests/packaging_tools.py)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import pytest

from packaging_tools import ROOT, UV, Dists, run


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    """Every distribution's sdist and wheel (the wheel built from the sdist), as `uv build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    done = run(UV, "build", "--all-packages", "--quiet", "-o", out)
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    yield Dists(out, version)
