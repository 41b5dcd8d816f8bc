"""The ``LogStore`` protocol: request logs, feedback, and the provider-jobs ledger.

The ledger (table ``predictions``; "prediction" in the names below) holds one entry per job a
provider runs asynchronously and prices when it ends: today Replicate's predictions and trainings,
written through Replicate's ``ProviderJobs`` hook (providers/replicate/ledger.py). The store knows
no provider: it keeps the entries, each with its ``provider``.

What the log tables are used for, in terms a PostgreSQL class can implement as well as the embedded
SQLite one (``sqlite_logs.py``): no driver types cross it, rows are plain dicts and tuples.

- **Writing** (the log service's writer): ``batch()`` is one transaction in which the writer skips ids
  already stored (``stored_ids``; a replayed frame is logged once), keeps the prediction ledger and
  appends the rest (``append_logs``, which skips stored ids too, so two writers racing on one id log
  it once). ``end_prediction`` is the ledger's "first terminal status": one conditional update whose
  outcome says whether THIS writer saw the end first, so a prediction's cost is charged exactly once
  whatever the number of writers, processes or nodes.
- **Reading** (the logs API, the CLI, the prediction view, analytics): rows come out API-ready
  (``created_at`` as ISO 8601 UTC with milliseconds, flags as booleans, JSON decoded, bodies as text or
  base64 with ``*_encoding: "base64"``), paged by an opaque keyset cursor on (created_at, id), newest
  first, so a page costs the same at row 10 as at row 10,000,000. The prediction ledger's rows come out
  as stored (times in epoch ms): ``logs/predictions.py`` shapes the view.

Errors: ``StoreUnavailable`` when the store cannot answer (locked past its wait, unreachable: spill and
retry), ``RecordRefused`` when it refuses a value of a record (store it degraded); ``ValueError`` for a
bad cursor or feedback item, with a message for the caller.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from ..providers.records import PredictionEnd, PredictionSeen

LOG_COLUMNS = (
    "id", "trace_id", "created_at", "key_id", "key_name", "provider", "slug", "endpoint", "method", "path", "model",
    "status", "latency_ms", "upstream_latency_ms", "request_bytes", "response_bytes", "cache_status",
    "gateway_exception", "error", "stream", "prediction_id", "input_tokens", "output_tokens", "total_tokens",
    "cost_usd", "cost_status", "cost_reason", "retry_count", "last_used_index", "metadata", "attempts", "usage",
    "request_headers", "response_headers", "request_body", "response_body", "request_content_type",
    "response_content_type", "span_id", "parent_span_id", "span_name",
)
"""The fields of a row given to ``append_logs``: times in epoch ms, JSON fields as JSON text, bodies as bytes."""
SUMMARY_FIELDS = (
    "id", "trace_id", "created_at", "method", "path", "endpoint", "provider", "slug", "model", "status", "latency_ms",
    "upstream_latency_ms", "request_bytes", "response_bytes", "key_id", "key_name", "cache_status", "cost_usd",
    "cost_status", "input_tokens", "output_tokens", "total_tokens", "prediction_id", "error", "gateway_exception",
    "stream", "metadata", "retry_count", "span_id", "parent_span_id", "span_name",
)
DETAIL_EXTRA = (
    "request_headers", "response_headers", "request_body", "response_body", "attempts", "usage", "cost_reason",
    "last_used_index", "request_content_type", "response_content_type",
)
LEDGER_FIELDS = (
    "id", "provider", "slug", "key_id", "model", "version", "deployment", "status", "created_at", "terminal_at",
    "predict_time", "cost_usd", "cost_status", "cost_reason", "usage", "first_log_id", "terminal_log_id",
)  # fmt: skip
"""A prediction's ledger entry: times in epoch ms, ``usage`` decoded (a dict or None)."""
STEP_FIELDS = (
    "id", "created_at", "method", "path", "endpoint", "status", "latency_ms", "key_id", "key_name", "error", "metadata",
    "saw_status",
)  # fmt: skip
"""One log record of a prediction's lifecycle: ``created_at`` in epoch ms, ``metadata`` decoded, and
``saw_status``, the prediction's status in that record's body (itself or its entry in a list page)."""
JSON_COLUMNS = frozenset({"metadata", "attempts", "usage", "request_headers", "response_headers"})
ANALYTICS_GROUPS = ("provider", "model", "key_id")  # the columns analytics may total per value of
MAX_LIMIT = 1000
DAY_MS = 86_400_000
UPKEEP_INTERVAL_SECONDS = 3600.0


@dataclass(slots=True)
class LogFilter:
    """Filters of ``GET /v1/logs``; ``since``/``until`` are epoch ms (until exclusive); ``status`` is a
    code, "error" (>= 400) or "success" (< 400); ``metadata`` matches keys exactly; ``q`` is a
    substring of the path or the error."""

    since: int | None = None
    until: int | None = None
    provider: str | None = None
    slug: str | None = None
    status: int | str | None = None
    key_id: str | None = None
    trace_id: str | None = None
    model: str | None = None
    endpoint: str | None = None
    prediction_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    q: str | None = None


@dataclass(slots=True)
class PredictionFilter:
    """Filters of ``GET /v1/logs/predictions``: ``since``/``until`` are epoch ms on the creation time
    (until exclusive); ``status`` is Replicate's status as last seen."""

    since: int | None = None
    until: int | None = None
    status: str | None = None
    model: str | None = None
    key_id: str | None = None
    slug: str | None = None


class LogBatch(Protocol):
    """One write transaction of the log writer (``LogStore.batch()``)."""

    def stored_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids of ``ids`` already in the logs (a replayed frame)."""
        ...

    def append_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows (``LOG_COLUMNS``); a row whose id is already stored is skipped. Raises
        ``RecordRefused`` when a value cannot be stored."""
        ...

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        """The ledger entry (``LEDGER_FIELDS``), as this transaction sees it."""
        ...

    def note_prediction(self, seen: PredictionSeen) -> None:
        """Create the entry, or fill its unknown fields and (until it ended) move its status."""
        ...

    def note_listed_status(self, prediction_id: str, status: str | None) -> None:
        """A list page showed the prediction: move the status of an entry that exists and has not
        ended (a list page never creates one)."""
        ...

    def end_prediction(self, prediction_id: str, end: PredictionEnd) -> bool:
        """Write the end on an entry that has none yet, atomically: True for the one writer that did,
        False for any other (its record must not charge the cost again)."""
        ...


class LogStore(Protocol):
    """Logs, feedback and the prediction ledger. Thread-safe; every method is synchronous."""

    def close(self) -> None: ...

    def upkeep(self, now_ms: int) -> None:
        """Housekeeping the writer's ``batch()`` runs itself every ``UPKEEP_INTERVAL_SECONDS`` (and tests
        call with a chosen time): delete the records older than ``log_retention_days`` and, where the
        store has them, create the coming days' partitions."""
        ...

    # -- the log writer --------------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[LogBatch]:
        """One transaction: committed when the block ends, rolled back if it raises. Raises
        ``StoreUnavailable`` when the store cannot take it now."""
        ...

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        """The ledger entry (``LEDGER_FIELDS``) of a prediction seen through the gateway."""
        ...

    def open_predictions(self, since_ms: int, limit: int, *, provider: str) -> list[tuple[str, str, str | None]]:
        """``(id, slug, key_id)`` of ``provider``'s jobs (Replicate's predictions) created through a stored
        provider since ``since_ms`` that have not ended, oldest first."""
        ...

    # -- the logs API ----------------------------------------------------------------------------
    def list(self, filters: LogFilter | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of summaries (``SUMMARY_FIELDS``), newest first; ``next_cursor`` None on the last."""
        ...

    def get(self, log_id: str) -> dict[str, Any] | None:
        """One record in full (``DETAIL_EXTRA`` too), with the feedback on its trace."""
        ...

    def iter_export(self, filters: LogFilter | None = None, full: bool = False) -> Iterator[dict[str, Any]]:
        """Every matching row, newest first, read a page at a time (constant memory)."""
        ...

    def analytics_rows(self, filters: LogFilter, group: str | None = None) -> Iterator[tuple[Any, ...]]:
        """``(created_at ms, status, latency_ms, cost_usd, cost_status, input_tokens, output_tokens)``
        of every matching row, oldest first, plus the value of ``group`` (one of ``ANALYTICS_GROUPS``)."""
        ...

    # -- the prediction view ---------------------------------------------------------------------
    def list_predictions(self, filters: PredictionFilter, limit: int,
                         after: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` ledger entries, newest first, after the (created_at, id) ``after``."""
        ...

    def prediction_lifecycle(self, prediction_id: str, created_on_log_id: str | None, ended_on_log_id: str | None,
                             limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` log records (``STEP_FIELDS``) that carry the prediction's id, plus the ones it
        was created and ended on (a list page, an images call that ran several, names no single
        prediction), oldest first."""
        ...

    # -- feedback --------------------------------------------------------------------------------
    def add_feedback(self, items: Sequence[dict[str, Any]]) -> list[str]:
        """Portkey's feedback (``trace_id``, ``value``, ``weight``, ``metadata``), all or nothing; a
        ``ValueError`` names the first bad item. Returns the new ids."""
        ...

    def update_feedback(self, feedback_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Change ``value``, ``weight`` and/or ``metadata`` of one feedback; None if it does not exist."""
        ...

    def feedback(self, feedback_id: str) -> dict[str, Any] | None: ...

    def feedback_for(self, trace_id: str) -> list[dict[str, Any]]:
        """The feedback on a trace, oldest first."""
        ...


# -- shared by every implementation -------------------------------------------------------------------
def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode_cursor(ms: int, record_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ms}:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, record_id = raw.split(":", 1)
        return int(ms), record_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor: pass next_cursor from the previous page unchanged") from None


def clamp_limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def new_feedback(item: Any, index: int) -> dict[str, Any]:
    """A checked feedback item with its new id and time (epoch ms); ``ValueError`` names what is wrong."""
    where = f"feedback[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    trace_id, value = item.get("trace_id"), item.get("value")
    weight = item.get("weight", 1.0)
    metadata = item.get("metadata") or {}
    if not isinstance(trace_id, str) or not trace_id:
        raise ValueError(f"{where}.trace_id: required, a non-empty string")
    if isinstance(value, bool) or not isinstance(value, int) or not -10 <= value <= 10:
        raise ValueError(f"{where}.value: required, an integer from -10 to 10")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(f"{where}.weight: a number from 0 to 1")
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}.metadata: an object")
    now = time.time_ns()
    # The id leads with the time in ns, so feedback given in the same millisecond lists in the order given.
    return {"id": f"fb_{now:016x}{secrets.token_hex(4)}", "trace_id": trace_id, "value": value,
            "weight": float(weight), "metadata": metadata, "created_at": now // 1_000_000}


# -- rows in their wire form (a row is anything indexed by column name: sqlite3.Row, psycopg's dict_row) --
def summary_row(row: Any) -> dict[str, Any]:
    return {name: _value(name, row[name]) for name in SUMMARY_FIELDS}


def detail_row(row: Any) -> dict[str, Any]:
    found = summary_row(row)
    for name in DETAIL_EXTRA:
        value = row[name]
        if name in ("request_body", "response_body"):
            text, encoding = _body(value)
            found[name] = text
            if encoding:
                found[f"{name}_encoding"] = encoding
        else:
            found[name] = _value(name, value)
    return found


def _value(name: str, value: Any) -> Any:
    if name == "created_at":
        return iso_ms(value)
    if name in ("gateway_exception", "stream"):
        return bool(value)
    if name in JSON_COLUMNS:
        return orjson.loads(value) if value is not None else ({} if name == "metadata" else None)
    return value


def _body(value: bytes | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    try:
        return bytes(value).decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


def ledger_entry(row: Any) -> dict[str, Any]:
    entry = {name: row[name] for name in LEDGER_FIELDS}
    entry["usage"] = orjson.loads(entry["usage"]) if entry["usage"] else None
    return entry


def feedback_row(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "trace_id": row["trace_id"], "value": row["value"], "weight": row["weight"],
            "metadata": orjson.loads(row["metadata"]), "created_at": iso_ms(row["created_at"])}


SUMMARY_SELECT = ", ".join(SUMMARY_FIELDS)
FULL_SELECT = ", ".join(LOG_COLUMNS)
EXPORT_PAGE = 500


class PagedLogReads:
    """The logs API's paging, the same on every log store: each supplies ``_page`` (one keyset page of
    rows with ``created_at`` in epoch ms and ``id``, newest first, ``columns`` selected) and
    ``summary_row``/``detail_row`` shape the rows."""

    __slots__ = ()

    def _page(self, filters: LogFilter, columns: str, limit: int, after: tuple[int, str] | None) -> Any: ...

    def list(self, filters: LogFilter | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        limit = clamp_limit(limit)
        rows = self._page(filters or LogFilter(), SUMMARY_SELECT, limit + 1, decode_cursor(cursor))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
        return [summary_row(r) for r in rows], next_cursor

    def iter_export(self, filters: LogFilter | None = None, full: bool = False) -> Iterator[dict[str, Any]]:
        columns = FULL_SELECT if full else SUMMARY_SELECT
        after: tuple[int, str] | None = None
        while True:
            rows = self._page(filters or LogFilter(), columns, EXPORT_PAGE, after)
            for row in rows:
                yield detail_row(row) if full else summary_row(row)
            if len(rows) < EXPORT_PAGE:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])

