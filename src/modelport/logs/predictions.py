"""The prediction view: one row per provider job (Replicate's predictions), read from the ``predictions``
ledger that the provider's jobs hook writes (providers/replicate/ledger.py), with its lifecycle read back
from the log records that carry its id. A record's step there is named here where it is generic (autopoll,
webhooks, streams, unified calls) and by the provider's ``step_of`` where it is its API's (create, poll...).

A prediction's cost sits on one log record only (the first that saw its end), which made it look as
if that poll had cost the money. Here the cost belongs to the prediction, and each record of the
lifecycle says what it did and what status it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..providers.registry import job_steps
from ..store.log_base import LogStore, PredictionFilter, clamp_limit, decode_cursor, encode_cursor, iso_ms

_UNIFIED = frozenset({"chat", "images", "messages", "responses"})  # endpoints whose calls run predictions
StepOf = Callable[[str, str], "str | None"]  # (method, path) -> the provider's name of the step
MAX_LIFECYCLE_RECORDS = 1000  # a prediction polled more often than this shows its first ones


def list_predictions(log_store: LogStore, filters: PredictionFilter, limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paged on (created_at, id) like the logs; ``next_cursor`` None on the last page."""
    limit = clamp_limit(limit)
    rows = log_store.list_predictions(filters, limit + 1, decode_cursor(cursor))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return [_prediction(row) for row in rows], next_cursor


def get_prediction(log_store: LogStore, prediction_id: str) -> dict[str, Any] | None:
    """One prediction with its lifecycle, oldest record first."""
    entry = log_store.prediction_entry(prediction_id)
    if entry is None:
        return None
    found = _prediction(entry)
    # The records that created it and saw its end may name no single prediction (a list page, an images
    # call that ran several): they are read by id.
    steps = log_store.prediction_lifecycle(prediction_id, entry["first_log_id"], entry["terminal_log_id"],
                                           MAX_LIFECYCLE_RECORDS + 1)
    step_of = job_steps(entry["provider"]) or _no_steps  # its records are all of the provider that runs it
    found["lifecycle"] = [_step(step, entry["terminal_log_id"], step_of) for step in steps[:MAX_LIFECYCLE_RECORDS]]
    found["lifecycle_truncated"] = len(steps) > MAX_LIFECYCLE_RECORDS
    return found


def _prediction(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "prediction", "id": row["id"], "provider": row["provider"], "slug": row["slug"],
        "key_id": row["key_id"], "status": row["status"], "model": row["model"], "version": row["version"],
        "deployment": row["deployment"], "created_at": iso_ms(row["created_at"]),
        "ended_at": iso_ms(row["terminal_at"]) if row["terminal_at"] is not None else None,
        "predict_time": row["predict_time"], "cost_usd": row["cost_usd"], "cost_status": row["cost_status"],
        "cost_reason": row["cost_reason"], "usage": row["usage"],
        "first_log_id": row["first_log_id"], "ended_on_log_id": row["terminal_log_id"],
    }  # fmt: skip


def _no_steps(method: str, path: str) -> str | None:
    return None


def _step(row: dict[str, Any], terminal_log_id: str | None, step_of: StepOf) -> dict[str, Any]:
    metadata = row["metadata"]
    return {
        "log_id": row["id"], "created_at": iso_ms(row["created_at"]), "step": _step_name(row, metadata, step_of),
        "method": row["method"], "path": row["path"], "status": row["status"], "latency_ms": row["latency_ms"],
        "key_id": row["key_id"], "key_name": row["key_name"], "error": row["error"],
        "saw_status": row["saw_status"],
        "saw_end": row["id"] == terminal_log_id,
    }  # fmt: skip


def _step_name(row: dict[str, Any], metadata: dict[str, Any], step_of: StepOf) -> str:
    """What the record was, in a word, for a timeline: create, poll, autopoll, webhook received, webhook
    delivery, cancel, list, stream, chat, images, messages, responses or other."""
    if metadata.get("modelport_autopoll") == "true":
        return "autopoll"
    if metadata.get("modelport_webhook") in ("received", "delivery"):  # the relay: the provider's event, our relay of it
        return f"webhook {metadata['modelport_webhook']}"
    if row["endpoint"] == "stream":
        return "stream"
    if row["endpoint"] in _UNIFIED:  # a unified call that ran the prediction (gateway/steps.py)
        return row["endpoint"]
    return step_of(row["method"] or "", row["path"] or "") or "other"
