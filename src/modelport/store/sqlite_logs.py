"""``LogStore`` on the gateway's SQLite file: the ``logs``, ``feedback`` and ``predictions`` tables.

The tables are created by ``migrations.py`` when the keys store opens the file (``open_store``), which
every process does first. Each thread gets its own connection, in autocommit mode; the writer's batch
is one ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front, so the log service, the
control plane and ``modelport`` commands queue on ``busy_timeout`` instead of failing halfway.
sqlite3's errors stop here: ``StoreUnavailable`` for the store itself (locked, disk full, no table),
``RecordRefused`` for a value it cannot bind, ``StoreError`` for anything else.
"""

from __future__ import annotations

import logging
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .base import RecordRefused, StoreError, StoreUnavailable
from .ledger_sql import LedgerWrites
from .log_base import (
    FULL_SELECT,
    PagedLogReads,
    ANALYTICS_GROUPS,
    DAY_MS,
    LEDGER_FIELDS,
    LOG_COLUMNS,
    UPKEEP_INTERVAL_SECONDS,
    LogFilter,
    PredictionFilter,
    detail_row,
    feedback_row,
    ledger_entry,
    new_feedback,
)

log = logging.getLogger("modelport.store")
_INSERT = (f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join('?' for _ in LOG_COLUMNS)})"
           " ON CONFLICT (id) DO NOTHING")
_row_values = operator.itemgetter(*LOG_COLUMNS)  # a row dict → the insert's values, in C
_LEDGER_SELECT = ", ".join(LEDGER_FIELDS)
_RETENTION_CHUNK = 5000
_RETENTION_CHUNKS_PER_UPKEEP = 100  # 500,000 rows; more waits for the next upkeep
_STEP_COLUMNS = "id, created_at, method, path, endpoint, status, latency_ms, key_id, key_name, error, metadata"
# The side tables of migration 9, fed from the rows an append has just inserted (rowid above the largest
# before it: SQLite gives a new row max(rowid) + 1), in SQL, so the metadata values are exactly what
# json_extract would read, with no per-row trigger and no JSON parsed in Python.
_FEED_TEXT = "INSERT INTO log_text (rowid, path, error) SELECT rowid, path, error FROM logs WHERE rowid > ?"
_METADATA_PAIRS = (
    "SELECT m.key, CAST(m.value AS TEXT), logs.created_at, logs.id FROM logs, json_each(CASE WHEN json_valid(logs.metadata)"
    " THEN CASE WHEN json_type(logs.metadata) = 'object' THEN logs.metadata END END) AS m WHERE m.type != 'null' AND "
)
_FEED_METADATA = f"INSERT OR IGNORE INTO log_metadata (key, value, log_created_at, log_id) {_METADATA_PAIRS} logs.rowid > ?"
_TRIGRAM = 3  # the q filter's index holds 3-character pieces: a shorter q cannot be looked up in it
# Aliases: inside SQLiteLogStore the name ``list`` is a method, so annotations there cannot say list[...].
Rows = list[dict[str, Any]]
DbRows = list[sqlite3.Row]


@contextmanager
def _store_errors() -> Iterator[None]:
    """sqlite3's errors as the store's (the message is SQLite's own: "database is locked")."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(str(exc)) from exc
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc


class SQLiteLogStore(PagedLogReads):
    """``busy_timeout``: seconds a call waits for another writer before ``StoreUnavailable``;
    ``retention_days``: records older than that many days are deleted by ``upkeep`` (0: kept forever)."""

    def __init__(self, path: Path | str, busy_timeout: float = 5.0, retention_days: int = 0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._retention_days = retention_days
        self._next_upkeep = 0.0  # monotonic time: the first batch runs it
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with _store_errors():
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def upkeep(self, now_ms: int) -> None:
        """Delete records older than the retention, ``_RETENTION_CHUNK`` rows per transaction (found by
        the created_at index), so the gateway's other writers wait for one chunk at most, never the lot."""
        self._next_upkeep = time.monotonic() + UPKEEP_INTERVAL_SECONDS
        if not self._retention_days:
            return
        cutoff = now_ms - self._retention_days * DAY_MS
        for _ in range(_RETENTION_CHUNKS_PER_UPKEEP):
            with _store_errors():
                deleted = self._delete_chunk(cutoff)
            if deleted < _RETENTION_CHUNK:
                return
        self._next_upkeep = time.monotonic() + 60  # more left: the next batch a minute from now goes on

    def _delete_chunk(self, cutoff: int) -> int:
        """Delete up to ``_RETENTION_CHUNK`` records older than ``cutoff`` and their side rows, in one
        transaction. Side rows are derived from the record as they were when it was added (the text
        index is contentless: a row leaves it given the values it was added with)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            chunk = conn.execute("SELECT rowid, path, error FROM logs WHERE created_at < ?"
                                 " ORDER BY created_at, id LIMIT ?", (cutoff, _RETENTION_CHUNK)).fetchall()
            conn.executemany("INSERT INTO log_text (log_text, rowid, path, error) VALUES ('delete', ?, ?, ?)",
                             (tuple(row) for row in chunk))
            conn.execute("DELETE FROM log_metadata WHERE (key, value, log_created_at, log_id) IN"
                         f" ({_METADATA_PAIRS} logs.rowid IN (SELECT value FROM json_each(?)))",
                         (orjson.dumps([row[0] for row in chunk]).decode(),))
            conn.executemany("DELETE FROM logs WHERE rowid = ?", ((row[0],) for row in chunk))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return len(chunk)

    # -- the log writer ---------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[_SQLiteBatch]:
        if time.monotonic() >= self._next_upkeep:
            try:
                self.upkeep(time.time_ns() // 1_000_000)
            except StoreError as exc:  # the batch's records are not to wait for it: the next hour retries
                log.warning("log upkeep failed: %s", exc)
        conn = self._conn()
        with _store_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteBatch(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        with _store_errors():
            return _entry(self._conn(), prediction_id)

    def open_predictions(self, since_ms: int, limit: int, *, provider: str) -> list[tuple[str, str, str | None]]:
        with _store_errors():
            rows = self._conn().execute(
                "SELECT id, slug, key_id FROM predictions WHERE terminal_at IS NULL AND slug IS NOT NULL"
                " AND provider = ? AND created_at >= ? ORDER BY created_at LIMIT ?",
                (provider, since_ms, limit),
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    # -- the logs API -----------------------------------------------------------------------------
    def get(self, log_id: str) -> dict[str, Any] | None:
        with _store_errors():
            row = self._conn().execute(f"SELECT {FULL_SELECT} FROM logs WHERE id = ?", (log_id,)).fetchone()
        if row is None:
            return None
        found = detail_row(row)
        found["feedback"] = self.feedback_for(row["trace_id"]) if row["trace_id"] else []
        return found

    def _page(self, filters: LogFilter, columns: str, limit: int, after: tuple[int, str] | None) -> DbRows:
        conn = self._conn()
        with _store_errors():
            sql, params = page_query(filters, columns, limit, after, **_page_choices(conn, filters, limit))
            return conn.execute(sql, params).fetchall()

    def analytics_rows(self, filters: LogFilter, group: str | None = None) -> Iterator[tuple[Any, ...]]:
        if group is not None and group not in ANALYTICS_GROUPS:
            raise ValueError(f"analytics group must be one of {', '.join(ANALYTICS_GROUPS)}")
        sql, params = analytics_query(filters, group)
        with _store_errors():
            cursor = self._conn().execute(sql, params)
            cursor.row_factory = None  # plain tuples: one pass over every row in range
            yield from cursor

    # -- the prediction view ----------------------------------------------------------------------
    def list_predictions(self, filters: PredictionFilter, limit: int,
                         after: tuple[int, str] | None = None) -> Rows:
        clauses, params = _time_and_equal_clauses(filters, ("status", "model", "key_id", "slug"))
        if after is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = f"SELECT {_LEDGER_SELECT} FROM predictions{where} ORDER BY created_at DESC, id DESC LIMIT ?"
        with _store_errors():
            return [ledger_entry(row) for row in self._conn().execute(sql, [*params, limit])]

    def prediction_lifecycle(self, prediction_id: str, created_on_log_id: str | None, ended_on_log_id: str | None,
                             limit: int) -> Rows:
        with _store_errors():
            rows = self._conn().execute(
                f"SELECT {_STEP_COLUMNS}, {_SEEN_STATUS} FROM logs"
                " WHERE prediction_id = :id OR id = :ended_on OR id = :first ORDER BY created_at, id LIMIT :limit",
                {"id": prediction_id, "ended_on": ended_on_log_id, "first": created_on_log_id, "limit": limit},
            ).fetchall()
        steps = []
        for row in rows:
            step = dict(row)
            step["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else {}
            step["saw_status"] = row["saw_status"] if isinstance(row["saw_status"], str) else None
            steps.append(step)
        return steps

    # -- feedback ---------------------------------------------------------------------------------
    def add_feedback(self, items: Sequence[dict[str, Any]]) -> list[str]:
        rows = [_feedback_values(new_feedback(item, i)) for i, item in enumerate(items)]
        conn = self._conn()
        with _store_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO feedback (id, trace_id, value, weight, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return [row[0] for row in rows]

    def update_feedback(self, feedback_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        current = self.feedback(feedback_id)
        if current is None:
            return None
        merged = {**current, **{k: v for k, v in changes.items() if k in ("value", "weight", "metadata")}}
        _, _, value, weight, metadata, _ = _feedback_values(new_feedback(merged, 0))
        with _store_errors():
            self._conn().execute("UPDATE feedback SET value = ?, weight = ?, metadata = ? WHERE id = ?",
                                 (value, weight, metadata, feedback_id))
        return self.feedback(feedback_id)

    def feedback(self, feedback_id: str) -> dict[str, Any] | None:
        with _store_errors():
            row = self._conn().execute("SELECT * FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
        return feedback_row(row) if row else None

    def feedback_for(self, trace_id: str) -> Rows:
        with _store_errors():
            rows = self._conn().execute("SELECT * FROM feedback WHERE trace_id = ? ORDER BY created_at, id",
                                        (trace_id,)).fetchall()
        return [feedback_row(r) for r in rows]


class _SQLiteBatch(LedgerWrites):
    """``LogBatch`` on the connection holding the write transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def stored_ids(self, ids: Sequence[str]) -> set[str]:
        # One statement whatever the batch size: an IN list of N placeholders compiled a new statement per
        # N, and sqlite3's per-connection cache of them grew the log service's memory for minutes.
        rows = self._conn.execute("SELECT id FROM logs WHERE id IN (SELECT value FROM json_each(?))",
                                  (orjson.dumps(list(ids)),))
        return {row[0] for row in rows}

    def append_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        (last_before,) = self._conn.execute("SELECT coalesce(max(rowid), 0) FROM logs").fetchone()
        try:
            self._conn.executemany(_INSERT, list(map(_row_values, rows)))
            self._conn.execute(_FEED_TEXT, (last_before,))
            self._conn.execute(_FEED_METADATA, (last_before,))
        except sqlite3.OperationalError:
            raise  # the store itself: _store_errors makes it StoreUnavailable
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:  # a value SQLite cannot bind
            raise RecordRefused(str(exc)) from exc

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        return _entry(self._conn, prediction_id)


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


def _entry(conn: sqlite3.Connection, prediction_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_LEDGER_SELECT} FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
    return ledger_entry(row) if row is not None else None


# -- filters ----------------------------------------------------------------------------------------
def _time_and_equal_clauses(filters: Any, columns: tuple[str, ...]) -> tuple[list[str], list[Any]]:
    """SQL conditions for a filter's ``since``/``until`` (epoch ms, until exclusive) and for each of
    ``columns`` it sets: the part every list of the logs API shares."""
    clauses: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("created_at >= ?")
        params.append(int(filters.since))
    if filters.until is not None:
        clauses.append("created_at < ?")
        params.append(int(filters.until))
    for column in columns:
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return clauses, params


def _page_choices(conn: sqlite3.Connection, filters: LogFilter, limit: int) -> dict[str, Any]:
    """How a page reads its metadata and q filters, from how many records they match, counted up to
    ``enough``: sqrt(limit x records). A filter matching fewer is read from its index and its rows
    sorted; one matching more is dense enough that reading records newest first finds a page within
    about as many records. So a page costs at most ~``enough`` rows whatever the filter (SQLite's
    planner has no statistics for this: the gateway never runs ANALYZE)."""
    pairs = _metadata_pairs(filters)
    searched = bool(filters.q) and len(filters.q) >= _TRIGRAM  # type: ignore[arg-type]
    if len(pairs) < 2 and not searched:
        return {}
    (records,) = conn.execute(_RECORDS).fetchone()
    enough = max(limit, math.isqrt(limit * records))
    choices: dict[str, Any] = {}
    if len(pairs) > 1:  # the rarest pair leads
        counts = [conn.execute(_COUNT_PAIR, (*pair, enough)).fetchone()[0] for pair in pairs]
        choices["lead"] = counts.index(min(counts))
    if searched:
        choices["text_index"] = conn.execute(_COUNT_TEXT, (_trigrams(filters.q), enough)).fetchone()[0] < enough
    return choices


# Two subqueries: SQLite reads a lone min() or max() of the rowid from the b-tree's end, but both in one
# SELECT from every row (1.3 s at 1M records).
_RECORDS = "SELECT coalesce((SELECT max(rowid) FROM logs) - (SELECT min(rowid) FROM logs) + 1, 0)"
_COUNT_PAIR = "SELECT count(*) FROM (SELECT 1 FROM log_metadata WHERE key = ? AND value = ? LIMIT ?)"
_COUNT_TEXT = "SELECT count(*) FROM (SELECT 1 FROM log_text WHERE log_text MATCH ? LIMIT ?)"


def page_query(filters: LogFilter, columns: str, limit: int, after: tuple[int, str] | None, lead: int = 0,
               text_index: bool = True) -> tuple[str, list[Any]]:
    """One keyset page of the logs API, newest first: the SQL and its parameters. ``lead``: the metadata
    pair whose rows are read first; ``text_index``: q is looked up in ``log_text`` (else LIKE alone)."""
    source, clauses, params, at, log_id = _log_clauses(filters, lead, text_index)
    if after is not None:
        # Same rows as (created_at < t OR (created_at = t AND id < i)), written so SQLite keeps the
        # (created_at, id) range scan even after ANALYZE (measured: 0.1 ms instead of 106 ms).
        clauses.append(f"{at} <= ? AND ({at} < ? OR {log_id} < ?)")
        params += [after[0], after[0], after[1]]
    return f"SELECT {columns} FROM {source}{_where(clauses)} ORDER BY {at} DESC, {log_id} DESC LIMIT ?", [*params, limit]


def analytics_query(filters: LogFilter, group: str | None) -> tuple[str, list[Any]]:
    source, clauses, params, at, _ = _log_clauses(filters)
    return (f"SELECT created_at, status, latency_ms, cost_usd, cost_status, input_tokens, output_tokens"
            f"{', ' + group if group else ''} FROM {source}{_where(clauses)} ORDER BY {at}"), params


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _metadata_pairs(filters: LogFilter) -> list[tuple[str, str]]:
    return [(key.replace('"', ""), str(value)) for key, value in filters.metadata.items()]


def _trigrams(q: str) -> str:
    """An FTS5 query for the records that hold every 3-character piece of q (the index keeps no
    positions, so not necessarily in q's order: the LIKE that follows decides)."""
    pieces = dict.fromkeys(q[i:i + _TRIGRAM] for i in range(len(q) - _TRIGRAM + 1))
    return " AND ".join('"' + piece.replace('"', '""') + '"' for piece in pieces)


def _log_clauses(filters: LogFilter, lead: int = 0, text_index: bool = True) -> tuple[str, list[str], list[Any], str, str]:
    """The FROM, the conditions and their parameters, and the columns that order the rows (time, id).

    Every filter has an index (migration 9). A metadata filter reads the ``lead`` pair's rows from
    ``log_metadata`` newest first and joins each record, so a page stops after ``limit`` rows
    however common the pair; further pairs are looked up per record. A trace or prediction id, a
    handful of records, leads instead when given. ``q`` takes the records whose path or error holds
    each trigram of it (``log_text``), then checks them with the LIKE that defines it, so ASCII case folding
    and NULLs behave as before; a q under 3 characters has no trigram and is matched by LIKE alone.
    """
    pairs = _metadata_pairs(filters)
    by_metadata = bool(pairs) and filters.trace_id is None and filters.prediction_id is None
    source, at, log_id = "logs", "created_at", "id"
    clauses: list[str] = []
    params: list[Any] = []
    if by_metadata:
        source, at, log_id = "log_metadata AS m0 CROSS JOIN logs ON logs.id = m0.log_id", "m0.log_created_at", "m0.log_id"
        clauses.append("m0.key = ? AND m0.value = ?")
        params.extend(pairs.pop(lead))
    if filters.since is not None:
        clauses.append(f"{at} >= ?")
        params.append(int(filters.since))
    if filters.until is not None:
        clauses.append(f"{at} < ?")
        params.append(int(filters.until))
    for column in ("provider", "slug", "key_id", "trace_id", "model", "endpoint", "prediction_id"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.status == "error":
        clauses.append("status >= 400")
    elif filters.status == "success":
        clauses.append("status < 400")
    elif filters.status is not None:
        clauses.append("status = ?")
        params.append(int(filters.status))
    for pair in pairs:
        # On the leading pair's columns, when it leads: checked before its record is read.
        clauses.append("EXISTS (SELECT 1 FROM log_metadata AS m WHERE m.key = ? AND m.value = ?"
                       f" AND m.log_created_at = {at} AND m.log_id = {log_id})")
        params.extend(pair)
    if filters.q:
        if text_index and len(filters.q) >= _TRIGRAM:
            clauses.append("logs.rowid IN (SELECT rowid FROM log_text WHERE log_text MATCH ?)")
            params.append(_trigrams(filters.q))
        pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(path LIKE ? ESCAPE '\\' OR error LIKE ? ESCAPE '\\')")
        params.extend((pattern, pattern))
    return source, clauses, params, at, log_id


def _feedback_values(item: dict[str, Any]) -> tuple[str, str, int, float, str, int]:
    return (item["id"], item["trace_id"], item["value"], item["weight"], orjson.dumps(item["metadata"]).decode(),
            item["created_at"])
