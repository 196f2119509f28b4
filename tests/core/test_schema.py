"""The manifest's JSON Schema: generated from the models of every installed provider, checked in."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from imgpub.cli import app
from imgpub.manifest.schema import json_schema, schema_text

CHECKED_IN = Path(__file__).resolve().parents[2] / "manifests" / "imgpub.schema.json"


def test_checked_in_schema_is_current() -> None:
    assert CHECKED_IN.read_text() == schema_text(), (
        "manifests/imgpub.schema.json is stale: run `uv run imgpub schema -o manifests/imgpub.schema.json` "
        "with every provider installed"
    )


def test_schema_has_an_id_and_a_draft() -> None:
    schema = json_schema()
    assert schema["$id"].endswith("/manifests/imgpub.schema.json") and schema["$id"].startswith("https://")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_covers_every_installed_provider() -> None:
    schema = json_schema()
    mapping = schema["properties"]["targets"]["items"]["discriminator"]["mapping"]
    assert "local" in mapping
    local = schema["$defs"]["LocalSettings"]
    assert local["additionalProperties"] is False
    assert set(local["required"]) == {"name", "provider", "path"}
    assert set(schema["$defs"]["Defaults"]["properties"]) == set(mapping)


def test_schema_covers_a_third_party_plugin(catalog_plugin: str) -> None:
    schema = json_schema()
    assert (
        schema["properties"]["targets"]["items"]["discriminator"]["mapping"]["catalog"]
        == "#/$defs/CatalogSettings"
    )
    assert schema["$defs"]["CatalogSettings"]["properties"]["channel"]["enum"] == ["stable", "beta"]


def test_schema_command(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["schema"])
    assert out.exit_code == 0 and json.loads(out.stdout)["title"] == "imgpub manifest"
    assert runner.invoke(app, ["schema", "--output", str(tmp_path / "s.json")]).exit_code == 0
    assert (tmp_path / "s.json").read_text() == out.stdout
