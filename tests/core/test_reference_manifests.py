"""manifests/valid/*.yaml validate (and match the checked-in schema); each manifests/invalid/*.yaml
fails with exactly the one-line error written in its `# error:` comment."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from imgpub.errors import ManifestError
from imgpub.manifest import load_manifest
from imgpub.pipeline import validate

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
VALID = sorted((MANIFESTS / "valid").glob("*.yaml"))
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))


def test_there_are_reference_manifests() -> None:
    assert len(VALID) >= 3 and len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid(path: Path) -> None:
    manifest = validate(load_manifest(path, env={}))
    assert manifest.targets
    assert path.read_text().startswith("# yaml-language-server: $schema=../imgpub.schema.json\n")
    schema = json.loads((MANIFESTS / "imgpub.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid(path: Path) -> None:
    expected = next(line for line in path.read_text().splitlines() if line.startswith("# error: "))
    expected = (
        expected.removeprefix("# error: ").replace("{file}", str(path)).replace("{dir}", str(path.parent))
    )
    with pytest.raises(ManifestError) as err:
        validate(load_manifest(path, env={}))
    assert str(err.value) == expected
