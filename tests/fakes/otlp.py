"""A fake OpenTelemetry collector: OTLP/HTTP JSON on ``POST /v1/traces``, as strict as the spec.

It refuses (400, as a collector does) what the OTLP/JSON encoding does not allow (opentelemetry-proto,
docs/specification.md "JSON Protobuf Encoding"): a content type other than application/json, ids that
are not lower-case hex of the right length (or are all zeros), times or 64-bit integers that are not
decimal strings, a span kind or status code that is not one of the enum's integers, an attribute value
that is not exactly one of the AnyValue kinds. Accepted requests are recorded, raw bytes and headers
too, and answered with an empty ExportTraceServiceResponse. ``status`` scripts a failure answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

OTLP = web.AppKey("otlp", "CollectorState")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_DECIMAL = re.compile(r"[0-9]+")
_VALUE_KINDS = {"stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue"}


@dataclass
class CollectorState:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)  # every accepted span, its resource's attributes under "resource"
    status: int = 200  # answered instead of accepting, when not 200

    def span_attributes(self, span: dict[str, Any]) -> dict[str, Any]:
        return attributes(span["attributes"])


def attributes(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP KeyValues → {key: python value} (intValue's decimal string as an int)."""
    found = {}
    for entry in entries:
        (kind, value), = entry["value"].items()
        found[entry["key"]] = int(value) if kind == "intValue" else value
    return found


def _check_value(value: Any, where: str) -> None:
    if not isinstance(value, dict) or len(value) != 1 or not set(value) <= _VALUE_KINDS:
        raise ValueError(f"{where}: AnyValue must hold exactly one kind, got {value!r}")
    (kind, inner), = value.items()
    if kind == "intValue" and not (isinstance(inner, str) and re.fullmatch(r"-?[0-9]+", inner)):
        raise ValueError(f"{where}: intValue must be a decimal string, got {inner!r}")
    if kind == "stringValue" and not isinstance(inner, str):
        raise ValueError(f"{where}: stringValue must be a string")


def _check_span(span: dict[str, Any], where: str) -> None:
    if not _TRACE_ID.fullmatch(span.get("traceId", "")) or not span["traceId"].strip("0"):
        raise ValueError(f"{where}: traceId must be 32 lower-case hex digits, not all zero")
    if not _SPAN_ID.fullmatch(span.get("spanId", "")) or not span["spanId"].strip("0"):
        raise ValueError(f"{where}: spanId must be 16 lower-case hex digits, not all zero")
    if "parentSpanId" in span and not _SPAN_ID.fullmatch(span["parentSpanId"]):
        raise ValueError(f"{where}: parentSpanId must be 16 lower-case hex digits")
    if not isinstance(span.get("name"), str) or not span["name"]:
        raise ValueError(f"{where}: name is required")
    if span.get("kind") not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"{where}: kind must be a SpanKind integer")
    times = [span.get("startTimeUnixNano"), span.get("endTimeUnixNano")]
    if not all(isinstance(t, str) and _DECIMAL.fullmatch(t) for t in times) or int(times[1]) < int(times[0]):
        raise ValueError(f"{where}: start/endTimeUnixNano must be decimal strings, end not before start")
    for position, entry in enumerate(span.get("attributes", [])):
        if not isinstance(entry.get("key"), str):
            raise ValueError(f"{where}.attributes[{position}]: key must be a string")
        _check_value(entry.get("value"), f"{where}.attributes[{position}]")
    if "status" in span and span["status"].get("code") not in (0, 1, 2):
        raise ValueError(f"{where}: status.code must be a StatusCode integer")


def make_collector_app() -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    state = app[OTLP] = CollectorState()

    async def traces(request: web.Request) -> web.Response:
        if state.status != 200:
            return web.json_response({"code": 14, "message": "scripted failure"}, status=state.status)
        if request.content_type != "application/json":
            return web.json_response({"message": f"unsupported content type {request.content_type}"}, status=415)
        raw = await request.read()
        try:
            body = orjson.loads(raw)
            accepted = []
            for r, resource_spans in enumerate(body["resourceSpans"]):
                resource = attributes(resource_spans["resource"]["attributes"])
                for s, scope_spans in enumerate(resource_spans["scopeSpans"]):
                    for n, span in enumerate(scope_spans["spans"]):
                        _check_span(span, f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]")
                        accepted.append({**span, "resource": resource, "scope": scope_spans.get("scope", {})})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return web.json_response({"code": 3, "message": f"invalid OTLP/JSON: {exc}"}, status=400)
        state.bodies.append(raw)
        state.headers.append({name.lower(): value for name, value in request.headers.items()})
        state.spans.extend(accepted)
        return web.json_response({"partialSuccess": {}})

    app.router.add_post("/v1/traces", traces)
    return app
