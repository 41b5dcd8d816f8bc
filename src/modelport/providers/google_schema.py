"""JSON Schema (as OpenAI tools and ``json_schema`` response formats carry it) to Gemini's ``Schema``.

Gemini's Schema is an OpenAPI 3.0 subset (https://ai.google.dev/api/caching#Schema); JSON-Schema keys
outside it are rejected upstream ("Unknown name ... Cannot find field"), so they are dropped here.
"""

from __future__ import annotations

from typing import Any

_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
    "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema as Gemini's Schema: local ``$ref``s (into the root's ``$defs`` or ``definitions``)
    inlined, ``["x", "null"]`` types as ``nullable``, ``oneOf``/``const`` as ``anyOf``/``enum``, types in
    upper case (the proto enum)."""
    return _convert(schema, schema.get("$defs") or schema.get("definitions") or {})


def _convert(node: dict[str, Any], definitions: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    if depth > 32:
        raise ValueError("JSON schema is nested too deeply (recursive $ref?).")
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = definitions.get(ref.rsplit("/", 1)[-1])
        if target is None:
            raise ValueError(f"Unresolvable $ref {ref!r} in JSON schema.")
        return _convert(target, definitions, depth + 1)
    node = {**node}
    if "oneOf" in node and "anyOf" not in node:
        node["anyOf"] = node.pop("oneOf")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            node["anyOf"] = [{"type": k} for k in kinds]
    if isinstance(kind, str):
        out["type"] = kind.upper()
    for key, value in node.items():
        if key not in _KEYS or key == "type" or value is None:
            continue
        if key == "properties":
            value = {name: _convert(sub, definitions, depth + 1) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            value = _convert(value, definitions, depth + 1)
        elif key == "anyOf":
            value = [_convert(sub, definitions, depth + 1) for sub in value]
        elif key == "format" and value not in _FORMATS:
            continue
        out[key] = value
    return out
