"""One log record per request through the gateway; one ``Attempt`` per upstream try inside it."""

from __future__ import annotations

import marshal
import operator
import time
from dataclasses import asdict, dataclass, field, fields, replace
from random import getrandbits
from typing import Any, Protocol


def new_time_ordered_id(prefix: str = "") -> str:
    """32 hex digits, the first 16 the time in ns, so ids sort by time. Log rows are keyed and indexed
    by id and trace id: random keys dirtied a random index page per row, and every commit wrote those
    pages to the WAL again (the writes raised the gateway's p99 at c=1 from 1 to 3 ms). Time-ordered
    keys append. Not secrets: Python's PRNG (OS-seeded, reseeded after fork) needs no syscall. Not
    ``store.rows.new_record_id`` (ULIDs for keys and configs): it takes a lock, a getrandom syscall
    and a base-32 encoding per id, affordable per admin change but not per request."""
    return "%s%016x%016x" % (prefix, time.time_ns(), getrandbits(64))


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("request_body", "response_body"):
            value = data[key]
            data[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return data


# The metadata key of a record stored degraded (``degraded``), naming why: filter on it to find them.
DEGRADED_KEY = "modelport_log_degraded"


def degraded(record: LogRecord, problem: str) -> LogRecord:
    """A copy of ``record`` without the parts callers and upstreams shape freely (metadata, headers,
    bodies, reported usage), for a record that cannot be encoded or stored as it is: the request stays
    visible, with its status, timing and path, and one bad record never holds up the ones behind it."""
    return replace(record, metadata={DEGRADED_KEY: problem}, request_headers={}, response_headers={},
                   request_body=None, response_body=None, usage=None, predictions=None, attempts=list(record.attempts))


# The wire form between a worker and the log service: each record a plain tuple of its fields in
# declaration order (attempts, the last field, as tuples too), a batch one ``marshal`` blob. Both ends
# are the same interpreter; marshal encodes a batch twice as fast as pickle (1.2 against 2.4 µs a
# record) and cannot run code on load; positional construction on the way back costs half of building
# keyword arguments. Derived from the dataclasses, so a new field travels without touching this code.
_WIRE_FIELDS = tuple(f.name for f in fields(LogRecord))[:-1]
assert fields(LogRecord)[-1].name == "attempts"
_record_values = operator.attrgetter(*_WIRE_FIELDS)
_attempt_values = operator.attrgetter(*(f.name for f in fields(Attempt)))


def records_to_wire(records: list[LogRecord]) -> bytes:
    """Raises ValueError if a field holds what marshal cannot encode (the caller spills instead)."""
    return marshal.dumps([_record_values(r) + (tuple(map(_attempt_values, r.attempts)),) for r in records])


def records_from_wire(data: bytes) -> list[LogRecord]:
    return [_record_from_values(values) for values in marshal.loads(data)]


def _record_from_values(values: tuple[Any, ...]) -> LogRecord:
    record = LogRecord(*values)
    record.attempts = [Attempt(*attempt) for attempt in values[-1]]
    return record


class Recorder(Protocol):
    def submit(self, record: LogRecord) -> None:
        """Hand a finished record over; never blocks the request path."""
        ...


def header_dict(headers: Any) -> dict[str, str]:
    """Headers as the pipeline recorded them (raw byte pairs, to keep decoding off the request path) →
    a dict of lower-case ``str`` names (plain ``str``: aiohttp's case-insensitive names are a subclass
    orjson refuses as keys)."""
    if isinstance(headers, dict):
        return {str(name).lower(): str(value) for name, value in headers.items()}
    try:  # the usual shape: uvicorn's and aiohttp's (bytes, bytes) pairs, decoded in one pass
        return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
    except AttributeError:
        return {_text(name).lower(): _text(value) for name, value in headers}


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
