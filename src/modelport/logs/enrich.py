"""Turn a ``LogRecord`` into a ``logs`` row: usage, cost, redaction, body caps. Runs on the writer's
thread, off the request path, so JSON parsing of bodies never stalls the event loop. A record of a
provider that runs jobs (``ProviderJobs``, providers/base.py: Replicate's predictions) is costed by that
provider's hook, which also says what jobs it saw, for the ledger in the write transaction.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..providers.base import ProviderJobs
from ..usage import Cost, PriceBook, Usage, usage_from_body, usage_from_sse
from ..usage.limits import Charge, spent
from .media import AUDIO_ENDPOINTS, audio_usage, form_model, stored_request, stored_response, unreported
from .record import DEGRADED_KEY, header_dict
from ..log_record import LogRecord
from .redaction import REDACTED, is_secret_header

# Header names whose values are credentials; plus any name containing one of _SECRET_WORDS.
MAX_DECOMPRESSED = 4 * 1024 * 1024  # a compressed capture is opened up to this (zip bombs)
# A stored header value is cut here: a request's head may be 32 KB (MODELPORT_MAX_HEADER_BYTES), and
# every record of a client sending one long header would store it again; its first 1 KB identifies it.
HEADER_VALUE_CAP = 1024
_READS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


@dataclass(slots=True)
class Prepared:
    """A row ready to insert, and the provider jobs it saw (``ProviderJobs.seen``: settled in the write
    transaction by its provider's hook)."""

    row: dict[str, Any]
    sightings: list[Any] = field(default_factory=list)
    settlements: list[tuple[Charge, int, bool]] = field(default_factory=list)  # (reservation, delta, unpriced)
    degraded: bool = False  # already stripped to what any store takes (``degraded_row``)
    response_model: str | None = None  # the model a JSON response names (for traces, not stored)


class Redactor:
    """Credentials out of headers, configured JSON paths out of bodies, known secrets out of everything."""

    def __init__(self, paths: tuple[str, ...] = ()) -> None:
        self.paths = [parse_json_path(p) for p in paths]

    def headers(self, headers: dict[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
        """``headers`` as ``header_dict`` makes them (lower-case str names), each value cut at
        ``HEADER_VALUE_CAP`` characters."""
        if secrets:
            return {name: REDACTED if is_secret_header(name) else _capped(scrub_text(value, secrets) or "")
                    for name, value in headers.items()}
        cap = HEADER_VALUE_CAP  # most values are short: the call to cut one is made only when it is long
        return {name: REDACTED if is_secret_header(name) else value if len(value) <= cap else _capped(value)
                for name, value in headers.items()}

    def body(self, body: bytes | None, stream: bool, secrets: tuple[str, ...]) -> bytes | None:
        """The body with configured paths replaced. A JSON body that cannot be parsed (cut at the cap)
        while paths are configured is not stored at all: it might hold what the paths name."""
        if not body:
            return body
        if self.paths and _looks_like_json(body):
            body = self._json(body)
        elif self.paths and stream:
            body = self._sse(body)
        if body is not None:
            for secret in secrets:
                body = body.replace(secret.encode(), REDACTED.encode())
        return body

    def _json(self, body: bytes) -> bytes | None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return orjson.dumps(self.value(value))

    def _sse(self, body: bytes) -> bytes:
        lines = []
        for line in body.split(b"\n"):
            if line.startswith(b"data:") and _looks_like_json(line[5:].strip()):
                redacted = self._json(line[5:].strip())
                if redacted is None:
                    continue  # a cut-off event: drop it rather than store it unredacted
                line = b"data: " + redacted
            lines.append(line)
        return b"\n".join(lines)

    def value(self, value: Any) -> Any:
        for path in self.paths:
            value = _replace(value, path)
        return value


def parse_json_path(path: str) -> list[str | int]:
    """``input.api_key`` → ["input", "api_key"]; ``messages[*].content`` → ["messages", "*", "content"]."""
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(path):
        parts.append(name if name else (index if index == "*" else int(index)))
    if not parts:
        raise ValueError(f"empty redaction path {path!r}")
    return parts


def _replace(value: Any, path: list[str | int]) -> Any:
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and isinstance(head, str) and head != "*" and head in value:
        value[head] = REDACTED if not rest else _replace(value[head], rest)
    elif isinstance(value, list) and (head == "*" or isinstance(head, int)):
        indexes = range(len(value)) if head == "*" else [head] if isinstance(head, int) and head < len(value) else []
        for i in indexes:
            value[i] = REDACTED if not rest else _replace(value[i], rest)
    elif isinstance(value, dict) and head == "*":
        for key in value:
            value[key] = REDACTED if not rest else _replace(value[key], rest)
    return value


def _capped(value: str) -> str:
    if len(value) <= HEADER_VALUE_CAP:
        return value
    return f"{value[:HEADER_VALUE_CAP]}…[{len(value) - HEADER_VALUE_CAP:,} more characters not stored]"


def scrub_text(value: str | None, secrets: tuple[str, ...]) -> str | None:
    if value:
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


class Enricher:
    """``secrets_for(slug)`` returns the stored provider's secret (to scrub it if it shows up verbatim)."""

    def __init__(
        self,
        prices: PriceBook,
        redactor: Redactor,
        *,
        log_bodies: bool,
        body_cap: int,
        secrets_for: Callable[[str], str | None] = lambda slug: None,
        jobs: Mapping[str, ProviderJobs] | None = None,
    ) -> None:
        self.jobs = jobs or {}  # provider id -> its jobs hook
        self.prices = prices
        self.redactor = redactor
        self.log_bodies = log_bodies
        self.body_cap = body_cap
        self.secrets_for = secrets_for

    def prepare(self, record: LogRecord) -> Prepared:
        stream, response_json, seen, usage, cost = self._priced(record)
        return Prepared(self._row(record, usage, stream), seen.sightings if seen is not None else [],
                        _settlements(record, cost, usage), response_model=_model_of(response_json))

    def settlements(self, record: LogRecord) -> list[tuple[Charge, int, bool]]:
        """What ``prepare`` would settle, without building the row: with logging off nothing is stored, and
        the row (headers, redaction, JSON columns) was most of the cost of settling a budget."""
        _, _, _, usage, cost = self._priced(record)
        return _settlements(record, cost, usage)

    def _priced(self, record: LogRecord) -> tuple[bool, Any, Any, Usage | None, Cost]:
        """Usage and cost read into the record; also whether it streamed, its response's JSON and the
        provider jobs it saw."""
        record.request_headers = header_dict(record.request_headers)
        record.response_headers = header_dict(record.response_headers)
        record.response_body = _decompressed(record.response_body, record.response_headers)
        jobs = self.jobs.get(record.provider or "")
        # The request body is parsed only for what reads it: a provider's jobs hook, a model the
        # pipeline did not name, an audio call's usage (a chat call's request is ~10 % of enrichment).
        wanted = jobs is not None or not record.model or record.endpoint in AUDIO_ENDPOINTS
        request_json = _json_object(record.request_body) if wanted else None
        stream = record.stream or "event-stream" in (record.response_content_type or "")
        response_json = None if stream else _json_value(record.response_body)
        seen = jobs.seen(record, request_json, response_json) if jobs is not None else None
        if seen is not None:
            model = record.model or seen.model
            usage, cost = None, seen.cost
            record.prediction_id = record.prediction_id or seen.job_id
        else:
            model = record.model or _model_of(request_json) or form_model(record) or _model_of(response_json)
            usage = _usage_of(record, response_json, stream)
            if record.endpoint in AUDIO_ENDPOINTS:
                usage = audio_usage(record, request_json, response_json, usage)
            cost = self._cost(record, model, usage, jobs)
        record.model, record.cost_usd, record.cost_status, record.cost_reason = model, cost.usd, cost.status, _reason(cost)
        return stream, response_json, seen, usage, cost

    def _cost(self, record: LogRecord, model: str | None, usage: Usage | None, jobs: ProviderJobs | None) -> Cost:
        provider = record.provider or ""
        failed = record.gateway_exception or (record.status >= 400 and record.status != 499)
        if usage is None and failed:
            return Cost(0.0, "priced", basis="not billed: the request failed")
        if usage is None and record.method in _READS:
            return Cost(0.0, "priced", basis="not billed: a read")
        billed = jobs.plain_cost(record) if jobs is not None else None  # a provider that bills its jobs only
        if billed is not None:
            return billed
        if usage is not None and usage.reported_usd is not None:
            return self.prices.cost(provider, model or "", usage)
        if not model:
            return Cost.unpriced("the model is unknown")
        if usage is None and record.endpoint in AUDIO_ENDPOINTS and self.prices.price_for(provider, model) is not None:
            return unreported(record) or self.prices.cost(provider, model, usage)
        return self.prices.cost(provider, model, usage)

    def _row(self, record: LogRecord, usage: Usage | None, stream: bool) -> dict[str, Any]:
        secret = self.secrets_for(record.slug) if record.slug else None
        secrets = (secret,) if secret and len(secret) >= 8 else ()  # a short "secret" would shred the text
        keep = self.log_bodies and record.store_bodies
        redactor, cap = self.redactor, self.body_cap
        # Redact, then cut: a whole body (an autopoll's) parses, a body cut first might not.
        request_body = _cut(redactor.body(stored_request(record, record.request_body), False, secrets), cap) if keep else None
        response_body = _cut(redactor.body(stored_response(record, record.response_body), stream, secrets), cap) if keep else None
        reported = record.usage if usage is None else usage  # orjson writes the dataclass itself (asdict is slow)
        tokens = (usage.input_tokens, usage.output_tokens, usage.total_tokens) if usage else (None, None, None)
        request_headers = redactor.headers(record.request_headers, secrets)
        return {
            "id": record.id,
            "trace_id": record.trace_id,
            "created_at": int(record.created_at * 1000),
            "key_id": record.key_id,
            "key_name": record.key_name,
            "provider": record.provider,
            "slug": record.slug,
            "endpoint": record.endpoint,
            "method": record.method,
            "path": scrub_text(record.path, secrets),
            "model": record.model,
            "status": record.status,
            "latency_ms": round(record.latency_ms, 3),
            "upstream_latency_ms": round(record.upstream_latency_ms, 3) if record.upstream_latency_ms is not None else None,
            "request_bytes": record.request_bytes,
            "response_bytes": record.response_bytes,
            "cache_status": record.cache_status,
            "gateway_exception": int(record.gateway_exception),
            "error": scrub_text(record.error, secrets),
            "stream": int(stream),
            "prediction_id": record.prediction_id,
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "total_tokens": tokens[2],
            "cost_usd": record.cost_usd,
            "cost_status": record.cost_status,
            "cost_reason": record.cost_reason,
            "retry_count": record.retry_count,
            "last_used_index": record.last_used_index,
            "metadata": orjson.dumps(record.metadata, default=str).decode(),
            "attempts": orjson.dumps([_attempt(a, secrets) for a in record.attempts]).decode(),
            "usage": orjson.dumps(reported).decode() if reported is not None else None,
            "span_id": record.span_id,
            "parent_span_id": record.parent_span_id,
            "span_name": record.span_name,
            "request_headers": orjson.dumps(request_headers).decode(),
            "response_headers": orjson.dumps(redactor.headers(record.response_headers, secrets)).decode(),
            "request_body": request_body,
            "response_body": response_body,
            "request_content_type": record.content_type or record.request_headers.get("content-type"),
            "response_content_type": record.response_content_type,
        }


def metrics_row(record: LogRecord) -> dict[str, Any]:
    """What ``Metrics.observe`` reads, without enrichment (logging off: no bodies parsed, so no
    tokens or cost are counted)."""
    return {"provider": record.provider, "endpoint": record.endpoint, "status": record.status,
            "gateway_exception": record.gateway_exception, "error": record.error, "latency_ms": record.latency_ms,
            "upstream_latency_ms": record.upstream_latency_ms, "input_tokens": None, "output_tokens": None,
            "cost_usd": None, "cost_status": None}


def fallback_row(record: LogRecord, problem: str) -> dict[str, Any]:
    """A row for a record that could not be enriched: everything but usage, cost and bodies."""
    enricher = Enricher(PriceBook({}), Redactor(), log_bodies=False, body_cap=0)
    record.cost_usd, record.cost_status, record.cost_reason = None, "unpriced", f"log enrichment failed: {problem}"
    record.request_headers = {}
    record.response_headers = {}
    return enricher._row(record, None, record.stream)


def _settlements(record: LogRecord, cost: Cost, usage: Usage | None) -> list[tuple[Charge, int, bool]]:
    """Each budget reservation of the request against what it really spent. A Replicate prediction's cost
    is not this record's: it is charged to its creator when the prediction ends (the ledger)."""
    tokens = usage.total_tokens if usage is not None else 0
    settled = []
    for key, limit, ends_at, amount, kind in record.reservations or ():
        unpriced = kind == "cost" and cost.usd is None and record.status < 400
        charge = Charge(bytes.fromhex(key), limit, ends_at, amount)
        settled.append((charge, spent(kind, cost.usd, tokens) - amount, unpriced))
    return settled


def degraded_row(row: dict[str, Any], problem: str) -> dict[str, Any]:
    """``row`` as the store can take it when it refused the row as it was: without its free-form parts
    (metadata, headers, bodies, usage), and without numbers SQLite cannot hold (an upstream reporting
    1e30 tokens) or text it cannot encode. ``metadata`` names the problem under ``DEGRADED_KEY``."""
    kept = {name: _storable(value) for name, value in row.items()}
    kept.update(metadata=orjson.dumps({DEGRADED_KEY: problem}).decode(), request_headers="{}", response_headers="{}",
                usage=None, request_body=None, response_body=None)
    return kept


def _storable(value: Any) -> Any:
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate would not bind
    return value


def _cut(body: bytes | None, cap: int) -> bytes | None:
    return body[:cap] if body else None


def _usage_of(record: LogRecord, response_json: Any, stream: bool) -> Usage | None:
    if record.usage:
        found = usage_from_body({"usage": record.usage})
        if found is not None:
            return found
    if stream:
        return usage_from_sse(record.response_body) if record.response_body else None
    return usage_from_body(response_json) if isinstance(response_json, dict) else None


def _decompressed(body: bytes | None, headers: dict[str, str]) -> bytes | None:
    """A gzip/deflate body as the client's ``Accept-Encoding`` got it, opened so usage can be read
    and the log shows text. The capture may be cut anywhere: a decompressor object takes a prefix.
    ``headers`` as ``header_dict`` makes them (lower-case names)."""
    encoding = headers.get("content-encoding") or ""
    if not body or encoding.lower() not in ("gzip", "deflate"):
        return body
    window = 16 + zlib.MAX_WBITS if encoding.lower() == "gzip" else zlib.MAX_WBITS
    try:
        return zlib.decompressobj(window).decompress(body, MAX_DECOMPRESSED)
    except zlib.error:
        try:
            return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, MAX_DECOMPRESSED)  # raw deflate
        except zlib.error:
            return body


def _reason(cost: Cost) -> str | None:
    if cost.reason and cost.basis:
        return f"{cost.reason} ({cost.basis})"
    return cost.reason or cost.basis or None


def _model_of(value: Any) -> str | None:
    model = value.get("model") if isinstance(value, dict) else None
    return model if isinstance(model, str) and model else None


def _json_value(body: bytes | None) -> Any:
    if not body or not _looks_like_json(body):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    value = _json_value(body)
    return value if isinstance(value, dict) else None


def _looks_like_json(body: bytes) -> bool:
    start = body.lstrip()[:1]
    return start in (b"{", b"[")


def _attempt(attempt: Any, secrets: tuple[str, ...]) -> dict[str, Any]:
    return {
        "index": attempt.index,
        "provider": attempt.provider,
        "slug": attempt.slug,
        "started_at": attempt.started_at,
        "latency_ms": round(attempt.latency_ms, 3),
        "status": attempt.status,
        "retry": attempt.retry,
        "error": scrub_text(attempt.error, secrets),
    }
