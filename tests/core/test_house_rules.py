"""The house rules that a reviewer would otherwise have to remember (style.md)."""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import imgpub
from imgpub import plugins, provider

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "imgpub"
PROVIDER_SRCS = sorted(ROOT.glob("providers/*/src/imgpub_*"))
MAX_LINES = 450  # "about 400"
SDKS = ("boto3", "botocore", "google", "azure", "googleapiclient")
PUBLIC = (
    "imgpub",
    "imgpub.provider",
    "imgpub.errors",
    "imgpub.progress",
    "imgpub.retry",
    "imgpub.identity",
    "imgpub.journal",
    "imgpub.names",
    "imgpub.redact",
    "imgpub.disk",
)


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved within its package)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_disk_engine_is_pure() -> None:
    for path in sorted((SRC / "disk").rglob("*.py")):
        for name in imports(path):
            assert not (top(name) == "imgpub" and not name.startswith("imgpub.disk")), (
                f"{path}: imports {name}"
            )
            assert top(name) not in (*SDKS, "rich", "typer", "pydantic", "tenacity"), (
                f"{path}: imports {name}"
            )


def test_providers_use_only_the_public_api() -> None:
    assert PROVIDER_SRCS, "no provider distributions found"
    for package in PROVIDER_SRCS:
        for path in sorted(package.rglob("*.py")):
            for name in imports(path):
                if top(name) != "imgpub":
                    continue
                ok = (
                    any(name == p or name.startswith(p + ".") for p in PUBLIC if p != "imgpub")
                    or name == "imgpub"
                )
                assert ok and not name.startswith(("imgpub.cli", "imgpub.pipeline", "imgpub.manifest")), (
                    f"{path}: imports {name}, which is not public API"
                )


def test_cli_uses_only_the_library() -> None:
    for path in sorted((SRC / "cli").rglob("*.py")):
        for name in imports(path):
            assert top(name) not in (*SDKS, "imgpub_aws", "imgpub_gcp", "imgpub_azure"), (
                f"{path}: imports {name}"
            )


def test_library_never_imports_the_cli_or_ui() -> None:
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts or path.name == "__main__.py":  # the two entry points
            continue
        for name in imports(path):
            assert not name.startswith("imgpub.cli") and top(name) not in ("rich", "typer"), (
                f"{path}: imports {name}"
            )


@pytest.mark.parametrize("path", sorted([*SRC.rglob("*.py"), *ROOT.glob("providers/*/src/**/*.py")]), ids=str)
def test_modules_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"


def test_no_utils_modules() -> None:
    names = {p.stem for p in [*SRC.rglob("*.py"), *ROOT.glob("providers/*/src/**/*.py")]}
    assert not names & {"utils", "util", "helpers", "misc"}


def test_public_api_all_is_sorted_and_complete() -> None:
    assert imgpub.__all__ == sorted(imgpub.__all__)
    for name in imgpub.__all__:
        assert getattr(imgpub, name) is not None
    for name in ("load_manifest", "plan", "publish", "status", "validate"):
        assert name in imgpub.__all__
    assert isinstance(imgpub.__version__, str)


@pytest.mark.parametrize(
    "module", [provider, importlib.import_module("imgpub.errors")], ids=lambda m: m.__name__
)
def test_module_all_is_sorted_and_complete(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert exported == sorted(exported)
    defined = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__  # type: ignore[attr-defined]
    }
    assert defined <= set(exported), f"missing from __all__: {sorted(defined - set(exported))}"


def test_provider_names_agree() -> None:
    """Provider.name == entry-point name == the settings model's `provider` literal."""
    import typing

    for ep in entry_points(group=plugins.GROUP):
        cls = plugins.load(ep.name)
        assert cls.name == ep.name
        literal = typing.get_args(cls.settings_model.model_fields["provider"].annotation)
        assert literal == (ep.name,), f"{ep.value}: settings provider literal is {literal}"
