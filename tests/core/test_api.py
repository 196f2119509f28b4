"""The public API: `import imgpub` is light, names load on first use, and the flow works end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imgpub


def test_importing_the_disk_engine_loads_no_manifest_machinery() -> None:
    code = (
        "import sys, imgpub.disk, imgpub.disk.raw\n"
        "heavy = ('pydantic', 'yaml', 'typer', 'rich', 'tenacity')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " or m.startswith(('imgpub.manifest', 'imgpub.pipeline', 'imgpub.cli'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_flow(write_manifest, tmp_path: Path) -> None:
    manifest = imgpub.load_manifest(write_manifest("- name: out\n  provider: local\n  path: out\n"))
    assert isinstance(manifest, imgpub.Manifest)
    assert imgpub.validate(manifest) is manifest
    planned = imgpub.plan(manifest)
    assert isinstance(planned, imgpub.RunResult) and not planned.targets[0].plan.up_to_date  # type: ignore[union-attr]
    published = imgpub.publish(manifest)
    report = imgpub.build_report(published)
    assert report["targets"][0]["status"] == "published"
    assert imgpub.status(manifest).targets[0].status.drift == []  # type: ignore[union-attr]


def test_unknown_attribute() -> None:
    try:
        imgpub.nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "has no attribute 'nope'" in str(exc)
    else:
        raise AssertionError("imgpub.nope should not exist")
