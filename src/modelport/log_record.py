"""One log record per request through the gateway; one ``Attempt`` per upstream try inside it.

Values only, below every layer that fills one (the pipeline, the stream relay, a provider's webhook relay);
how they travel to the log service and are stored is ``logs/``'s (``logs/record.py``)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .ids import new_time_ordered_id


@dataclass(slots=True)
class Attempt:
    """One span: a try against one target (retries and fallbacks each add one)."""

    index: str  # the config path of the target, e.g. "config.targets[1]"
    provider: str
    slug: str | None
    started_at: float
    latency_ms: float = 0.0
    status: int | None = None
    retry: int = 0
    error: str | None = None


@dataclass(slots=True)
class LogRecord:
    trace_id: str
    method: str
    path: str
    id: str = field(default_factory=lambda: new_time_ordered_id("log_"))
    created_at: float = field(default_factory=time.time)
    key_id: str | None = None
    key_name: str | None = None
    provider: str | None = None
    slug: str | None = None
    endpoint: str = "proxy"  # "proxy" or a unified endpoint name
    model: str | None = None
    status: int = 0
    latency_ms: float = 0.0
    upstream_latency_ms: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    cache_status: str = "DISABLED"
    gateway_exception: bool = False
    error: str | None = None
    stream: bool = False
    # Raw ASGI/aiohttp header pairs (bytes) as they passed, or a dict of str; the writer decodes them off
    # the request path (see header_dict below). Every value here must marshal (the wire form below): a
    # multidict proxy would not, so pipelines keep uvicorn's list and aiohttp's ``raw_headers`` tuple.
    request_headers: Any = field(default_factory=dict)
    response_headers: Any = field(default_factory=dict)
    request_body: bytes | None = None
    response_body: bytes | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    cost_status: str = "unpriced"
    cost_reason: str | None = None
    prediction_id: str | None = None
    # Replicate predictions a unified call ran (chat, images), as last seen and cut to what pricing reads
    # (gateway/steps.py): the log service prices each once, like a proxied prediction (providers/replicate/ledger.py).
    predictions: list[dict[str, Any]] | None = None
    retry_count: int = 0
    last_used_index: str | None = None
    store_bodies: bool = True
    content_type: str | None = None
    response_content_type: str | None = None
    span_id: str | None = None  # x-portkey-span-id: the request's place in its trace's tree
    parent_span_id: str | None = None
    span_name: str | None = None
    # Budget reservations to settle once the usage is known: (key in hex, limit, ends_at, amount, kind)
    # each; plain values, so the record still travels by marshal and spills as JSON.
    reservations: list[tuple[str, int, int, int, str]] | None = None
    attempts: list[Attempt] = field(default_factory=list)  # last: the wire form relies on it

    # The one filler of a record's outcome, for every route that makes one: the pipeline (gateway/pipeline.py),
    # the stream relay (gateway/stream_relay.py) and the webhook relay (providers/replicate/webhooks.py).

    def attempt(self, index: str, provider: str, slug: str | None, retry: int = 0) -> Attempt:
        """A new span, started now, for one try against one target."""
        span = Attempt(index=index, provider=provider, slug=slug, started_at=time.time(), retry=retry)
        self.attempts.append(span)
        return span

    def answered(self, status: int, size: int, content_type: str, body: bytes | None, *, headers: Any = None,
                 error: str | None = None, usage: dict[str, Any] | None = None) -> None:
        """What the client got: ``body`` is what the log keeps of it (the capture), ``headers`` the response's
        raw pairs when headers are logged, ``error`` what went wrong after the status was sent."""
        self.status, self.response_bytes, self.response_content_type = status, size, content_type
        self.stream = "event-stream" in content_type
        self.response_body = body or None
        if headers is not None:
            self.response_headers = headers
        self.error, self.usage = error, usage

    def failed(self, status: int, message: str, gateway_exception: bool = True) -> None:
        """The request ended in an error: the gateway's own (``gateway_exception``) unless said otherwise."""
        self.status, self.error, self.gateway_exception = status, message, gateway_exception

    def finished(self, started: float) -> None:
        """The request's latency, from its ``time.perf_counter()`` start."""
        self.latency_ms = (time.perf_counter() - started) * 1000

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("request_body", "response_body"):
            value = data[key]
            data[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return data


class Recorder(Protocol):
    def submit(self, record: LogRecord) -> None:
        """Hand a finished record over; never blocks the request path."""
        ...
