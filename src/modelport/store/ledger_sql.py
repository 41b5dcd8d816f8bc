"""The prediction ledger's writes, one SQL for both log stores: written with ``?`` placeholders, which
``LedgerWrites`` turns into its driver's style once per class (psycopg takes ``%s``)."""

from __future__ import annotations

from typing import Any

import orjson

from ..providers.records import PredictionEnd, PredictionSeen

NOTE = """
INSERT INTO predictions (id, provider, slug, key_id, model, version, deployment, status, created_at, first_log_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN predictions.terminal_at IS NULL THEN excluded.status ELSE predictions.status END,
    slug = COALESCE(predictions.slug, excluded.slug),
    key_id = COALESCE(predictions.key_id, excluded.key_id),
    model = COALESCE(predictions.model, excluded.model),
    version = COALESCE(predictions.version, excluded.version),
    deployment = COALESCE(predictions.deployment, excluded.deployment)
"""
NOTE_LISTED = "UPDATE predictions SET status = ? WHERE id = ? AND terminal_at IS NULL"
# The condition decides, not an earlier read: of several writers that saw the entry open (other
# processes, other nodes), only the one whose update finds terminal_at still NULL changes the row; on
# PostgreSQL a second writer's UPDATE waits for the first's row lock, then re-checks the committed row.
END = ("UPDATE predictions SET status = ?, terminal_at = ?, predict_time = ?, cost_usd = ?, cost_status = ?,"
       " cost_reason = ?, usage = ?, terminal_log_id = ? WHERE id = ? AND terminal_at IS NULL")


class LedgerWrites:
    """The ledger part of a ``LogBatch``; a subclass sets ``placeholder`` and holds ``_conn``, whose
    ``execute(sql, params)`` returns a cursor with ``rowcount`` (sqlite3 and psycopg alike)."""

    __slots__ = ()
    placeholder = "?"
    _conn: Any
    _sql: tuple[str, str, str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._sql = tuple(sql.replace("?", cls.placeholder) for sql in (NOTE, NOTE_LISTED, END))  # type: ignore[assignment]

    def note_prediction(self, seen: PredictionSeen) -> None:
        self._conn.execute(self._sql[0], (seen.id, seen.provider, seen.slug, seen.key_id, seen.model, seen.version,
                                          seen.deployment, seen.status, seen.created_at, seen.log_id))

    def note_listed_status(self, prediction_id: str, status: str | None) -> None:
        self._conn.execute(self._sql[1], (status, prediction_id))

    def end_prediction(self, prediction_id: str, end: PredictionEnd) -> bool:
        cursor = self._conn.execute(self._sql[2], (
            end.status, end.ended_at, end.predict_time, end.cost_usd, end.cost_status, end.cost_reason,
            orjson.dumps(end.usage).decode(), end.log_id, prediction_id))
        return cursor.rowcount == 1
