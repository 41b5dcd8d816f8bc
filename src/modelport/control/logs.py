"""``/v1/logs``, ``/v1/logs/{id}``, ``/v1/logs/export``, ``/v1/feedback`` and ``/v1/analytics/summary``.

The shapes are fixed by the logs contract (``/work/briefs/logs-contract.md``); the queries themselves
are the log store's (``store/log_base.py``, ``LogStore``, on ``request.log_store``), which returns rows
already in their wire form. This module checks the query strings and bodies, and turns an export into
a streamed download.

Feedback is Portkey's (docs: "Feedback"; portkey-ai 2.3.4 ``apis/feedback.py``): ``POST /feedback`` takes
one ``{trace_id, value, weight, metadata}`` or a bare list of them, ``PUT /feedback/{id}`` changes one,
and both answer ``{"status", "message", "feedback_ids"}``.
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

import orjson

from ..gateway.auth import Principal
from ..errors import Forbidden, NotFound
from ..logs.analytics import BUCKET_MS, GROUP_COLUMNS, summarize
from ..store import LogFilter, LogStore, Store
from ..store.log_base import DETAIL_EXTRA, MAX_LIMIT, SUMMARY_FIELDS
from .download import Download
from .router import Request, Route
from .schema import Field, Invalid, Shape, integer, mapping, text

METADATA_PREFIX = "metadata."
EXPORT_FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
# A full record carries ``*_encoding`` only when its body is base64, so CSV columns are fixed up front.
FULL_COLUMNS = (*SUMMARY_FIELDS, *DETAIL_EXTRA, "request_body_encoding", "response_body_encoding")
MAX_FEEDBACK_ITEMS = 1000
OWN_TRACE_WAIT_SECONDS = 1.0  # how long feedback from an inference key waits for its request's record
_CHUNK_BYTES = 64 * 1024  # an export goes out in pieces about this size
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# -- query fields ------------------------------------------------------------------------------------
def instant(name: str, description: str) -> Field:
    """A moment given as epoch milliseconds or ISO 8601 (without a zone: UTC); becomes epoch ms."""

    def convert(value: Any, where: str) -> int:
        return epoch_ms(str(value), where)

    schema = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": "^[0-9]+$"}]}
    return Field(name, {**schema, "description": description}, convert)


def epoch_ms(text: str, where: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    if "T" in text:
        # An unencoded '+' in a query string arrives as a space: "...T10:00:00 01:00" meant "+01:00".
        text = text.replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{where} must be epoch milliseconds or ISO 8601, e.g. 2030-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def status_code(name: str) -> Field:
    def convert(value: Any, where: str) -> int | str:
        text = str(value).strip()
        if text in ("error", "success"):
            return text
        if text.isdigit() and 100 <= int(text) <= 599:
            return int(text)
        raise Invalid(f"{where} must be an HTTP status code (100-599), 'error' (>= 400) or 'success' (< 400)")

    schema = {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599}, {"enum": ["error", "success"]}]}
    return Field(name, {**schema, "description": "A status code, 'error' (>= 400) or 'success' (< 400)."}, convert)


def switch(name: str, description: str) -> Field:
    """A yes/no query parameter: true/false or 1/0."""

    def convert(value: Any, where: str) -> bool:
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise Invalid(f"{where} must be true, false, 1 or 0")
        return text in ("true", "1")

    return Field(name, {"type": "boolean", "description": description}, convert)


def fraction(name: str, description: str) -> Field:
    def convert(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise Invalid(f"{where} must be a number from 0 to 1")
        return float(value)

    return Field(name, {"type": "number", "minimum": 0, "maximum": 1, "description": description}, convert)


class FilterQuery(Shape):
    """Log filters in a query string: the declared fields plus ``metadata.<key>=<value>`` pairs, each an
    exact match on one key of the request's ``x-portkey-metadata``.

    Unknown names are refused, not skipped: a misspelt filter that quietly matched everything would
    look like an answer.
    """

    matches_metadata = True  # predictions carry no request metadata: their query refuses metadata.<key>

    def parse_query(self, raw: Mapping[str, str]) -> dict[str, Any]:
        metadata_prefix = METADATA_PREFIX if self.matches_metadata else None
        unknown = sorted(n for n in raw if n not in self.by_name and not (metadata_prefix and n.startswith(metadata_prefix)))
        if unknown:
            names = ", ".join(repr(n[:40]) for n in unknown)
            accepted = ", ".join([*self.by_name, *([metadata_prefix + "<key>"] if metadata_prefix else [])])
            raise Invalid(f"unknown query parameter(s) {names}; accepted: {accepted}")
        parsed = super().parse_query(raw)
        metadata = {n[len(METADATA_PREFIX):]: v for n, v in raw.items() if n.startswith(METADATA_PREFIX)}
        if "" in metadata:
            raise Invalid("a metadata filter needs a key: metadata.<key>=<value>")
        if metadata:
            parsed["metadata"] = metadata
        return parsed


_FILTERS = (
    instant("since", "Only records created at or after this time (ISO 8601 or epoch ms)."),
    instant("until", "Only records created before this time (ISO 8601 or epoch ms)."),
    text("provider", "Provider id, e.g. replicate.", max_length=200),
    text("slug", "Stored provider slug (without @).", max_length=200),
    status_code("status"),
    text("key_id", "Gateway API key id.", max_length=200),
    text("trace_id", "x-portkey-trace-id of the request.", max_length=200),
    text("model", max_length=500),
    text("endpoint", "proxy, chat, completions, embeddings, models, messages or stream.", max_length=50),
    text("prediction_id", "Replicate prediction id: its create, polls and cancel.", max_length=200),
    text("q", "Text found in the path or the error message.", max_length=500),
)
LIST = FilterQuery((
    *_FILTERS,
    integer("limit", "Records per page.", minimum=1, maximum=MAX_LIMIT, default=50),
    text("cursor", "next_cursor of the previous page.", max_length=500),
))
EXPORT = FilterQuery((
    *_FILTERS,
    text("format", "jsonl (default) or csv.", enum=EXPORT_FORMATS),
    switch("full", "Also export headers, bodies, attempts and usage (default false)."),
))
ANALYTICS = FilterQuery((
    *_FILTERS,
    text("bucket", "Width of a series point (default hour).", enum=BUCKET_MS),
    text("group_by", "Also total per provider, model or key.", enum=GROUP_COLUMNS),
))


def log_filter(query: Mapping[str, Any]) -> LogFilter:
    return LogFilter(**{f.name: query[f.name] for f in _FILTERS if f.name in query}, metadata=query.get("metadata", {}))


# -- feedback bodies ---------------------------------------------------------------------------------
class FeedbackBatch(Shape):
    """One feedback object, or a list of them (the Portkey SDK's ``bulk_create`` posts a bare list)."""

    def parse_body(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, list):
            return {"items": [super().parse_body(raw)]}
        if not 1 <= len(raw) <= MAX_FEEDBACK_ITEMS:
            raise Invalid(f"a feedback list must hold 1 to {MAX_FEEDBACK_ITEMS} objects")
        items = []
        for index, item in enumerate(raw):
            try:
                items.append(super().parse_body(item))
            except Invalid as exc:
                raise Invalid(f"feedback[{index}]: {exc.message}") from None
        return {"items": items}

    def json_schema(self) -> dict[str, Any]:
        one = super().json_schema()
        return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_FEEDBACK_ITEMS}]}


_value = replace(integer("value", "The score, from -10 to 10.", minimum=-10, maximum=10), required=True)
_weight = fraction("weight", "How much this feedback counts, from 0 to 1 (default 1).")
_metadata = mapping("metadata", "Your own key-value tags for the feedback.")
FEEDBACK = FeedbackBatch((
    text("trace_id", "x-portkey-trace-id of the request the feedback is about.", required=True, max_length=200),
    _value, _weight, _metadata,
))  # fmt: skip
FEEDBACK_UPDATE = Shape((replace(_value, required=False), _weight, _metadata))


# -- handlers ----------------------------------------------------------------------------------------
def log_store_of(request: Request) -> LogStore:
    """The gateway's log store (the control plane's, one per process)."""
    assert request.log_store is not None, "the control plane runs with a log store"
    return request.log_store


def list_logs(store: Store, request: Request) -> dict[str, Any]:
    query = request.query
    rows, next_cursor = log_store_of(request).list(log_filter(query), query.get("limit", 50), query.get("cursor"))
    return {"object": "list", "data": rows, "next_cursor": next_cursor}


def retrieve(store: Store, request: Request) -> dict[str, Any]:
    found = log_store_of(request).get(request.params["log_id"])
    if found is None:
        raise NotFound(f"no log record {request.params['log_id'][:60]!r}")
    return found


MAX_TRACE_RECORDS = 1000


def trace(store: Store, request: Request) -> dict[str, Any]:
    """One trace's requests as a tree of spans (Portkey's x-portkey-span-id / -parent-span-id / -span-name).
    A request that named no span is a span of its own (its log id); several requests may share a span
    (retries sent with one span id); a span whose parent is not in the trace is a root."""
    trace_id = request.params["trace_id"]
    rows = list(itertools.islice(log_store_of(request).iter_export(LogFilter(trace_id=trace_id)), MAX_TRACE_RECORDS + 1))
    if not rows:
        raise NotFound(f"no log records with trace id {trace_id[:60]!r}")
    spans: dict[str, dict[str, Any]] = {}
    for row in reversed(rows[:MAX_TRACE_RECORDS]):  # oldest first: a span's logs in the order they ran
        span_id = row["span_id"] or row["id"]
        span = spans.setdefault(span_id, {"span_id": span_id, "span_name": row["span_name"],
                                          "parent_span_id": row["parent_span_id"], "logs": [], "children": []})
        span["logs"].append(row)
    roots = []
    for span in spans.values():
        parent = spans.get(span["parent_span_id"] or "")
        (parent["children"] if parent is not None and parent is not span else roots).append(span)
    return {"object": "trace", "trace_id": trace_id, "spans": roots, "truncated": len(rows) > MAX_TRACE_RECORDS}


def export(store: Store, request: Request) -> Download:
    query = request.query
    kind, full = query.get("format", "jsonl"), query.get("full", False)
    rows = log_store_of(request).iter_export(log_filter(query), full=full)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    chunks = jsonl_chunks(rows) if kind == "jsonl" else csv_chunks(rows, FULL_COLUMNS if full else SUMMARY_FIELDS)
    return Download(f"modelport-logs-{stamp}.{kind}", EXPORT_FORMATS[kind], chunks)


def jsonl_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line, in pieces of about ``_CHUNK_BYTES``."""
    return _pieces(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows)


def csv_chunks(rows: Iterable[dict[str, Any]], columns: Iterable[str]) -> Iterator[bytes]:
    """A header line, then one line per record; objects and lists (metadata, attempts) as JSON text."""
    columns = tuple(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends

    def lines() -> Iterator[bytes]:
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(name)) for name in columns])
            yield _drain(buffer)
        yield _drain(buffer)  # the header alone, when nothing matched

    return _pieces(line for line in lines() if line)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        # Paths, errors and metadata are the callers' text; a spreadsheet would run "=HYPERLINK(...)"
        # as a formula (OWASP, "CSV Injection"). The leading quote makes it inert text.
        return "'" + value
    return "" if value is None else value


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def _pieces(parts: Iterable[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= _CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def create_feedback(store: Store, request: Request) -> dict[str, Any]:
    _check_own_traces(log_store_of(request), request.principal, {item["trace_id"] for item in request.body["items"]})
    ids = log_store_of(request).add_feedback(request.body["items"])
    return {"status": "success", "message": "feedback created", "feedback_ids": ids}


def update_feedback(store: Store, request: Request) -> dict[str, Any]:
    if not request.body:
        raise Invalid("give at least one of value, weight and metadata")
    feedback_id = request.params["feedback_id"]
    current = log_store_of(request).feedback(feedback_id)
    if current is None:
        raise NotFound(f"no feedback {feedback_id[:60]!r}")
    _check_own_traces(log_store_of(request), request.principal, {current["trace_id"]})
    if log_store_of(request).update_feedback(feedback_id, request.body) is None:
        raise NotFound(f"no feedback {feedback_id[:60]!r}")
    return {"status": "success", "message": "feedback updated", "feedback_ids": [feedback_id]}


def _check_own_traces(log: LogStore, principal: Principal, trace_ids: set[str]) -> None:
    """A key without ``logs.write`` may rate only requests it made (Portkey's hosted feedback is called
    with the inference key). A trace not logged at all yet is waited for a moment: its record reaches
    the store a few ms after the response, and a client may send feedback at once."""
    if principal.can("logs.write"):
        return
    deadline = time.monotonic() + OWN_TRACE_WAIT_SECONDS
    pending = trace_ids
    while True:
        pending = {t for t in pending if not log.list(LogFilter(trace_id=t, key_id=principal.key_id), limit=1)[0]}
        unseen = {t for t in pending if not log.list(LogFilter(trace_id=t), limit=1)[0]}
        if not unseen or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if pending:
        shown = min(pending)[:60]
        raise Forbidden(f"this gateway API key may give feedback only on its own requests, and none with trace id "
                        f"{shown!r} is logged; use a key with the 'logs.write' scope for other traces")


def analytics_summary(store: Store, request: Request) -> dict[str, Any]:
    query = request.query
    return summarize(log_store_of(request), log_filter(query), query.get("bucket", "hour"), query.get("group_by"))


# -- reply schemas -----------------------------------------------------------------------------------
_NUMBER = {"type": ["number", "null"]}
_INTEGER = {"type": ["integer", "null"]}
_TEXT = {"type": ["string", "null"]}
_SUMMARY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"}, "trace_id": _TEXT, "created_at": {"type": "string", "format": "date-time"},
    "method": _TEXT, "path": _TEXT, "endpoint": _TEXT, "provider": _TEXT, "slug": _TEXT, "model": _TEXT,
    "status": _INTEGER, "latency_ms": _NUMBER, "upstream_latency_ms": _NUMBER, "request_bytes": _INTEGER,
    "response_bytes": _INTEGER, "key_id": _TEXT, "key_name": _TEXT, "cache_status": _TEXT,
    "cost_usd": {**_NUMBER, "description": "null when the cost is unknown (cost_status unpriced)."},
    "cost_status": {"enum": ["priced", "estimated", "unpriced", None]}, "input_tokens": _INTEGER,
    "output_tokens": _INTEGER, "total_tokens": _INTEGER, "prediction_id": _TEXT, "error": _TEXT,
    "gateway_exception": {"type": "boolean"}, "stream": {"type": "boolean"}, "metadata": {"type": "object"},
    "retry_count": _INTEGER, "span_id": _TEXT, "parent_span_id": _TEXT, "span_name": _TEXT,
}  # fmt: skip
SUMMARY = {"type": "object", "properties": _SUMMARY_PROPERTIES, "required": list(SUMMARY_FIELDS)}
_ATTEMPT = {
    "type": "object",
    "properties": {"index": _TEXT, "provider": _TEXT, "slug": _TEXT, "started_at": _NUMBER, "latency_ms": _NUMBER,
                   "status": _INTEGER, "retry": _INTEGER, "error": _TEXT},
}  # fmt: skip
_FEEDBACK = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "trace_id": {"type": "string"}, "value": {"type": "integer"},
                   "weight": {"type": "number"}, "metadata": {"type": "object"},
                   "created_at": {"type": "string", "format": "date-time"}},
}  # fmt: skip
_BODY = {**_TEXT, "description": "UTF-8 text as stored (up to log_body_max_bytes), else base64."}
DETAIL = {
    **SUMMARY,
    "properties": {
        **_SUMMARY_PROPERTIES,
        "request_headers": {"type": ["object", "null"]}, "response_headers": {"type": ["object", "null"]},
        "request_body": _BODY, "response_body": _BODY,
        "request_body_encoding": {"const": "base64"}, "response_body_encoding": {"const": "base64"},
        "attempts": {"type": ["array", "null"], "items": _ATTEMPT}, "usage": {"type": ["object", "null"]},
        "cost_reason": _TEXT, "last_used_index": _TEXT, "request_content_type": _TEXT,
        "response_content_type": _TEXT, "feedback": {"type": "array", "items": _FEEDBACK},
    },
}  # fmt: skip
LIST_REPLY = {
    "type": "object",
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": SUMMARY},
                   "next_cursor": {**_TEXT, "description": "Pass as cursor for the next page; null on the last."}},
    "required": ["object", "data", "next_cursor"],
}  # fmt: skip
_SPAN = {
    "type": "object",
    "properties": {"span_id": {"type": "string"}, "span_name": _TEXT, "parent_span_id": _TEXT,
                   "logs": {"type": "array", "items": SUMMARY},
                   "children": {"type": "array", "items": {"type": "object", "description": "spans, in this shape"}}},
}  # fmt: skip
TRACE_REPLY = {
    "type": "object",
    "properties": {"object": {"const": "trace"}, "trace_id": {"type": "string"},
                   "spans": {"type": "array", "items": _SPAN},
                   "truncated": {"type": "boolean", "description": f"more than {MAX_TRACE_RECORDS} records: the newest left out"}},
    "required": ["object", "trace_id", "spans", "truncated"],
}  # fmt: skip
EXPORT_REPLY = {"type": "string", "description": "JSON lines (application/x-ndjson) or CSV, as an attachment."}
FEEDBACK_REPLY = {
    "type": "object",
    "properties": {"status": {"const": "success"}, "message": {"type": "string"},
                   "feedback_ids": {"type": "array", "items": {"type": "string"}}},
    "required": ["status", "message", "feedback_ids"],
}  # fmt: skip
_TOTALS = ("requests", "errors", "error_rate", "cost_usd", "unpriced_requests", "input_tokens", "output_tokens",
           "p50_ms", "p95_ms", "p99_ms")
ANALYTICS_REPLY = {
    "type": "object",
    "properties": {
        "totals": {"type": "object", "properties": {name: _NUMBER for name in _TOTALS}, "required": list(_TOTALS)},
        "series": {"type": "array", "items": {"type": "object", "properties": {
            "t": {"type": "string", "format": "date-time"}, "requests": {"type": "integer"},
            "errors": {"type": "integer"}, "cost_usd": {"type": "number"}, "tokens": {"type": "integer"},
            "p50_ms": _NUMBER, "p95_ms": _NUMBER}}},
        "groups": {"type": "array", "items": {"type": "object", "properties": {
            "key": _TEXT, "requests": {"type": "integer"}, "errors": {"type": "integer"},
            "cost_usd": {"type": "number"}, "tokens": {"type": "integer"}, "p50_ms": _NUMBER}}},
    },
    "required": ["totals", "series", "groups"],
}  # fmt: skip

_LIST_SUMMARY = "List request logs, newest first (filters; metadata.<key>=<value> matches request metadata)"
ROUTES = (
    Route("GET", "/logs", "logs.read", list_logs, _LIST_SUMMARY, "Logs", LIST_REPLY, query=LIST),
    Route("GET", "/logs/export", "logs.read", export, "Download matching logs as JSON lines or CSV (streamed)",
          "Logs", EXPORT_REPLY, query=EXPORT),
    Route("GET", "/logs/traces/{trace_id}", "logs.read", trace,
          "One trace's requests as a tree of spans (x-portkey-span-id, -parent-span-id, -span-name)", "Logs",
          TRACE_REPLY),
    Route("GET", "/logs/{log_id}", "logs.read", retrieve,
          "One log record: headers, bodies, attempts, usage, cost and feedback", "Logs", DETAIL),
    Route("POST", "/feedback", "logs.write", create_feedback, "Record feedback on a trace (one object or a list); "
          "an inference key may rate its own requests", "Feedback", FEEDBACK_REPLY, body=FEEDBACK, own_scope="inference"),
    Route("PUT", "/feedback/{feedback_id}", "logs.write", update_feedback, "Change a feedback's value, weight or "
          "metadata", "Feedback", FEEDBACK_REPLY, body=FEEDBACK_UPDATE, own_scope="inference"),
    Route("GET", "/analytics/summary", "logs.read", analytics_summary,
          "Requests, errors, latency percentiles, tokens and cost: totals, over time, and per group", "Analytics",
          ANALYTICS_REPLY, query=ANALYTICS),
)  # fmt: skip
