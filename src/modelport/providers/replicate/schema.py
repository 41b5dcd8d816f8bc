"""A Replicate model's inputs, as its published OpenAPI schema declares them, read once and cached.

A model's version carries ``openapi_schema`` (Cog's document); its inputs are
``components.schemas.Input.properties`` (research/replicate.md §1). ``owner/name`` is read from
``GET /models/{owner}/{name}`` (``latest_version``), ``owner/name:version`` from
``GET /models/{owner}/{name}/versions/{version}``. An enum input (``aspect_ratio``) is usually declared
by reference: ``allOf: [{"$ref": "#/components/schemas/aspect_ratio"}]``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from ..base import StepAnswer, Steps, Target, UpstreamRequest

SCHEMA_TTL = 300.0  # seconds: a model's latest version changes when its owner pushes, rarely mid-session
SCHEMA_LIMIT = 4 * 1024 * 1024  # a model document (its README is not in it) is tens of KB
_KNOWN_LIMIT = 1024  # models remembered per worker; the memory is simply emptied past it
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """``owner/name`` or ``owner/name:version``; ``version`` None for the model's latest."""

    owner: str
    name: str
    version: str | None = None

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def parse(cls, model: Any) -> "ModelRef":
        if not isinstance(model, str) or not model:
            raise ValueError("'model' must name a Replicate model: 'owner/name' or 'owner/name:version'.")
        named, _, version = model.partition(":")
        owner, _, name = named.partition("/")
        if _VERSION_ID.match(model):
            raise ValueError(f"'model' is the bare version id {model[:12]}…, which names no model whose input schema "
                             "the gateway can read; name it as 'owner/name:version'.")
        if not (_NAME.match(owner) and _NAME.match(name)) or (version and not _NAME.match(version)):
            raise ValueError(f"'model' {model[:200]!r} is not a Replicate model: use 'owner/name' or 'owner/name:version'.")
        return cls(owner, name, version or None)


@dataclass(frozen=True, slots=True)
class InputSchema:
    """The inputs a model declares (``properties``), with the document's other schemas for references."""

    model: str
    properties: Mapping[str, Any]
    schemas: Mapping[str, Any]

    def declares(self, name: str) -> bool:
        return name in self.properties

    def kind(self, name: str) -> str | None:
        """The JSON type of an input ("string", "integer", "array", ...), references followed."""
        return self._resolved(name).get("type")

    def choices(self, name: str) -> list[Any] | None:
        """The values an enum input allows, references followed; None when it is not an enum."""
        found = self._resolved(name).get("enum")
        return list(found) if isinstance(found, list) else None

    def names(self) -> str:
        return ", ".join(sorted(self.properties)) or "none"

    def _resolved(self, name: str) -> dict[str, Any]:
        declared = self.properties.get(name)
        if not isinstance(declared, dict):
            return {}
        merged = {key: value for key, value in declared.items() if key not in ("allOf", "$ref")}
        for part in [declared, *(declared.get("allOf") or [])]:
            ref = part.get("$ref") if isinstance(part, dict) else None
            target = self.schemas.get(ref.rsplit("/", 1)[-1]) if isinstance(ref, str) and ref.startswith("#/components/schemas/") else None
            if isinstance(target, dict):
                merged = {**target, **merged}
        return merged


class SchemaCache:
    """Models' input schemas by account and model reference, for ``SCHEMA_TTL`` seconds. Keyed by the
    credential too: a private model is visible to its own account only."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], tuple[float, InputSchema]] = {}

    async def read(self, ref: ModelRef, target: Target, steps: Steps) -> InputSchema | StepAnswer:
        """The schema, or Replicate's answer when it refused (a 404 for an unknown model) to relay as is."""
        key = (target.base_url, hashlib.sha256((target.api_key or "").encode()).hexdigest()[:16],
               f"{ref.model}:{ref.version or ''}")
        known = self._known.get(key)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        path = f"/models/{ref.owner}/{ref.name}" + (f"/versions/{ref.version}" if ref.version else "")
        answer = await steps.fetch(UpstreamRequest("GET", target.base_url + path, {"accept": "application/json"}, None),
                                   SCHEMA_LIMIT)
        if answer.status != 200:
            return answer
        schema = _input_schema(ref, answer.body)
        if len(self._known) >= _KNOWN_LIMIT:
            self._known.clear()
        self._known[key] = (time.monotonic() + SCHEMA_TTL, schema)
        return schema


def _input_schema(ref: ModelRef, body: bytes) -> InputSchema:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    version = (document.get("latest_version") if ref.version is None else document) if isinstance(document, dict) else None
    openapi = version.get("openapi_schema") if isinstance(version, dict) else None
    schemas = (openapi.get("components") or {}).get("schemas") if isinstance(openapi, dict) else None
    inputs = schemas.get("Input") if isinstance(schemas, dict) else None
    properties = inputs.get("properties") if isinstance(inputs, dict) else None
    if not isinstance(properties, dict):
        raise ValueError(f"Replicate model {ref.model} publishes no input schema (its version's openapi_schema has no "
                         "components.schemas.Input), so the gateway cannot tell which inputs it takes; run it through "
                         f"the proxy route instead: POST /v1/models/{ref.model}/predictions.")
    return InputSchema(ref.model, properties, schemas)
