"""Immich's OpenAPI spec (v3.1.0, ``../shared/immich/immich-openapi-specs.json``) as JSON Schema validators.

OpenAPI 3.0 schemas are JSON Schema with a few differences; the one that matters here is ``nullable: true``,
which becomes ``"type": [T, "null"]`` (or ``anyOf [..., {"type": "null"}]`` around a ``$ref``/``allOf``).
Validation uses Draft 2020-12 with format checks (``uuid``, ``email``; ``date-time`` where the optional
checker is installed; the spec's own ``pattern`` covers date-times anyway).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SPEC_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "immich" / "immich-openapi-specs.json"


@cache
def spec() -> dict:
    """Return the spec, or skip the calling test when it is not there."""
    if not SPEC_PATH.is_file():
        pytest.skip(f"Immich's OpenAPI spec not found at {SPEC_PATH}")
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def to_json_schema(node: Any) -> Any:
    """Convert an OpenAPI 3.0 schema object (and everything below it) to JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(schema) for name, schema in value.items()}
        elif key in ("items", "allOf", "anyOf", "oneOf", "additionalProperties", "not"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def validator(component: str):
    """Return a Draft 2020-12 validator for ``#/components/schemas/<component>``."""
    import jsonschema

    schemas = {name: to_json_schema(schema) for name, schema in spec()["components"]["schemas"].items()}
    root = {"$ref": f"#/components/schemas/{component}", "components": {"schemas": schemas}}
    cls = jsonschema.Draft202012Validator
    cls.check_schema(root)
    return cls(root, format_checker=cls.FORMAT_CHECKER)


def errors(component: str, instance: Any) -> list[str]:
    """Return the spec violations of ``instance`` against ``component`` (empty when it conforms)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator(component).iter_errors(instance)
    ]
