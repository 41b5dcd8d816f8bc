"""The prediction view: one row per Replicate prediction, read from the ``predictions`` ledger that
``logs/lifecycle.py`` writes, with its lifecycle read back from the log records that carry its id.

A prediction's cost sits on one log record only (the first that saw its end), which made it look as
if that poll had cost the money. Here the cost belongs to the prediction, and each record of the
lifecycle says what it did and what status it saw.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from ..providers.replicate.paths import created_kind, listed_collection, object_ref
from .store import MAX_LIMIT, decode_cursor, encode_cursor, iso_ms, time_and_equal_clauses

PREDICTION_STATUSES = ("starting", "processing", "succeeded", "failed", "canceled")
MAX_LIFECYCLE_RECORDS = 1000  # a prediction polled more often than this shows its first ones
_LEDGER_COLUMNS = (
    "id", "provider", "slug", "key_id", "model", "version", "deployment", "status", "created_at", "terminal_at",
    "predict_time", "cost_usd", "cost_status", "cost_reason", "usage", "first_log_id", "terminal_log_id",
)  # fmt: skip
_STEP_COLUMNS = (
    "id", "created_at", "method", "path", "endpoint", "status", "latency_ms", "key_id", "key_name", "error", "metadata",
)  # fmt: skip


def _seen_status_sql(column: str) -> str:
    """The prediction's status in a logged body (itself, or its entry in a list page's ``results``), read by
    SQLite: a prediction polled a thousand times would otherwise bring a thousand bodies into Python. The
    body is a BLOB, and SQLite's JSON functions want text; a body cut at log_body_max_bytes is not valid."""
    body = f"CAST({column} AS TEXT)"
    return (f"CASE WHEN json_valid({body}) THEN COALESCE("
            f"CASE WHEN json_extract({body}, '$.id') = :id THEN json_extract({body}, '$.status') END, "
            f"(SELECT json_extract(value, '$.status') FROM json_each({body}, '$.results')"
            f" WHERE json_extract(value, '$.id') = :id LIMIT 1)) END")


# The response, or for a delivery the gateway received (a webhook), the request.
_SEEN_STATUS = f"COALESCE({_seen_status_sql('response_body')}, {_seen_status_sql('request_body')}) AS saw_status"


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

    def where(self) -> tuple[list[str], list[Any]]:
        return time_and_equal_clauses(self, ("status", "model", "key_id", "slug"))


def list_predictions(conn: sqlite3.Connection, filters: PredictionFilter, limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paged on (created_at, id) like the logs; ``next_cursor`` None on the last page."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    clauses, params = filters.where()
    after = decode_cursor(cursor)
    if after is not None:
        clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [after[0], after[0], after[1]]
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM predictions{where} ORDER BY created_at DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return [_prediction(row) for row in rows], next_cursor


def get_prediction(conn: sqlite3.Connection, prediction_id: str) -> dict[str, Any] | None:
    """One prediction with its lifecycle, oldest record first."""
    row = conn.execute(f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
    if row is None:
        return None
    found = _prediction(row)
    # The records that created it and saw its end may name no single prediction (a list page, an images
    # call that ran several): they are read by id.
    steps = conn.execute(
        f"SELECT {', '.join(_STEP_COLUMNS)}, {_SEEN_STATUS} FROM logs"
        " WHERE prediction_id = :id OR id = :ended_on OR id = :first ORDER BY created_at, id LIMIT :limit",
        {"id": prediction_id, "ended_on": row["terminal_log_id"], "first": row["first_log_id"],
         "limit": MAX_LIFECYCLE_RECORDS + 1},
    ).fetchall()
    found["lifecycle"] = [_step(step, row["terminal_log_id"]) for step in steps[:MAX_LIFECYCLE_RECORDS]]
    found["lifecycle_truncated"] = len(steps) > MAX_LIFECYCLE_RECORDS
    return found


def _prediction(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "object": "prediction", "id": row["id"], "provider": row["provider"], "slug": row["slug"],
        "key_id": row["key_id"], "status": row["status"], "model": row["model"], "version": row["version"],
        "deployment": row["deployment"], "created_at": iso_ms(row["created_at"]),
        "ended_at": iso_ms(row["terminal_at"]) if row["terminal_at"] is not None else None,
        "predict_time": row["predict_time"], "cost_usd": row["cost_usd"], "cost_status": row["cost_status"],
        "cost_reason": row["cost_reason"], "usage": orjson.loads(row["usage"]) if row["usage"] else None,
        "first_log_id": row["first_log_id"], "ended_on_log_id": row["terminal_log_id"],
    }  # fmt: skip


def _step(row: sqlite3.Row, terminal_log_id: str | None) -> dict[str, Any]:
    metadata = orjson.loads(row["metadata"]) if row["metadata"] else {}
    return {
        "log_id": row["id"], "created_at": iso_ms(row["created_at"]), "step": _step_name(row, metadata),
        "method": row["method"], "path": row["path"], "status": row["status"], "latency_ms": row["latency_ms"],
        "key_id": row["key_id"], "key_name": row["key_name"], "error": row["error"],
        "saw_status": row["saw_status"] if isinstance(row["saw_status"], str) else None,
        "saw_end": row["id"] == terminal_log_id,
    }  # fmt: skip


def _step_name(row: sqlite3.Row, metadata: dict[str, Any]) -> str:
    """What the record was, in a word, for a timeline: create, poll, autopoll, webhook received, webhook
    delivery, cancel, list, stream, chat, images or other."""
    method, path = row["method"] or "", row["path"] or ""
    replicate_path = path[3:] if path.startswith("/v1/") else path
    if metadata.get("modelport_autopoll") == "true":
        return "autopoll"
    if metadata.get("modelport_webhook") in ("received", "delivery"):  # the relay: Replicate's event, our relay of it
        return f"webhook {metadata['modelport_webhook']}"
    if row["endpoint"] == "stream":
        return "stream"
    if row["endpoint"] in ("chat", "images"):  # a unified call that ran the prediction (gateway/steps.py)
        return row["endpoint"]
    if listed_collection(method, replicate_path) == "predictions":
        return "list"
    if created_kind(method, replicate_path) == "prediction":
        return "create"
    if object_ref(replicate_path) is not None:
        if method == "POST" and replicate_path.rstrip("/").endswith("/cancel"):
            return "cancel"
        if method == "GET":
            return "poll"
    return "other"
