"""Plugin discovery through entry points: a third-party provider installed beside imgpub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgpub import plugins
from imgpub.cli import app
from imgpub.errors import ConfigurationError
from imgpub.pipeline import publish


def test_entry_point_discovery(catalog_plugin: str) -> None:
    assert "catalog" in plugins.available()
    cls = plugins.load("catalog")
    assert cls.name == "catalog" and cls.__module__ == "imgpub_catalog"
    rows = json.loads(CliRunner().invoke(app, ["providers", "--json"]).stdout)
    assert {
        "name": "catalog",
        "distribution": "imgpub-catalog",
        "version": "0.1.0",
        "entry_point": "imgpub_catalog:CatalogProvider",
    } in rows


def test_third_party_provider_publishes(catalog_plugin: str, write_manifest, tmp_path: Path) -> None:
    path = write_manifest("- name: cat\n  provider: catalog\n  catalog: catalog.json\n  owners: [me]\n")
    result = publish(path)
    assert result.exit_code == 0, result.targets[0].error
    entries = json.loads((tmp_path / "catalog.json").read_text())
    assert entries["demo@1.0.0"]["digest"] == result.targets[0].digest
    assert publish(path).targets[0].published.changed is False  # type: ignore[union-attr]


def test_third_party_check_maps_to_line(catalog_plugin: str, write_manifest) -> None:
    path = write_manifest("- name: cat\n  provider: catalog\n  catalog: catalog.json\n")
    result = CliRunner().invoke(app, ["publish", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"imgpub: error: {path}:6:5: targets[0].owners: a stable image needs at least one owner"
    )
    assert "Traceback" not in result.stderr


def test_allow_list_hides_providers(
    catalog_plugin: str, monkeypatch: pytest.MonkeyPatch, write_manifest
) -> None:
    monkeypatch.setenv("IMGPUB_PROVIDERS", "local, fake")
    plugins.available.cache_clear()
    assert list(plugins.available()) == ["local"]
    path = write_manifest("- name: cat\n  provider: catalog\n  catalog: c.json\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "provider 'catalog' is not installed (installed: local)" in result.stderr


def test_duplicate_provider_names_are_refused(fake_provider: type) -> None:
    clash = type("Clash", (fake_provider,), {})
    with pytest.raises(ConfigurationError, match="two providers are named 'fake'"):
        plugins.register(clash)


def test_broken_plugin_is_one_line(tmp_path: Path, write_manifest) -> None:
    site = tmp_path / "broken"
    info = site / "imgpub_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imgpub-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[imgpub.providers]\nbroken = imgpub_broken_missing:Provider\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        plugins._entry_points.cache_clear()
        plugins.available.cache_clear()
        path = write_manifest("- name: b\n  provider: broken\n")
        result = CliRunner().invoke(app, ["validate", str(path)])
    plugins._entry_points.cache_clear()
    plugins.available.cache_clear()
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"imgpub: error: {path}:7:15: targets[0].provider: provider 'broken' failed to load: "
    )
    assert result.stderr.count("\n") == 1
