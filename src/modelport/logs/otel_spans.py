"""OpenTelemetry spans of a log record, encoded straight to OTLP/JSON bytes (``encoded_spans``).

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


# -- span building: straight to OTLP/JSON bytes ------------------------------------------------------
# Through dicts and orjson the spans of a request cost ~15 µs on the writer's lane (half of enriching
# it). Almost every attribute repeats from request to request (method, status, provider, model, host),
# so each span's repeating attributes are encoded once per combination and the rest is formatted in.
def encoded_spans(record: LogRecord, prepared: Prepared | None,
                  host_of: Callable[[str | None], SpanHost | None] = lambda slug: None) -> list[bytes]:
    """The request's SERVER span and a CLIENT span per attempt, each an encoded OTLP/JSON ``Span``.
    ``prepared`` is the enriched record (None with logging off: then no tokens, path or error
    messages, which only enrichment reads and scrubs)."""
    row = prepared.row if prepared is not None else None
    trace_id, derived = otel_trace_id(record.trace_id)
    random_half, log_id = _log_id_parts(record.id)
    server_id = otel_span_id(record.span_id) if record.span_id else "%016x" % random_half
    failed = not record.status or record.status >= 500  # HTTP semconv: a server's 4xx is the caller's error
    attributes = [_server_attributes(record.method, record.status, record.provider, record.cache_status,
                                     record.retry_count, failed), log_id]
    if row is not None:  # a unified endpoint's path is a route, repeated; a proxied one may hold ids
        attributes.append(encode_attribute("url.path", _capped(row["path"]), cached=record.endpoint in OPERATIONS))
    if derived:
        attributes.append(encode_attribute("portkey.trace_id", record.trace_id, cached=False))
    status = _error_status(row["error"] if row is not None else None) if failed else b""
    parent = otel_span_id(record.parent_span_id) if record.parent_span_id else None
    start = _nanos(record.created_at)
    name = record.span_name or _server_name(record)  # a span name is at most 128 characters (headers.py)
    spans = [_span(trace_id, server_id, parent, name, SPAN_KIND_SERVER, start, record.latency_ms, attributes, status)]
    attempts = record.attempts
    errors: list[str | None] | None = None
    for position, attempt in enumerate(attempts):
        tried_in_vain = attempt.error is not None or attempt.status is None or attempt.status >= 400  # a client's 4xx too
        if tried_in_vain and errors is None:
            errors = _attempt_errors(record, row)
        span_id = "%016x" % (((random_half ^ ((position + 1) * _GOLDEN)) & _SPAN_ID_MASK) or 1)
        error = errors[position] if tried_in_vain and errors else None
        spans.append(_attempt_span(record, prepared if position == len(attempts) - 1 else None, attempt, tried_in_vain,
                                   trace_id, span_id, server_id, error, host_of))
    return spans


@functools.lru_cache(maxsize=1024)
def _server_attributes(method: str, status: int, provider: str | None, cache_status: str, retry_count: int,
                       failed: bool) -> bytes:
    """The attributes every request of this shape shares, encoded once."""
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
    return b",".join(parts)


def _attempt_span(record: LogRecord, answered: Prepared | None, attempt: Attempt, failed: bool, trace_id: str,
                  span_id: str, parent_id: str, error: str | None, host_of: Callable[[str | None], SpanHost | None]
                  ) -> bytes:
    """One attempt: GenAI attributes; the usage on the attempt whose answer was relayed (``answered``)."""
    name, shared = _attempt_attributes(record.method, record.endpoint, _capped(record.model), attempt.provider,
                                       host_of(attempt.slug), attempt.status, attempt.retry, attempt.index, failed)
    attributes = [shared]
    if answered is not None:
        row = answered.row
        if answered.response_model:
            attributes.append(encode_attribute("gen_ai.response.model", _capped(answered.response_model)))
        if row.get("input_tokens") is not None:
            attributes.append(b'{"key":"gen_ai.usage.input_tokens","value":{"intValue":"%d"}}' % row["input_tokens"])
        if row.get("output_tokens") is not None:
            attributes.append(b'{"key":"gen_ai.usage.output_tokens","value":{"intValue":"%d"}}' % row["output_tokens"])
    return _span(trace_id, span_id, parent_id, name, SPAN_KIND_CLIENT, _nanos(attempt.started_at), attempt.latency_ms,
                 attributes, _error_status(error) if failed else b"")


@functools.lru_cache(maxsize=1024)
def _attempt_attributes(method: str, endpoint: str, model: str | None, provider: str, host: SpanHost | None,
                        status: int | None, retry: int, target: str, failed: bool) -> tuple[str, bytes]:
    """The span name and the attributes every attempt of this shape shares, encoded once."""
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
    return name, b",".join(parts)


def _span(trace_id: str, span_id: str, parent_id: str | None, name: str, kind: int, start: int, latency_ms: float,
          attributes: list[bytes], status: bytes) -> bytes:
    parent = b'"parentSpanId":"%s",' % parent_id.encode() if parent_id else b""
    return b'{"traceId":"%s","spanId":"%s",%s"name":%s,"kind":%d,"startTimeUnixNano":"%d","endTimeUnixNano":"%d",' \
           b'"attributes":[%s]%s}' % (trace_id.encode(), span_id.encode(), parent, _json_string(name), kind, start,
                                       start + int(latency_ms * 1e6), b",".join(attributes), status)


def _server_name(record: LogRecord) -> str:
    """``POST /v1/chat/completions`` for a unified endpoint (a route); a proxied path may hold ids, so
    ``GET replicate`` for those, with the path in ``url.path``."""
    if record.endpoint in OPERATIONS or record.endpoint == "models":
        return f"{record.method} {record.path}"
    return f"{record.method} {record.provider}" if record.provider else record.method


def _attempt_errors(record: LogRecord, row: dict[str, Any] | None) -> list[str | None]:
    """Each attempt's error message as stored (scrubbed of the provider's secret); parsed only when
    an attempt failed, and only from an enriched row."""
    none: list[str | None] = [None] * len(record.attempts)
    if row is None or not any(a.error for a in record.attempts):
        return none
    stored = orjson.loads(row["attempts"])
    return [entry.get("error") for entry in stored] if len(stored) == len(record.attempts) else none


def _error_status(message: str | None) -> bytes:
    if message:
        return b',"status":{"code":%d,"message":%s}' % (STATUS_ERROR, orjson.dumps(_capped(message)))
    return b',"status":{"code":%d}' % STATUS_ERROR


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


def _log_id_parts(log_id: str) -> tuple[int, bytes]:
    """The random half of a log id (``log_<time><random>``, 16 hex digits each) and its encoded
    ``modelport.log_id`` attribute. The request's span id without ``x-portkey-span-id`` is that half, so
    the span names its record; its attempts' ids mix it with their position (a golden-ratio multiple, so
    they differ in every digit), unique in the trace as the random half is, at a tenth of a digest's cost."""
    if _LOG_ID.fullmatch(log_id):  # nothing to escape: formatted in as it is
        return int(log_id[-16:], 16) or 1, b'{"key":"modelport.log_id","value":{"stringValue":"%s"}}' % log_id.encode()
    return int(otel_span_id(log_id), 16), encode_attribute("modelport.log_id", log_id, cached=False)


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


_ENCODED: dict[tuple[str, type, Any], bytes] = {}
_ENCODED_LIMIT = 4096  # distinct (key, value) pairs kept: models and hosts are few; ids are never cached
# A model name or path is the caller's to choose: one of a megabyte would be exported (and cached) whole.
VALUE_CAP = 1024


def encode_attribute(key: str, value: str | int | float, cached: bool = True) -> bytes:
    """An encoded OTLP ``KeyValue``; repeated ones from a bounded cache."""
    if cached:
        known = _ENCODED.get((key, type(value), value))
        if known is not None:
            return known
    if isinstance(value, int):
        encoded = b'{"key":"%s","value":{"intValue":"%d"}}' % (key.encode(), value)  # int64: a decimal string
    elif isinstance(value, float):
        encoded = orjson.dumps({"key": key, "value": {"doubleValue": value}})
    else:
        encoded = b'{"key":"%s","value":{"stringValue":%s}}' % (key.encode(), orjson.dumps(value))
    if cached and len(_ENCODED) < _ENCODED_LIMIT:
        _ENCODED[(key, type(value), value)] = encoded
    return encoded


def _capped(value: str | None) -> str | None:
    return value[:VALUE_CAP] + "…" if value is not None and len(value) > VALUE_CAP else value


def _json_string(text: str) -> bytes:
    return _NAMES.get(text) or _remember_name(text)


_NAMES: dict[str, bytes] = {}


def _remember_name(text: str) -> bytes:
    encoded = orjson.dumps(text)
    if len(_NAMES) < _ENCODED_LIMIT:
        _NAMES[text] = encoded
    return encoded
