"""JSON Schema for catalog entries, so editors can check entries as they are typed."""

from __future__ import annotations

import json

from vcat.catalog.schema import ENTRY_MODELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file_name(kind: str) -> str:
    return f"{kind}.schema.json"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of the schema of each entry kind."""
    files = {}
    for kind, model in ENTRY_MODELS.items():
        schema = {"$schema": SCHEMA_DIALECT, **model.model_json_schema(mode="validation")}
        schema["title"] = f"vcat {kind} entry"
        files[schema_file_name(kind)] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files
