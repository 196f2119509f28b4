"""Runs a composite GitHub Action's steps on this machine as the runner would (tests/packaging).

It knows what action.yml uses and no more: `shell: bash` steps with `env:` and `${{ }}`,
$GITHUB_OUTPUT and $GITHUB_ENV, `if:` with ==, !=, &&, ||, parentheses, always(), success() and
failure() (success() && ... when none is named), and toJSON(). Of the actions it calls,
actions/setup-python is skipped (the caller's PATH has the Python), and actions/cache/restore
and actions/cache/save keep their entries in a folder, as the cache service does: a save never
overwrites a key; a restore takes the exact key, else the newest entry starting with its
restore-keys prefix.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)
REFERENCE = re.compile(r"\b(inputs|steps|github|runner)((?:\.[A-Za-z_][\w-]*)+)")
STRING = re.compile(r"'(?:[^']|'')*'")
STATUS = re.compile(r"\b(always|success|failure|cancelled)\(\)")


@dataclass
class Outcome:
    """What one use of the action left: its outputs, each step's outcome and outputs, the log."""

    outputs: dict[str, str]
    steps: dict[str, dict[str, Any]]
    log: str
    failed: bool
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRunner:
    action: Path  # the action's folder (github.action_path)
    workspace: Path  # the job's working directory
    temp: Path  # runner.temp
    cache: Path  # the cache service's entries
    env: dict[str, str]  # the job's environment
    run_id: str = "1001"

    def run(self, inputs: dict[str, str], attempt: int = 1) -> Outcome:
        spec = yaml.safe_load((self.action / "action.yml").read_text())
        declared = spec.get("inputs", {})
        unknown = set(inputs) - set(declared)
        assert not unknown, f"inputs not in action.yml: {unknown}"
        context: dict[str, Any] = {
            "inputs": {k: inputs.get(k, str(v.get("default", ""))) for k, v in declared.items()},
            "steps": {},
            "github": {"action_path": str(self.action), "workspace": str(self.workspace)},
            "runner": {"temp": str(self.temp), "os": "Linux"},
        }
        job_env = {
            **self.env,
            "GITHUB_ACTIONS": "true",
            "GITHUB_ACTION_PATH": str(self.action),
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_RUN_ATTEMPT": str(attempt),
            "RUNNER_TEMP": str(self.temp),
            "RUNNER_OS": "Linux",
        }
        log: list[str] = []
        failed = False
        for i, step in enumerate(spec["runs"]["steps"]):
            sid = step.get("id", f"__{i}")
            condition = str(step.get("if", "success()"))
            if not STATUS.search(condition):  # GitHub's implicit success() && ...
                condition = "success() && (" + EXPRESSION.sub(r"\1", condition) + ")"
            if not truthy(evaluate(condition, context, failed)):
                context["steps"][sid] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
                continue
            if "uses" in step:
                ok, outputs = self.uses(step["uses"], self.with_(step, context, failed))
            else:
                ok, outputs = self.shell(step, context, failed, job_env, log, i)
            outcome = "success" if ok else "failure"
            context["steps"][sid] = {"outcome": outcome, "conclusion": outcome, "outputs": outputs}
            failed = failed or not ok
        outputs = {
            name: str(template(o["value"], context, failed)) for name, o in spec.get("outputs", {}).items()
        }
        return Outcome(outputs, context["steps"], "\n".join(log), failed, job_env)

    def with_(self, step: dict[str, Any], context: dict[str, Any], failed: bool) -> dict[str, str]:
        return {k: str(template(str(v), context, failed)) for k, v in (step.get("with") or {}).items()}

    def shell(
        self,
        step: dict[str, Any],
        context: dict[str, Any],
        failed: bool,
        job_env: dict[str, str],
        log: list[str],
        index: int,
    ) -> tuple[bool, dict[str, str]]:
        assert step.get("shell") == "bash", "only bash steps are run here"
        files = {name: self.temp / f"step{index}.{name}" for name in ("output", "env", "summary", "sh")}
        for name in ("output", "env", "summary"):
            files[name].write_text("")
        files["sh"].write_text(step["run"])
        env = {k: str(template(str(v), context, failed)) for k, v in (step.get("env") or {}).items()}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(files["sh"])],
            cwd=self.workspace,
            env={
                **job_env,
                **env,
                "GITHUB_OUTPUT": str(files["output"]),
                "GITHUB_ENV": str(files["env"]),
                "GITHUB_STEP_SUMMARY": str(files["summary"]),
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
        log.append(f"--- {step.get('name', index)} (exit {done.returncode})\n{done.stdout}{done.stderr}")
        log.append(files["summary"].read_text())
        job_env.update(parse_file_commands(files["env"].read_text()))
        return done.returncode == 0, parse_file_commands(files["output"].read_text())

    def uses(self, action: str, args: dict[str, str]) -> tuple[bool, dict[str, str]]:
        name = action.split("@")[0]
        if name == "actions/setup-python":
            return True, {}
        if name == "actions/cache/restore":
            return True, self.restore(args["path"], args["key"], args.get("restore-keys", ""))
        if name == "actions/cache/save":
            return self.save(args["path"], args["key"]), {}
        raise AssertionError(f"no stand-in for {action}")

    def restore(self, path: str, key: str, prefixes: str) -> dict[str, str]:
        matched = key if (self.cache / key).is_dir() else None
        for prefix in filter(None, prefixes.splitlines()):
            if matched is None:
                found = [p for p in self.cache.iterdir() if p.name.startswith(prefix)]
                if found:
                    matched = max(found, key=lambda p: p.stat().st_mtime_ns).name
        if matched is None:
            return {"cache-hit": "false"}
        shutil.copytree(self.cache / matched, path, dirs_exist_ok=True)
        return {"cache-hit": str(matched == key).lower(), "cache-matched-key": matched}

    def save(self, path: str, key: str) -> bool:
        if (self.cache / key).exists():
            return True  # the service refuses to overwrite: a warning, not a failure
        shutil.copytree(path, self.cache / key)
        time.sleep(0.01)  # distinct mtimes: "newest" is well defined
        return True


def parse_file_commands(text: str) -> dict[str, str]:
    """`name=value` lines and `name<<DELIMITER` blocks, as in $GITHUB_OUTPUT and $GITHUB_ENV."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def lookup(context: dict[str, Any], root: str, path: str) -> Any:
    value: Any = context[root]
    for part in path.strip(".").split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def evaluate(expression: str, context: dict[str, Any], failed: bool) -> Any:
    """A GitHub expression of the kinds action.yml uses, evaluated as Python."""
    expression = EXPRESSION.sub(r"\1", expression.strip())
    names: dict[str, Any] = {
        "always": lambda: True,
        "success": lambda: not failed,
        "failure": lambda: failed,
        "toJSON": lambda v: json.dumps(v, indent=2),
    }
    strings = STRING.findall(expression)
    code = STRING.sub("\0", expression)

    def reference(m: re.Match[str]) -> str:
        names[f"_v{len(names)}"] = lookup(context, m.group(1), m.group(2))
        return f"_v{len(names) - 1}"

    code = REFERENCE.sub(reference, code).replace("&&", " and ").replace("||", " or ")
    for s in strings:
        code = code.replace("\0", repr(s[1:-1].replace("''", "'")), 1)
    return eval(code, {"__builtins__": {}}, names)


def truthy(value: Any) -> bool:
    return bool(value)


def template(text: str, context: dict[str, Any], failed: bool) -> Any:
    """`${{ x }}` alone keeps x's value; inside other text each is turned into a string."""
    whole = EXPRESSION.fullmatch(text.strip())
    if whole:
        return evaluate(whole.group(1), context, failed)
    return EXPRESSION.sub(lambda m: str(evaluate(m.group(1), context, failed)), text)
