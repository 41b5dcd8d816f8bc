"""The control plane's OpenAPI 3.1 document, built from the route table (served at ``/openapi.json``).

Every path, parameter, request body and reply schema comes from the ``Route`` objects the dispatcher
uses, so the document describes exactly what runs.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .router import Route

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}},
            "required": ["message", "type", "code"],
        }
    },
    "required": ["error"],
}
_ERRORS = {
    "BadRequest": "The request is invalid; the message names the field and what it must be.",
    "Unauthorized": "No gateway API key, or one that is invalid, revoked or expired.",
    "Forbidden": "The gateway API key lacks the scope this route needs.",
    "NotFound": "No record has that id or slug.",
    "Conflict": "The slug is taken, or the record is still in use.",
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_STATUS = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404", "Conflict": "409"}


def openapi_document(routes: Iterable[Route], version: str = "1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ModelPort control plane",
            "version": version,
            "description": "Portkey-compatible admin API: gateway API keys, stored provider credentials "
                           "(virtual keys, integrations, providers) and saved configs.",
        },
        "servers": [{"url": "/v1"}],
        "security": [{"PortkeyApiKey": []}, {"GatewayBearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "PortkeyApiKey": {"type": "apiKey", "in": "header", "name": "x-portkey-api-key"},
                "GatewayBearer": {"type": "http", "scheme": "bearer", "description": "A gateway key (mp-...)."},
            },
            "schemas": {"Error": _ERROR},
            "responses": {name: {"description": text, "content": {"application/json": {"schema": _ERROR_REF}}}
                          for name, text in _ERRORS.items()},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    errors = ["Unauthorized", "Forbidden"]
    if route.body is not None or route.query is not None:
        errors.insert(0, "BadRequest")
    if route.params:
        errors.append("NotFound")
    if route.method != "GET":
        errors.append("Conflict")
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "x-required-scope": route.scope,
        **({"x-own-records-scope": route.own_scope} if route.own_scope else {}),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": route.response}}},
            **{_STATUS[name]: {"$ref": f"#/components/responses/{name}"} for name in errors},
        },
    }
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.params]
    if route.query is not None:
        parameters += [
            {"name": f.name, "in": "query", "required": False, "schema": f.json_schema()}
            for f in route.query.fields if not f.ignored
        ]  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.body.json_schema()}},
        }
    return operation


def _operation_id(route: Route) -> str:
    return re.sub(r"[^a-z0-9]+", "_", f"{route.method} {route.path}".lower()).strip("_")
