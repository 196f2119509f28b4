"""The manifest's JSON Schema, built from the models of every installed provider."""

from __future__ import annotations

import json
from typing import Any

from imgpub.manifest.loader import load_providers
from imgpub.manifest.models import manifest_model

__all__ = ["SCHEMA_ID", "json_schema", "schema_text"]

SCHEMA_ID = "https://raw.githubusercontent.com/imgpub/imgpub/main/manifests/imgpub.schema.json"
"""Where the checked-in schema is published, as editors and schema stores refer to it."""


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a manifest, covering every installed provider's settings."""
    schema = _allow_env_refs(manifest_model(load_providers()).model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def _allow_env_refs(node: Any) -> Any:
    """Patterned strings also accept `${VAR}` text: editors validate before the variables expand."""
    if isinstance(node, dict):
        out = {key: _allow_env_refs(value) for key, value in node.items()}
        if isinstance(out.get("pattern"), str) and out.get("type") == "string":
            out["pattern"] = f"(?:{out['pattern']})|\\$\\{{"
        return out
    if isinstance(node, list):
        return [_allow_env_refs(item) for item in node]
    return node
