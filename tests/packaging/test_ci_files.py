"""Every CI file in the repository passes jactionlint (actionlint's checks, composite actions and
shellcheck included) and check-jsonschema with GitHub's and GitLab's schemas; a broken file fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from packaging_tools import ROOT, program, run

GITHUB_WORKFLOWS = [*sorted(ROOT.glob(".github/workflows/*.y*ml")), ROOT / "examples/ci/github-actions.yml"]
GITHUB_ACTIONS = [ROOT / "action.yml"]
GITLAB = [ROOT / "templates/imgpub.yml", ROOT / "examples/ci/gitlab-ci.yml"]
LINTER_CONFIG = ROOT / ".github/jactionlint.yaml"
ALL = GITHUB_WORKFLOWS + GITHUB_ACTIONS + GITLAB + [LINTER_CONFIG]


def ci_yaml_in_repository() -> set[Path]:
    """YAML files a CI system reads: workflows, actions, GitLab files, the examples and templates."""
    files = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yml", "*.yaml").stdout
    paths = {ROOT / line for line in files.splitlines()}
    return {
        p
        for p in paths
        if p.name in ("action.yml", "action.yaml", ".gitlab-ci.yml")
        or p.relative_to(ROOT).parts[0] in (".github", "templates")
        or p.parent == ROOT / "examples/ci"
    }


def test_every_ci_file_is_checked() -> None:
    assert all(p.is_file() for p in ALL)
    assert ci_yaml_in_repository() <= set(ALL), "a CI file no test checks: add it to the lists above"


def jactionlint(*files: Path, cwd: Path = ROOT) -> tuple[int, str]:
    done = run(
        program("jactionlint"),
        "--no-color",
        f"--shellcheck={program('shellcheck')}",
        f"--ruff={program('ruff')}",
        *files,
        cwd=cwd,
    )
    return done.returncode, done.stdout + done.stderr


def test_jactionlint_passes_the_workflows_and_the_action() -> None:
    code, out = jactionlint(*GITHUB_WORKFLOWS, *GITHUB_ACTIONS)
    assert code == 0, out


def check_jsonschema(schema: str, *files: Path, transform: str | None = None) -> tuple[int, str]:
    args = ["--builtin-schema", schema, *(["--data-transform", transform] if transform else [])]
    done = run(program("check-jsonschema"), *args, *files)
    return done.returncode, done.stdout + done.stderr


def gitlab_documents(path: Path, into: Path) -> list[Path]:
    """A component is two YAML documents (spec, then jobs); the schema checks one at a time."""
    parts = re.split(r"^---$", path.read_text(), flags=re.MULTILINE)
    out = []
    for i, text in enumerate(parts):
        out.append(into / f"{path.stem}-{i}.yml")
        out[-1].write_text(text)
    return out


def test_github_schemas() -> None:
    code, out = check_jsonschema("vendor.github-workflows", *GITHUB_WORKFLOWS)
    assert code == 0, out
    code, out = check_jsonschema("vendor.github-actions", *GITHUB_ACTIONS)
    assert code == 0, out


def test_gitlab_schema(tmp_path: Path) -> None:
    docs = [doc for path in GITLAB for doc in gitlab_documents(path, tmp_path)]
    code, out = check_jsonschema("vendor.gitlab-ci", *docs, transform="gitlab-ci")
    assert code == 0, out


def test_linter_config_matches_its_schema(tmp_path: Path) -> None:
    schema = tmp_path / "jactionlint-config.json"
    schema.write_text(run(program("jactionlint"), "--print-config-schema").stdout)
    done = run(program("check-jsonschema"), "--schemafile", schema, LINTER_CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr


BROKEN_WORKFLOW = """\
on: push
permissions: {}
jobs:
  test:
    runs-on: ubuntu-latest
    step:
      - run: echo "${{ github.event.head_commit.message }}"
"""


def test_a_broken_workflow_fails_both_checks(tmp_path: Path) -> None:
    (tmp_path / ".github/workflows").mkdir(parents=True)
    broken = tmp_path / ".github/workflows/broken.yml"
    broken.write_text(BROKEN_WORKFLOW)
    code, out = jactionlint(broken, cwd=tmp_path)
    assert code == 1 and 'unexpected key "step"' in out
    assert check_jsonschema("vendor.github-workflows", broken)[0] == 1


def test_a_broken_gitlab_job_fails_the_schema(tmp_path: Path) -> None:
    broken = tmp_path / "gitlab-ci.yml"
    broken.write_text("publish:\n  scrpt: [imgpub publish image.yaml]\n")
    code, out = check_jsonschema("vendor.gitlab-ci", broken, transform="gitlab-ci")
    assert code == 1 and "scrpt" in out


# GitLab's schema does not look inside spec:inputs; these do.
INPUT_KEYS = {"description", "default", "options", "regex", "type"}


def component() -> tuple[dict[str, dict[str, object]], str]:
    spec_text, jobs_text = re.split(r"^---$", (ROOT / "templates/imgpub.yml").read_text(), flags=re.MULTILINE)
    return yaml.safe_load(spec_text)["spec"]["inputs"], jobs_text


def test_component_inputs_are_declared_and_used() -> None:
    inputs, jobs = component()
    for name, spec in inputs.items():
        assert set(spec) <= INPUT_KEYS, f"{name}: {set(spec) - INPUT_KEYS}"
        assert "description" in spec, name
    used = set(re.findall(r"\$\[\[\s*inputs\.([\w-]+)", jobs))
    assert used <= set(inputs), f"used, not declared: {used - set(inputs)}"
    assert set(inputs) <= used, f"declared, not used: {set(inputs) - used}"
    assert inputs["command"]["options"] == ["validate", "plan", "publish", "status", "prune"]


def gitlab_scripts(path: Path) -> list[str]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    scripts = []
    for doc in docs:
        for job in doc.values():
            if isinstance(job, dict):
                for key in ("before_script", "script"):
                    lines = job.get(key) or []
                    scripts.append("\n".join([lines] if isinstance(lines, str) else lines))
    return [s for s in scripts if s]


@pytest.mark.parametrize("path", GITLAB, ids=lambda p: p.name)
def test_gitlab_scripts_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    """GitLab runs a job's script lines with sh (bash where the image has it): POSIX sh it is."""
    scripts = gitlab_scripts(path)
    assert scripts
    for i, text in enumerate(scripts):
        script = tmp_path / f"{i}.sh"
        script.write_text(text + "\n")
        done = run(program("shellcheck"), "--shell=sh", "--severity=warning", script)
        assert done.returncode == 0, f"{path.name} script {i}:\n{done.stdout}"


BROKEN_ACTION = """\
name: broken
description: a composite action with a script shellcheck refuses
inputs:
  dir: {description: a directory}
runs:
  using: composite
  steps:
    - shell: bash
      env: {DIR: "${{ inputs.dir }}"}
      run: cd $DIR && ls ${{ inputs.folder }}
"""


def test_a_broken_composite_action_fails_jactionlint(tmp_path: Path) -> None:
    (tmp_path / "action.yml").write_text(BROKEN_ACTION)
    code, out = jactionlint(tmp_path / "action.yml", cwd=tmp_path)
    assert code == 1
    assert "SC2086" in out  # shellcheck ran on the composite step
    assert '"folder" is not defined' in out  # and the expressions were type-checked
