"""OpenTelemetry traces: a span per request and one per upstream attempt, exported as OTLP/HTTP JSON.

    writer lane (nice 19): each record once enriched ─▶ spans, as OTLP/JSON text ─▶ deque of otel_queue_size spans
                                                                              │ 512 spans or 1 s
    log service event loop: one POST <otel_endpoint>/v1/traces at a time ◀───┘
         collector down / 429 / 5xx: the batch goes back to the front, retried after 1, 2, 4 … 30 s;
         beyond the bound the oldest spans are dropped and counted (modelport_otel_spans_dropped_total)

Fed by the log service (``LogWriter.on_prepared``), which already receives every worker's records, so
tracing adds nothing to the request path. Building and encoding the spans run on the writer's lane; the
event loop only joins encoded spans into a request body and encodes it. Nothing here waits for the collector.

Why no opentelemetry-sdk: its OTLP exporters need the protobuf stack (or grpc), and its span
processors expect spans created live in the process; here they are built after the fact from a log
record. OTLP/JSON is a documented encoding (opentelemetry-proto, docs/specification.md: ids in hex,
64-bit integers as decimal strings, enums as integers) that any collector takes on :4318.

Attributes follow the GenAI semantic conventions of semconv 1.37.0 (``gen_ai.provider.name``, which
replaced ``gen_ai.system`` there; marked Development, so names may still change). Exported: ids, times,
names, the attributes built in logs/otel_spans.py and the gateway's own error messages (scrubbed of the provider's
secret like the stored log). Never headers, bodies, metadata or keys. docs/observability.md lists them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..errors import GatewayError
from ..providers.registry import get_provider
from ..settings import Settings, otel_header_pairs
from .enrich import Prepared
from .metrics import Metrics
from .otel_spans import SEMCONV_VERSION, SpanHost, encode_attribute, encoded_spans
from ..log_record import LogRecord
from ..transport.messages import UpstreamRequest
from ..transport.send import UpstreamClient
from ..transport.sessions import Upstreams

log = logging.getLogger("modelport.logs")

# What the OpenTelemetry SDKs' batch processor defaults to (512 a batch), exported every second as asked.
BATCH_SPANS = 512
EXPORT_SECONDS = 1.0
EXPORT_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0
DRAIN_SECONDS = 5.0  # at shutdown, what is queued gets this long to reach the collector
WARN_EVERY_SECONDS = 60.0
RESPONSE_READ_LIMIT = 64 * 1024
ANSWER_LIMIT = 1024 * 1024  # past this a collector's answer is a failed export (retried), as no answer is
RETRYABLE = frozenset({429, 502, 503, 504})  # OTLP/HTTP: retry these, drop on any other failure status



class SpanExporter:
    """``provider_of(slug)`` is the writer's cached stored-provider lookup (for ``server.address``);
    ``upstreams`` the log service's pooled sessions: the collector is the operator's, so the trusted side."""

    def __init__(self, settings: Settings, metrics: Metrics, provider_of: Callable[[str], Any],
                 upstreams: Upstreams) -> None:
        assert settings.otel_endpoint
        self.url = settings.otel_endpoint.rstrip("/") + "/v1/traces"
        self._headers = {**otel_header_pairs(settings.otel_headers), "content-type": "application/json"}
        self._metrics = metrics
        self._provider_of = provider_of
        self._client = UpstreamClient(upstreams, "the span exporter", settings.upstream_timeout, guarded=False,
                                      timeout_name="the export's share of the batch interval")
        self._hosts: dict[str, SpanHost | None] = {}
        self._slug_hosts: dict[str, tuple[Any, SpanHost | None]] = {}  # by slug, with the lookup it came from
        self._capacity = settings.otel_queue_size
        # Requeueing a batch (extendleft) never overfills it: _requeue keeps only what fits.
        self._queue: deque[str] = deque(maxlen=self._capacity)
        self._lock = threading.Lock()  # the writer's lane appends, the event loop takes
        self._wake_asked = False
        self._envelope = _envelope(settings.otel_service_name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned_at = -WARN_EVERY_SECONDS

    @classmethod
    def feeding_on(cls, writer: Any, upstreams: Upstreams) -> "SpanExporter | None":
        """An exporter fed by ``writer`` (a ``LogWriter``) as it enriches each record, when
        ``otel_endpoint`` is set; the caller starts it, and stops it after the writer."""
        if not writer.settings.otel_endpoint:
            return None
        exporter = cls(writer.settings, writer.metrics, writer.provider_of, upstreams)
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
            queue.extend(encoded)  # bounded (maxlen): beyond otel_queue_size the oldest fall off the front
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
        known = self._slug_hosts.get(slug)
        if known is not None and known[0] is provider:  # the writer's cached lookup, unchanged: so is its host
            return known[1]
        spec = get_provider(provider.provider)
        base = provider.custom_host or (spec.base_url if spec is not None else "")
        if base not in self._hosts:  # a handful of distinct bases: parsed once each
            self._hosts[base] = _host_and_port(base) if base and "{" not in base else None
        self._slug_hosts[slug] = (provider, self._hosts[base])
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

    def _take(self) -> list[str]:
        with self._lock:
            queue = self._queue
            batch = [queue.popleft() for _ in range(min(BATCH_SPANS, len(queue)))]
            self._wake_asked = False
        return batch

    async def _export(self, batch: list[str], timeout: float) -> bool:
        """POST one batch. False when the collector did not answer or asked to retry (the batch is then
        back at the front of the queue); a refusal drops the batch (resending would be refused again)."""
        head, tail = self._envelope
        body = (head + ",".join(batch) + tail).encode()  # one encode a request, not one a span
        try:
            answer = await self._client.fetch(UpstreamRequest("POST", self.url, dict(self._headers), body),
                                              ANSWER_LIMIT, timeout=max(timeout, 0.1))
        except GatewayError as error:  # no answer, or one past the limit (the transport says which)
            self._requeue(batch, error.message)
            return False
        except asyncio.CancelledError:  # stopping: the drain sends it, or counts it as dropped
            self._requeue(batch, None)
            raise
        status = answer.status
        if 200 <= status < 300:
            rejected = min(_rejected_spans(answer.body[:RESPONSE_READ_LIMIT]), len(batch))
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

    def _requeue(self, batch: list[str], problem: str | None) -> None:
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


def _envelope(service_name: str) -> tuple[str, str]:
    """An ExportTraceServiceRequest with one resource and one scope, split where the spans go: built
    once, as the resource and the scope never change."""
    version = _version()
    resource = [encode_attribute("service.name", service_name, cached=False)]
    if version:
        resource.append(encode_attribute("service.version", version, cached=False))
    scope = orjson.dumps({"name": "modelport", **({"version": version} if version else {})}).decode()
    schema = orjson.dumps(f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}").decode()
    head = f'{{"resourceSpans":[{{"resource":{{"attributes":[{",".join(resource)}]}},"scopeSpans":[{{"scope":{scope},' \
           f'"schemaUrl":{schema},"spans":['
    return head, "]}]}]}"


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


def _host_and_port(base_url: str) -> SpanHost | None:
    try:
        parts = urlsplit(base_url)
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:
        return None
