"""OpenTelemetry spans of a log record, encoded straight to OTLP/JSON text (``encoded_spans``).

A SERVER span for the request and a CLIENT span per ``Attempt``, with the HTTP and GenAI semantic
conventions of semconv 1.37.0 (GenAI: Development). OTLP/JSON (opentelemetry-proto, docs/specification.md):
ids in lower-case hex, 64-bit integers as decimal strings, enums as integers. Pure functions: the
exporter (logs/otel.py) calls them on the log writer's lane.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from hashlib import blake2b
from typing import Any

import orjson

from .enrich import Prepared
from ..log_record import Attempt, LogRecord

SEMCONV_VERSION = "1.37.0"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_ERROR = 2
# gen_ai.operation.name of the unified endpoints; proxied requests have none.
OPERATIONS = {"chat": "chat", "messages": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# gen_ai.provider.name's well-known values where one names the provider; others keep ModelPort's id.
PROVIDER_NAMES = {"azure-openai": "azure.ai.openai", "google": "gcp.gemini", "mistral-ai": "mistral_ai",
                  "x-ai": "x_ai", "perplexity-ai": "perplexity"}
_HEX = re.compile(r"[0-9a-fA-F]+")
_LOG_ID = re.compile(r"log_[0-9a-f]{32}")
_GOLDEN, _SPAN_ID_MASK = 0x9E3779B97F4A7C15, 0xFFFFFFFFFFFFFFFF

SpanHost = tuple[str, int | None]


# -- span building: straight to OTLP/JSON text ------------------------------------------------------
# Through dicts and orjson the spans of a request cost ~15 µs on the writer's lane (half of enriching
# it). Almost every attribute repeats from request to request (method, status, provider, model, host,
# a route's path), so each span's repeating attributes are encoded once per combination, and what
# varies (ids, times, tokens) is formatted into one f-string a span: an f-string builds its text in
# one pass, where bytes ``%`` formatting and an ``encode()`` per id cost a third of the span
# (bench/README.md, "OpenTelemetry on the Replicate shape"). Spans stay ``str`` until the exporter
# encodes a whole request body at once.
def encoded_spans(record: LogRecord, prepared: Prepared | None,
                  host_of: Callable[[str | None], SpanHost | None] = lambda slug: None) -> list[str]:
    """The request's SERVER span and a CLIENT span per attempt, each an OTLP/JSON ``Span``. ``prepared`` is
    the enriched record (None with logging off: then no tokens, path or error messages, which only
    enrichment reads and scrubs)."""
    row = prepared.row if prepared is not None else None
    trace_id, derived = otel_trace_id(record.trace_id)
    random_half, log_id = _log_id_parts(record.id)
    server_id = otel_span_id(record.span_id) if record.span_id else f"{random_half:016x}"
    status = record.status
    failed = not status or status >= 500  # HTTP semconv: a server's 4xx is the caller's error
    path = None
    if row is not None:  # a route's path repeats; a proxied one may hold ids: cached only while there is room
        path = _capped(row["path"])
    name, attributes = _server_attributes(record.method, record.endpoint, record.path, status, record.provider,
                                          record.cache_status, record.retry_count, failed, path)
    if derived:
        attributes += "," + encode_attribute("portkey.trace_id", record.trace_id, cached=False)
    error = (_error_status(row["error"] if row is not None else None) if failed else "")
    parent = f'"parentSpanId":"{otel_span_id(record.parent_span_id)}",' if record.parent_span_id else ""
    start = int(record.created_at * 1e9)
    if record.span_name:  # at most 128 characters (headers.py)
        name = _json_string(record.span_name)
    spans = [f'{{"traceId":"{trace_id}","spanId":"{server_id}",{parent}"name":{name},"kind":{SPAN_KIND_SERVER},'
             f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{start + int(record.latency_ms * 1e6)}",'
             f'"attributes":[{attributes},{log_id}]{error}}}']
    attempts = record.attempts
    last = len(attempts) - 1
    errors: list[str | None] | None = None
    for position, attempt in enumerate(attempts):
        code = attempt.status
        tried_in_vain = attempt.error is not None or code is None or code >= 400  # a client's 4xx too
        if tried_in_vain and errors is None:
            errors = _attempt_errors(record, row)
        span_id = f"{((random_half ^ ((position + 1) * _GOLDEN)) & _SPAN_ID_MASK) or 1:016x}"
        name, shared = _attempt_attributes(record.method, record.endpoint, _capped(record.model), attempt.provider,
                                           host_of(attempt.slug), code, attempt.retry, attempt.index, tried_in_vain)
        if position == last and prepared is not None:  # the attempt whose answer was relayed: its usage
            shared += _usage_attributes(prepared)
        error = _error_status(errors[position] if errors else None) if tried_in_vain else ""
        begin = int(attempt.started_at * 1e9)
        spans.append(f'{{"traceId":"{trace_id}","spanId":"{span_id}","parentSpanId":"{server_id}","name":{name},'
                     f'"kind":{SPAN_KIND_CLIENT},"startTimeUnixNano":"{begin}",'
                     f'"endTimeUnixNano":"{begin + int(attempt.latency_ms * 1e6)}","attributes":[{shared}]{error}}}')
    return spans


@functools.lru_cache(maxsize=1024)
def _server_attributes(method: str, endpoint: str, route: str, status: int, provider: str | None, cache_status: str,
                       retry_count: int, failed: bool, path: str | None) -> tuple[str, str]:
    """The span name (JSON-encoded) and the attributes every request of this shape shares, encoded once
    (``url.path`` too, the enriched ``route`` with any secret scrubbed: a route's path repeats, and so
    does most of what a proxy serves, e.g. Replicate's ``/v1/predictions``)."""
    parts = [encode_attribute("http.request.method", method)]
    if status:
        parts.append(encode_attribute("http.response.status_code", status))
    if provider:
        parts.append(encode_attribute("modelport.provider", provider))
    if cache_status != "DISABLED":
        parts.append(encode_attribute("modelport.cache_status", cache_status))
    if retry_count:
        parts.append(encode_attribute("modelport.retry_count", retry_count))
    if failed:
        parts.append(encode_attribute("error.type", str(status) if status else "_OTHER"))
    if path is not None:
        parts.append(encode_attribute("url.path", path, cached=endpoint in OPERATIONS))
    return _json_text(_server_name(method, endpoint, route, provider)), ",".join(parts)


def _usage_attributes(answered: Prepared) -> str:
    """The answered attempt's response model and token counts, as the enriched row has them."""
    row = answered.row
    found = ""
    if answered.response_model:
        found += "," + encode_attribute("gen_ai.response.model", _capped(answered.response_model))
    given, taken = row.get("input_tokens"), row.get("output_tokens")
    if given is not None:
        found += f',{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"{given:d}"}}}}'
    if taken is not None:
        found += f',{{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"{taken:d}"}}}}'
    return found


@functools.lru_cache(maxsize=1024)
def _attempt_attributes(method: str, endpoint: str, model: str | None, provider: str, host: SpanHost | None,
                        status: int | None, retry: int, target: str, failed: bool) -> tuple[str, str]:
    """The span name (JSON-encoded) and the attributes every attempt of this shape shares, encoded once."""
    operation = OPERATIONS.get(endpoint)
    parts = [encode_attribute("gen_ai.provider.name", PROVIDER_NAMES.get(provider, provider))]
    if operation:
        parts.append(encode_attribute("gen_ai.operation.name", operation))
    if model:
        parts.append(encode_attribute("gen_ai.request.model", model))
    if host is not None:
        parts.append(encode_attribute("server.address", host[0]))
        if host[1] is not None:
            parts.append(encode_attribute("server.port", host[1]))
    if status is not None:
        parts.append(encode_attribute("http.response.status_code", status))
    if retry:
        parts.append(encode_attribute("http.request.resend_count", retry))
    if target:
        parts.append(encode_attribute("modelport.target", target))
    if failed:
        parts.append(encode_attribute("error.type", str(status) if status else "_OTHER"))
    name = f"{operation} {model}" if operation and model else operation or f"{method} {provider}"
    return _json_text(name), ",".join(parts)


def _server_name(method: str, endpoint: str, path: str, provider: str | None) -> str:
    """``POST /v1/chat/completions`` for a unified endpoint (a route); a proxied path may hold ids, so
    ``GET replicate`` for those, with the path in ``url.path``."""
    if endpoint in OPERATIONS or endpoint == "models":
        return f"{method} {path}"
    return f"{method} {provider}" if provider else method


def _attempt_errors(record: LogRecord, row: dict[str, Any] | None) -> list[str | None]:
    """Each attempt's error message as stored (scrubbed of the provider's secret); parsed only when
    an attempt failed, and only from an enriched row."""
    none: list[str | None] = [None] * len(record.attempts)
    if row is None or not any(a.error for a in record.attempts):
        return none
    stored = orjson.loads(row["attempts"])
    return [entry.get("error") for entry in stored] if len(stored) == len(record.attempts) else none


def _error_status(message: str | None) -> str:
    if message:
        return f',"status":{{"code":{STATUS_ERROR},"message":{_json_text(_capped(message))}}}'
    return f',"status":{{"code":{STATUS_ERROR}}}'


def otel_trace_id(trace_id: str) -> tuple[str, bool]:
    """A W3C trace id (32 lower-case hex, not all zeros) for ``x-portkey-trace-id``, and whether it had
    to be derived: Portkey lets callers send any string, so one that is not a trace id becomes the
    BLAKE2b digest of it (the same string, the same trace, on every node) and stays in ``portkey.trace_id``."""
    if len(trace_id) == 32 and _HEX.fullmatch(trace_id) and trace_id.strip("0"):
        return trace_id.lower(), False
    return blake2b(trace_id.encode("utf-8", "replace"), digest_size=16, person=b"mp-trace").hexdigest(), True


def otel_span_id(span_id: str) -> str:
    """A span id (16 lower-case hex) for ``x-portkey-span-id`` / ``x-portkey-parent-span-id``: as sent
    if it is one, else derived the same way every time, so a child naming its parent's string finds it."""
    if len(span_id) == 16 and _HEX.fullmatch(span_id) and span_id.strip("0"):
        return span_id.lower()
    return blake2b(span_id.encode("utf-8", "replace"), digest_size=8, person=b"mp-span").hexdigest()


def _log_id_parts(log_id: str) -> tuple[int, str]:
    """The random half of a log id (``log_<time><random>``, 16 hex digits each) and its encoded
    ``modelport.log_id`` attribute. The request's span id without ``x-portkey-span-id`` is that half, so
    the span names its record; its attempts' ids mix it with their position (a golden-ratio multiple, so
    they differ in every digit), unique in the trace as the random half is, at a tenth of a digest's cost."""
    if _LOG_ID.fullmatch(log_id):  # nothing to escape: formatted in as it is
        return int(log_id[-16:], 16) or 1, f'{{"key":"modelport.log_id","value":{{"stringValue":"{log_id}"}}}}'
    return int(otel_span_id(log_id), 16), encode_attribute("modelport.log_id", log_id, cached=False)


_ENCODED: dict[tuple[str, type, Any], str] = {}
_ENCODED_LIMIT = 4096  # distinct (key, value) pairs kept: models and hosts are few; ids are never cached
# A model name or path is the caller's to choose: one of a megabyte would be exported (and cached) whole.
VALUE_CAP = 1024


def encode_attribute(key: str, value: str | int | float, cached: bool = True) -> str:
    """An encoded OTLP ``KeyValue``; repeated ones from a bounded cache."""
    if cached:
        known = _ENCODED.get((key, type(value), value))
        if known is not None:
            return known
    if isinstance(value, int):
        encoded = f'{{"key":"{key}","value":{{"intValue":"{value:d}"}}}}'  # int64: a decimal string
    elif isinstance(value, float):
        encoded = f'{{"key":"{key}","value":{{"doubleValue":{_json_text(value)}}}}}'
    else:
        encoded = f'{{"key":"{key}","value":{{"stringValue":{_json_text(value)}}}}}'
    if cached and len(_ENCODED) < _ENCODED_LIMIT:
        _ENCODED[(key, type(value), value)] = encoded
    return encoded


def _capped(value: str | None) -> str | None:
    return value[:VALUE_CAP] + "…" if value is not None and len(value) > VALUE_CAP else value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_string(text: str) -> str:
    return _NAMES.get(text) or _remember_name(text)


_NAMES: dict[str, str] = {}


def _remember_name(text: str) -> str:
    encoded = _json_text(text)
    if len(_NAMES) < _ENCODED_LIMIT:
        _NAMES[text] = encoded
    return encoded
