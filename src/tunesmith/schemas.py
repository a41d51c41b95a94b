"""JSON outputs against a JSON schema: the value of a whole output, whether it validates (jsonschema),
and the fields scored by default. Training's task metric, evaluation, monitoring and the server's
`schema_valid` all use these."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str) -> Any:
    """The JSON value of a whole output, or None: text around it means the format was not followed."""
    try:
        return json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None


def schema_compliance(predictions: list[str], schema: dict[str, Any]) -> list[float]:
    """1.0 where the output parses and validates against the JSON schema."""
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)
    out = []
    for p in predictions:
        value = parse_json(p)
        out.append(float(value is not None and validator.is_valid(value)))
    return out


def schema_fields(schema: dict[str, Any]) -> list[str]:
    """Fields scored for accuracy by default: required fields with a closed set of values."""
    props = schema.get("properties", {})
    return [f for f in schema.get("required", []) if "enum" in props.get(f, {}) or "const" in props.get(f, {})]
