"""Request fields declared once: each ``Field`` both checks a value and describes it in JSON Schema.

The control plane validates request bodies and query strings with these declarations and builds its
OpenAPI document from the same objects, so the documented shape and the enforced shape cannot drift.

Error messages name the field and say what it must be, and never repeat the value sent: a provider
key pasted into the wrong field must not come back in an error body or a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from ..errors import BadRequest

Convert = Callable[[Any, str], Any]


class Invalid(BadRequest):
    code = "invalid_field"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    schema: dict[str, Any]
    convert: Convert
    required: bool = False
    nullable: bool = False
    ignored: bool = False  # accepted for Portkey compatibility, then dropped (workspace_id and the like)

    def json_schema(self) -> dict[str, Any]:
        schema = dict(self.schema)
        if self.nullable:
            kind = schema.get("type")
            if kind is not None:
                schema["type"] = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
            else:
                schema = {"anyOf": [schema, {"type": "null"}]}
        return schema


@dataclass(frozen=True, slots=True)
class Shape:
    """The fields of one JSON body (unknown keys are refused) or one query string (they are skipped)."""

    fields: tuple[Field, ...]
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def parse_body(self, raw: Any) -> dict[str, Any]:
        """The given fields, checked and converted; absent fields are absent (updates rely on it)."""
        if not isinstance(raw, dict):
            raise Invalid("the request body must be a JSON object")
        unknown = sorted(name for name in raw if name not in self.by_name)
        if unknown:
            accepted = ", ".join(f.name for f in self.fields if not f.ignored)
            raise Invalid(f"unknown field(s) {', '.join(map(shown, unknown))}; accepted fields: {accepted}")
        return self._parse(raw)

    def parse_query(self, raw: Mapping[str, str]) -> dict[str, Any]:
        return self._parse({name: value for name, value in raw.items() if name in self.by_name})

    def _parse(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        missing = [f.name for f in self.fields if f.required and raw.get(f.name) is None]
        if missing:
            raise Invalid(f"missing required field(s): {', '.join(missing)}")
        parsed: dict[str, Any] = {}
        for name, value in raw.items():
            spec = self.by_name[name]
            if spec.ignored:
                continue
            if value is None:
                if not spec.nullable:
                    raise Invalid(f"{name} must not be null")
                parsed[name] = None
            else:
                parsed[name] = spec.convert(value, name)
        return parsed

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }


_NAME_LIKE = re.compile(r"[A-Za-z][A-Za-z_.]{0,47}")


def shown(name: Any) -> str:
    """A caller-sent name, quoted, if it looks like a field or scope name; otherwise a placeholder.

    Names are the caller's text too: a secret pasted as a key must not come back. Field and scope names
    are letters, '_' and '.'; tokens nearly always hold digits or '-', so those are not repeated.
    """
    return repr(name) if isinstance(name, str) and _NAME_LIKE.fullmatch(name) else "(a name not shown)"


# -- field constructors ----------------------------------------------------------------------------
def text(name: str, description: str = "", *, required: bool = False, nullable: bool = False,
         max_length: int = 1000, pattern: Any = None, enum: Iterable[str] | None = None) -> Field:
    choices = tuple(enum) if enum is not None else None
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if pattern is not None:
        schema["pattern"] = pattern.pattern
    if choices is not None:
        schema = {"type": "string", "enum": list(choices)}

    def convert(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{where} must be a string")
        if choices is not None:
            if value not in choices:
                raise Invalid(f"{where} must be one of: {', '.join(choices)}")
            return value
        if not value.strip() and required:
            raise Invalid(f"{where} must not be empty")
        if len(value) > max_length:
            raise Invalid(f"{where} must be at most {max_length} characters")
        if pattern is not None and not pattern.match(value):
            raise Invalid(f"{where} must match {pattern.pattern}")
        return value

    return Field(name, _described(schema, description), convert, required, nullable)


def secret(name: str, description: str, *, required: bool = False) -> Field:
    """A credential: accepted, never returned (``writeOnly``), never echoed in an error."""

    def convert(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"{where} must be a non-empty string")
        if len(value) > 16_384:
            raise Invalid(f"{where} is too long (at most 16384 characters)")
        return value.strip()

    schema = {"type": "string", "writeOnly": True, "maxLength": 16_384}
    return Field(name, _described(schema, description), convert, required)


def integer(name: str, description: str = "", *, minimum: int = 0, maximum: int = 2**31,
            default: int | None = None) -> Field:
    """An integer; query strings give it as decimal text."""

    def convert(value: Any, where: str) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{where} must be an integer")
        if not minimum <= value <= maximum:
            raise Invalid(f"{where} must be between {minimum} and {maximum}")
        return value

    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return Field(name, _described(schema, description), convert)


def flag(name: str, description: str = "") -> Field:
    """A boolean; Portkey writes some flags as 0/1 (``is_default``), so both spellings are accepted."""

    def convert(value: Any, where: str) -> bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise Invalid(f"{where} must be true, false, 0 or 1")

    schema = {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]}
    return Field(name, _described(schema, description), convert)


def mapping(name: str, description: str = "", *, required: bool = False, nullable: bool = False) -> Field:
    def convert(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"{where} must be a JSON object")
        return value

    return Field(name, _described({"type": "object"}, description), convert, required, nullable)


def strings(name: str, description: str = "", *, max_items: int = 1000) -> Field:
    def convert(value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise Invalid(f"{where} must be a list of non-empty strings")
        if len(value) > max_items:
            raise Invalid(f"{where} may hold at most {max_items} entries")
        return list(dict.fromkeys(value))

    schema = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": max_items}
    return Field(name, _described(schema, description), convert)


def moment(name: str, description: str = "", *, nullable: bool = True) -> Field:
    """An ISO 8601 time such as ``2030-01-01T00:00:00Z``; one without a zone is taken as UTC."""

    def convert(value: Any, where: str) -> datetime:
        if not isinstance(value, str):
            raise Invalid(f"{where} must be an ISO 8601 date-time string, e.g. 2030-01-01T00:00:00Z")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(f"{where} must be an ISO 8601 date-time string, e.g. 2030-01-01T00:00:00Z") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)

    return Field(name, _described({"type": "string", "format": "date-time"}, description), convert, nullable=nullable)


def url(name: str, description: str = "", *, nullable: bool = True) -> Field:
    """An absolute http(s) URL, well-formed here; where it may point is the SSRF rules' job (hosts.py)."""

    def convert(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{where} must be a string")
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"{where} must be an absolute http(s) URL, e.g. https://api.example.com/v1")
        return value.strip().rstrip("/")

    schema = {"type": "string", "format": "uri", "pattern": "^https?://"}
    return Field(name, _described(schema, description), convert, nullable=nullable)


def ignored(name: str) -> Field:
    """A Portkey field with no meaning for a single-tenant gateway; accepted so SDK calls work."""
    schema = {"description": "Accepted for Portkey compatibility and ignored."}
    return Field(name, schema, lambda value, where: value, nullable=True, ignored=True)


def unsupported(name: str, reason: str) -> Field:
    """A Portkey field ModelPort cannot honour yet: null is accepted, a value is a 400 that says why.

    Refusing beats dropping: a limit or expiry silently ignored would look enforced and not be.
    """

    def convert(value: Any, where: str) -> Any:
        raise Invalid(f"{where} is not supported: {reason}")

    return Field(name, {"description": f"Not supported yet: {reason} Only null is accepted."}, convert, nullable=True)


def choice(value: Any, where: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise Invalid(f"{where} must be one of: {', '.join(options)}")
    return value


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description} if description else schema


# -- Portkey's limit objects (openapi.yaml components UsageLimits and RateLimits) ---------------------
_RATE_LIMIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["requests", "tokens"]},
        "unit": {"type": "string", "enum": ["rpm", "rph", "rpd", "rpw"]},
        "value": {"type": "integer", "minimum": 0},
    },
    "required": ["type", "unit", "value"],
    "additionalProperties": False,
}
RATE_LIMITS_SCHEMA: dict[str, Any] = {"type": "array", "items": _RATE_LIMIT_SCHEMA}


_USAGE_LIMIT_KEYS: dict[str, Any] = {
    "credit_limit": {"type": "number", "minimum": 0},
    "type": {"type": "string", "enum": ["cost", "tokens"]},
    "alert_threshold": {"type": "number", "minimum": 0},
    "periodic_reset": {"type": "string", "enum": ["monthly", "weekly"]},
    "periodic_reset_days": {"type": "integer", "minimum": 1, "maximum": 3650},
}
USAGE_LIMITS_SCHEMA: dict[str, Any] = {"type": "object", "properties": _USAGE_LIMIT_KEYS, "additionalProperties": False}


def usage_limits() -> Field:
    """Portkey's UsageLimits: one budget, in USD (``cost``, the default) or tokens, enforced per period."""

    def convert(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"{where} must be a JSON object")
        for key, item in value.items():
            spec = _USAGE_LIMIT_KEYS.get(key)
            if spec is None:
                raise Invalid(f"{where} has unknown key {shown(key)}; known keys: {', '.join(_USAGE_LIMIT_KEYS)}")
            _check_simple(item, spec, f"{where}.{key}")
        if "periodic_reset" in value and "periodic_reset_days" in value:
            raise Invalid(f"{where}: give periodic_reset or periodic_reset_days, not both")
        if "credit_limit" not in value:
            raise Invalid(f"{where}.credit_limit is required (0 disables the budget)")
        if value.get("alert_threshold", 0) > value["credit_limit"] > 0:
            raise Invalid(f"{where}.alert_threshold must not exceed credit_limit")
        return value

    description = ("One budget (Portkey UsageLimits): credit_limit in USD (type cost, the default) or tokens, over "
                   "a calendar month or ISO week (periodic_reset), a run of periodic_reset_days days, or for good; "
                   "reserved at admission and settled from the response. 0 disables it.")
    return Field("usage_limits", {**USAGE_LIMITS_SCHEMA, "description": description}, convert, nullable=True)


def rate_limits(name: str = "rate_limits") -> Field:
    """A list of ``{type, unit, value}``; one object alone is accepted and stored as a list of one."""

    def convert(value: Any, where: str) -> list[dict[str, Any]]:
        rules = [value] if isinstance(value, dict) else value
        if not isinstance(rules, list):
            raise Invalid(f"{where} must be a list of {{type, unit, value}} objects")
        for index, rule in enumerate(rules):
            here = f"{where}[{index}]"
            if not isinstance(rule, dict):
                raise Invalid(f"{here} must be a JSON object")
            missing = [key for key in ("type", "unit", "value") if key not in rule]
            unknown = [key for key in rule if key not in _RATE_LIMIT_SCHEMA["properties"]]
            if missing or unknown:
                raise Invalid(f"{here} must have exactly the keys type, unit and value")
            for key, spec in _RATE_LIMIT_SCHEMA["properties"].items():
                _check_simple(rule[key], spec, f"{here}.{key}")
        return rules

    description = ("Request or token rate limits (Portkey RateLimits), enforced per UTC-aligned window (rpm, rph, "
                   "rpd, rpw); a value of 0 disables a rule; one object is taken as a list of one. A token limit "
                   "reserves each request's most (size and max tokens) and settles to its real usage.")
    schema = {"anyOf": [RATE_LIMITS_SCHEMA, _RATE_LIMIT_SCHEMA], "description": description}
    return Field(name, schema, convert, nullable=True)


def _check_simple(value: Any, spec: Mapping[str, Any], where: str) -> None:
    kind = spec["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise Invalid(f"{where} must be a string")
        if "enum" in spec:
            choice(value, where, tuple(spec["enum"]))
        elif spec.get("format") == "date-time":
            moment(where).convert(value, where)
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer" and not (numeric and float(value).is_integer()):
        raise Invalid(f"{where} must be an integer")
    if not numeric:
        raise Invalid(f"{where} must be a number")
    if value < spec.get("minimum", value) or value > spec.get("maximum", value):
        raise Invalid(f"{where} must be between {spec.get('minimum', '-inf')} and {spec.get('maximum', 'inf')}")
