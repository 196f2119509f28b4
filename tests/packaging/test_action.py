"""The GitHub Action (action.yml) run here step by step (tests/action_runner.py), on the local target:
what .github/workflows/action.yml checks on GitHub, plus the cache across run attempts and the
install of only the providers a manifest names."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from action_runner import ActionRunner
from packaging_tools import ROOT, UV, run, tool_env

QUICKSTART = ROOT / "examples/quickstart"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with pip, first on PATH: where the action installs imgpub (setup-python's stand-in)."""
    venv = tmp_path_factory.mktemp("action") / "venv"
    done = run(UV, "venv", "--quiet", "--seed", "--python", shutil.which("python3") or "python3", venv)
    assert done.returncode == 0, done.stderr
    yield venv / "bin"


@pytest.fixture
def runner(python: Path, tmp_path: Path) -> ActionRunner:
    workspace = tmp_path / "ws"
    (workspace / "image").mkdir(parents=True)
    shutil.copy(QUICKSTART / "disk.qcow2", workspace / "image")
    manifest = (QUICKSTART / "imgpub.yaml").read_text()
    manifest = manifest.replace("${QUICKSTART_VERSION:-1.0.0}", "${IMGPUB_VERSION}")
    manifest = manifest.replace("../../out/quickstart", "../out")
    (workspace / "image/imgpub.yaml").write_text(manifest)
    (tmp_path / "temp").mkdir()
    (tmp_path / "cache").mkdir()
    env = tool_env(PATH=f"{python}:{tool_env()['PATH']}")
    env.pop("IMGPUB_STATE_DIR")  # the action chooses one under runner.temp
    return ActionRunner(ROOT, workspace, tmp_path / "temp", tmp_path / "cache", env)


def new_runner_machine(runner: ActionRunner) -> None:
    """A re-run gets a new machine: nothing of the last attempt is left but the cache."""
    shutil.rmtree(runner.temp)
    runner.temp.mkdir()


def test_publish_exports_the_ids_and_the_state_is_cached_across_attempts(runner: ActionRunner) -> None:
    inputs = {"manifest": "image/imgpub.yaml", "version": "1.2.3", "args": "--report 'imgpub report.json'"}
    first = runner.run(inputs)
    assert not first.failed, first.log
    assert first.outputs["ok"] == "true" and first.outputs["exit-code"] == "0"
    assert first.outputs["report"] == "imgpub report.json"
    report = json.loads((runner.workspace / "imgpub report.json").read_text())
    assert report["image"]["version"] == "1.2.3"
    ids = json.loads(first.outputs["outputs"])
    assert ids["folder_status"] == "published" and ids["ok"] == "true"
    assert ids["folder_raw"].endswith("/out/quickstart/1.2.3/disk.raw")
    assert "### imgpub publish: quickstart 1.2.3" in first.log  # the step summary
    state = Path(first.outputs["state-dir"])
    assert state.is_relative_to(runner.temp) and (state / "quickstart_1.2.3").is_dir()
    assert first.env["IMGPUB_STATE_DIR"] == str(state)  # for the job's later steps
    (saved,) = (p.name for p in runner.cache.iterdir())
    assert saved.startswith("imgpub-state-v1-Linux-") and saved.endswith("-1001-1-publish")

    new_runner_machine(runner)
    second = runner.run(inputs, attempt=2)
    assert not second.failed, second.log
    assert json.loads(second.outputs["outputs"])["folder_status"] == "unchanged"
    restore = next(s for s in second.steps.values() if "cache-matched-key" in s["outputs"])
    assert restore["outputs"]["cache-matched-key"] == saved  # attempt 2 resumed from attempt 1's state
    assert len(list(runner.cache.iterdir())) == 2


def test_a_failed_command_fails_the_step_with_its_exit_code_and_still_saves_the_state(
    runner: ActionRunner,
) -> None:
    done = runner.run({"manifest": "image/imgpub.yaml", "version": "1.2.3", "targets": "folder, nope"})
    assert done.failed and done.outputs["exit-code"] == "2"
    assert "no target named 'nope'" in done.log
    assert [p.name.endswith("-1001-1-publish") for p in runner.cache.iterdir()] == [True]


def test_validate_installs_only_the_providers_the_manifest_names(runner: ActionRunner) -> None:
    manifest = runner.workspace / "image/imgpub.yaml"
    manifest.write_text(
        manifest.read_text()
        + "  - name: ami\n    provider: aws\n    region: eu-west-1\n    regions: [us-east-1]\n"
    )
    done = runner.run({"manifest": "image/imgpub.yaml", "command": "validate", "version": "1.2.3"})
    assert not done.failed, done.log
    assert "imgpub: providers: aws local" in done.log
    listed = run(runner.env["PATH"].split(":")[0] + "/imgpub", "providers", "--json", env=runner.env)
    assert {row["name"] for row in json.loads(listed.stdout)} == {"aws", "local"}
    assert not list(runner.cache.iterdir())  # validate keeps no state


def test_bad_inputs_are_one_error_annotation(runner: ActionRunner) -> None:
    done = runner.run({"manifest": "image/imgpub.yaml", "command": "deploy"})
    assert done.failed and "::error title=imgpub::command must be validate, plan, publish" in done.log
    done = runner.run({"manifest": "image/missing.yaml"})
    assert done.failed and "::error title=imgpub::manifest 'image/missing.yaml' not found" in done.log
    done = runner.run({"manifest": "image/imgpub.yaml", "version": "1.2.3", "args": "--report 'unclosed"})
    assert done.failed and "::error title=imgpub::args: unbalanced quotes" in done.log
