"""OpenTelemetry traces: a span per request and one per upstream attempt, exported as OTLP/HTTP JSON.

    writer lane (nice 19): each record once enriched ─▶ spans, encoded ─▶ deque of otel_queue_size spans
                                                                              │ 512 spans or 1 s
    log service event loop: one POST <otel_endpoint>/v1/traces at a time ◀───┘
         collector down / 429 / 5xx: the batch goes back to the front, retried after 1, 2, 4 … 30 s;
         beyond the bound the oldest spans are dropped and counted (modelport_otel_spans_dropped_total)

Fed by the log service (``LogWriter.on_prepared``), which already receives every worker's records, so
tracing adds nothing to the request path. Building and encoding the spans run on the writer's lane; the
event loop only joins encoded spans into a request body. Nothing here waits for the collector.

Why no opentelemetry-sdk: its OTLP exporters need the protobuf stack (or grpc), and its span
processors expect spans created live in the process; here they are built after the fact from a log
record. OTLP/JSON is a documented encoding (opentelemetry-proto, docs/specification.md: ids in hex,
64-bit integers as decimal strings, enums as integers) that any collector takes on :4318.

Attributes follow the GenAI semantic conventions of semconv 1.37.0 (``gen_ai.provider.name``, which
replaced ``gen_ai.system`` there; marked Development, so names may still change). Exported: ids, times,
names, the attributes built below and the gateway's own error messages (scrubbed of the provider's
secret like the stored log). Never headers, bodies, metadata or keys. docs/observability.md lists them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from hashlib import blake2b
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from ..providers.registry import get_provider
from ..settings import Settings, otel_header_pairs
from .enrich import Prepared
from .metrics import Metrics
from .record import Attempt, LogRecord

log = logging.getLogger("modelport.logs")

SEMCONV_VERSION = "1.37.0"
# What the OpenTelemetry SDKs' batch processor defaults to (512 a batch), exported every second as asked.
BATCH_SPANS = 512
EXPORT_SECONDS = 1.0
EXPORT_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0
DRAIN_SECONDS = 5.0  # at shutdown, what is queued gets this long to reach the collector
WARN_EVERY_SECONDS = 60.0
RESPONSE_READ_LIMIT = 64 * 1024
RETRYABLE = frozenset({429, 502, 503, 504})  # OTLP/HTTP: retry these, drop on any other failure status

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


class SpanExporter:
    """``provider_of(slug)`` is the writer's cached stored-provider lookup (for ``server.address``);
    ``session()`` the log service's pooled session for operator-configured hosts."""

    def __init__(self, settings: Settings, metrics: Metrics, provider_of: Callable[[str], Any],
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        assert settings.otel_endpoint
        self.url = settings.otel_endpoint.rstrip("/") + "/v1/traces"
        self._headers = {**otel_header_pairs(settings.otel_headers), "content-type": "application/json"}
        self._metrics = metrics
        self._provider_of = provider_of
        self._session = session
        self._hosts: dict[str, SpanHost | None] = {}
        self._queue: deque[bytes] = deque()
        self._capacity = settings.otel_queue_size
        self._lock = threading.Lock()  # the writer's lane appends, the event loop takes
        self._wake_asked = False
        self._envelope = _envelope(settings.otel_service_name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned_at = -WARN_EVERY_SECONDS

    @classmethod
    def feeding_on(cls, writer: Any, session: Callable[[], aiohttp.ClientSession]) -> "SpanExporter | None":
        """An exporter fed by ``writer`` (a ``LogWriter``) as it enriches each record, when
        ``otel_endpoint`` is set; the caller starts it, and stops it after the writer."""
        if not writer.settings.otel_endpoint:
            return None
        exporter = cls(writer.settings, writer.metrics, writer.provider_of, session)
        writer.on_prepared = exporter.observe
        return exporter

    # -- the writer's lane ------------------------------------------------------------------------
    def observe(self, record: LogRecord, prepared: Prepared | None) -> None:
        """Queue the record's spans. Never raises and never waits: a span that cannot be built is counted
        as dropped, and beyond the bound the oldest queued spans make room."""
        try:
            encoded = encoded_spans(record, prepared, self._host_of)
        except Exception:
            self._drop(1 + len(record.attempts))
            self._warn("could not build the spans of log record %s" % record.id, exc_info=True)
            return
        with self._lock:
            queue = self._queue
            overflow = len(queue) + len(encoded) - self._capacity
            for _ in range(min(max(overflow, 0), len(queue))):
                queue.popleft()
            queue.extend(encoded[-self._capacity:])
            wake = len(queue) >= BATCH_SPANS and not self._wake_asked
            self._wake_asked |= wake
        if overflow > 0:
            self._drop(overflow)
        if wake and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_up)

    def _host_of(self, slug: str | None) -> SpanHost | None:
        """Where a stored provider's attempts went: its custom host or its provider's base URL. A request
        without a stored provider may name its own host, which the record does not keep: then none."""
        provider = self._provider_of(slug) if slug is not None else None
        if provider is None:
            return None
        spec = get_provider(provider.provider)
        base = provider.custom_host or (spec.base_url if spec is not None else "")
        if base not in self._hosts:  # a handful of distinct bases: parsed once each
            self._hosts[base] = _host_and_port(base) if base and "{" not in base else None
        return self._hosts[base]

    # -- the event loop ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="modelport-otel-export")

    async def stop(self) -> None:
        """Export what is queued (for at most ``DRAIN_SECONDS``), count the rest as dropped."""
        self._stopping = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            # An export in flight may wait out its timeout: cut it short (its batch goes back to the queue).
            _, pending = await asyncio.wait([self._task], timeout=EXPORT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._queue and time.monotonic() < deadline:
            if not await self._export(self._take(), deadline - time.monotonic()):
                break
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self._drop(left)
            log.warning("OpenTelemetry: %d spans not exported at shutdown (the collector at %s did not take them)",
                        left, self.url)

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            try:
                if backoff or len(self._queue) < BATCH_SPANS:
                    await self._pause(backoff or EXPORT_SECONDS, wake_on_batch=not backoff)
                if self._stopping:
                    return
                if not self._queue:
                    continue
                reached = await self._export(self._take(), EXPORT_TIMEOUT_SECONDS)
                backoff = 0.0 if reached else min(MAX_BACKOFF_SECONDS, max(EXPORT_SECONDS, backoff * 2))
            except Exception:  # never let tracing take the log service down
                log.exception("OpenTelemetry export failed unexpectedly")
                backoff = MAX_BACKOFF_SECONDS

    async def _pause(self, seconds: float, wake_on_batch: bool) -> None:
        """Sleep ``seconds``; a full batch ends it early unless backing off; stopping always does."""
        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            self._wake.clear()
            if wake_on_batch:
                return

    def _take(self) -> list[bytes]:
        with self._lock:
            queue = self._queue
            batch = [queue.popleft() for _ in range(min(BATCH_SPANS, len(queue)))]
            self._wake_asked = False
        return batch

    async def _export(self, batch: list[bytes], timeout: float) -> bool:
        """POST one batch. False when the collector did not answer or asked to retry (the batch is then
        back at the front of the queue); a refusal drops the batch (resending would be refused again)."""
        head, tail = self._envelope
        body = head + b",".join(batch) + tail
        try:
            async with self._session().post(self.url, data=body, headers=self._headers,
                                            timeout=aiohttp.ClientTimeout(total=max(timeout, 0.1))) as response:
                status = response.status
                answer = await response.content.read(RESPONSE_READ_LIMIT)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._requeue(batch, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return False
        except asyncio.CancelledError:  # stopping: the drain sends it, or counts it as dropped
            self._requeue(batch, None)
            raise
        if 200 <= status < 300:
            rejected = min(_rejected_spans(answer), len(batch))
            self._metrics.add("modelport_otel_spans_exported_total", amount=len(batch) - rejected)
            if rejected:
                self._drop(rejected)
                self._warn(f"the collector at {self.url} rejected {rejected} of {len(batch)} spans")
            return True
        if status in RETRYABLE:
            self._requeue(batch, f"HTTP {status}")
            return False
        self._drop(len(batch))
        self._warn(f"the collector at {self.url} refused {len(batch)} spans with HTTP {status}; they are dropped")
        return True

    def _requeue(self, batch: list[bytes], problem: str | None) -> None:
        """Back to the front, as far as the bound allows: the oldest of the batch go first."""
        with self._lock:
            room = max(0, self._capacity - len(self._queue))
            kept = batch[len(batch) - room:] if room < len(batch) else batch
            self._queue.extendleft(reversed(kept))
        if len(kept) < len(batch):
            self._drop(len(batch) - len(kept))
        if problem is not None:
            self._warn(f"could not export spans to {self.url} ({problem}); retrying, {len(self._queue)} queued")

    def _drop(self, count: int) -> None:
        self._metrics.add("modelport_otel_spans_dropped_total", amount=count)

    def _warn(self, message: str, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:  # a collector that is down says so once a minute
            self._warned_at = now
            log.warning("OpenTelemetry: %s", message, exc_info=exc_info)


def _envelope(service_name: str) -> tuple[bytes, bytes]:
    """An ExportTraceServiceRequest with one resource and one scope, split where the spans go."""
    version = _version()
    resource = [_attribute("service.name", service_name, cached=False)]
    if version:
        resource.append(_attribute("service.version", version, cached=False))
    scope = orjson.dumps({"name": "modelport", **({"version": version} if version else {})})
    head = b'{"resourceSpans":[{"resource":{"attributes":[%s]},"scopeSpans":[{"scope":%s,"schemaUrl":%s,"spans":[' % (
        b",".join(resource), scope, orjson.dumps(f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"))
    return head, b"]}]}]}"


def _version() -> str | None:
    try:
        return metadata.version("modelport")
    except metadata.PackageNotFoundError:  # run from a source tree
        return None


def _rejected_spans(answer: bytes) -> int:
    """``partialSuccess.rejectedSpans`` of an ExportTraceServiceResponse (0 when absent or unreadable)."""
    if not answer.startswith(b"{"):
        return 0
    try:
        value = orjson.loads(answer).get("partialSuccess", {}).get("rejectedSpans", 0)
        return int(value) if int(value) > 0 else 0
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0


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
        attributes.append(_attribute("url.path", _capped(row["path"]), cached=record.endpoint in OPERATIONS))
    if derived:
        attributes.append(_attribute("portkey.trace_id", record.trace_id, cached=False))
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
    parts = [_attribute("http.request.method", method)]
    if status:
        parts.append(_attribute("http.response.status_code", status))
    if provider:
        parts.append(_attribute("modelport.provider", provider))
    if cache_status != "DISABLED":
        parts.append(_attribute("modelport.cache_status", cache_status))
    if retry_count:
        parts.append(_attribute("modelport.retry_count", retry_count))
    if failed:
        parts.append(_attribute("error.type", str(status) if status else "_OTHER"))
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
            attributes.append(_attribute("gen_ai.response.model", _capped(answered.response_model)))
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
    parts = [_attribute("gen_ai.provider.name", PROVIDER_NAMES.get(provider, provider))]
    if operation:
        parts.append(_attribute("gen_ai.operation.name", operation))
    if model:
        parts.append(_attribute("gen_ai.request.model", model))
    if host is not None:
        parts.append(_attribute("server.address", host[0]))
        if host[1] is not None:
            parts.append(_attribute("server.port", host[1]))
    if status is not None:
        parts.append(_attribute("http.response.status_code", status))
    if retry:
        parts.append(_attribute("http.request.resend_count", retry))
    if target:
        parts.append(_attribute("modelport.target", target))
    if failed:
        parts.append(_attribute("error.type", str(status) if status else "_OTHER"))
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
    return int(otel_span_id(log_id), 16), _attribute("modelport.log_id", log_id, cached=False)


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def _host_and_port(base_url: str) -> SpanHost | None:
    try:
        parts = urlsplit(base_url)
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:
        return None


_ENCODED: dict[tuple[str, type, Any], bytes] = {}
_ENCODED_LIMIT = 4096  # distinct (key, value) pairs kept: models and hosts are few; ids are never cached
# A model name or path is the caller's to choose: one of a megabyte would be exported (and cached) whole.
VALUE_CAP = 1024


def _attribute(key: str, value: str | int | float, cached: bool = True) -> bytes:
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
