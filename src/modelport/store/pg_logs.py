"""``LogStore`` on PostgreSQL: the ``logs`` (partitioned by day), ``feedback`` and ``predictions`` tables
of migration 2 (``pg_migrations.py``), for several nodes writing one database.

Writing. ``batch()`` is one transaction on a pooled connection that first takes a transaction-level
advisory lock (``APPEND_LOCK``), so log batches of every writer on every node commit one after
another. Under it, "a stored id is skipped" is exact: the primary key of a partitioned table must hold
the partition key, so ``(id, created_at)`` alone would let one id be stored twice under two times;
instead ``stored_ids`` and ``append_logs`` look the ids up in every partition (the primary key's
index leads with id) while no other writer can add one. A row's created_at is not derived from its id
because an id is only time-ordered when the gateway made it (``new_time_ordered_id``) and
created_at is taken a moment later: equal to the millisecond most of the time, not always. Since an
id found unstored under the lock stays so until the batch commits, rows go straight into ``logs`` by
binary COPY (no staging table, no ``ON CONFLICT``); the price is that log batches of all writers
commit one at a time (measured: bench/README.md, "PostgreSQL log ingest").
``end_prediction`` is one ``UPDATE ... WHERE terminal_at IS NULL``: its row count decides.

Partitions. One per UTC day, ``logs_pYYYYMMDD``, covering [day, next day) in epoch ms. ``upkeep``
(at open, then from ``batch()`` once an hour) creates yesterday's to ``PARTITIONS_AHEAD`` days
ahead and drops every partition wholly older than ``retention_days``; a row outside them (a clock
far off, a replay of old records) gets its day's partition created inside the batch, so no insert
fails for want of one. Partition DDL runs under ``APPEND_LOCK`` too. Each upkeep then settles the days already over
(``pg_partitions.settle_closed``: GIN pending lists indexed, statistics for a day never analyzed).

Reading: as ``sqlite_logs.py``, same filters, same order (ids are ``COLLATE "C"``, byte order as in
SQLite), same row shapes (``log_base.summary_row`` and friends). Every filter is served by an index:
equality ones by ``(column, created_at)`` or their own, metadata by GIN ``jsonb_path_ops`` (``@>``),
``q`` by pg_trgm GIN indexes on path and error (``ILIKE``; a q under 3 characters has no trigram
to look up, so its index scan reads the whole index). Slug, prediction id and error are indexed
only where set (migration 4): most rows hold NULL there, and no filter matches a NULL.

Differences a caller can see: a metadata filter matches string values (Portkey's metadata is
strings; SQLite would also match the number 5 for "5"); ``q`` folds case beyond ASCII (SQLite's LIKE
folds ASCII only); a NUL character in a text value is refused (``RecordRefused``).
"""

from __future__ import annotations

import logging
import operator
import os
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg import errors
from psycopg.adapt import AdaptersMap
from psycopg.rows import dict_row, tuple_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

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
from .pg_connect import ADAPTERS, check_database_url, connection, connection_options, describe, migrate, one_line
from .pg_partitions import (
    PARTITIONS_AHEAD,
    create_partition,
    drop_partition,
    partition_days,
    partition_name,
    settle_closed,
)
from .pg_replica import abandon_connection

log = logging.getLogger("modelport.store")
POOL_SIZE = 4  # the writer, the logs API, the CLI: short calls
POOL_WAIT_SECONDS = 5.0
# pg_advisory_xact_lock's key for log appends and partition DDL: the bytes of "mp-logs".
APPEND_LOCK = int.from_bytes(b"mp-logs", "big")

# json loaded as its text too, as jsonb is (pg_connect.ADAPTERS): log_base's row shapes parse it.
_ADAPTERS = AdaptersMap(ADAPTERS)
_ADAPTERS.register_loader("json", TextLoader)

# Binary COPY straight into ``logs``, each value in its column's binary format: JSON text goes as text
# (json's binary format), ``metadata`` as jsonb's (a version byte, 1, then the text), flags as booleans.
_COPY_TYPES_BY_COLUMN = {
    "created_at": "int8", "status": "int4", "latency_ms": "float8", "upstream_latency_ms": "float8",
    "request_bytes": "int8", "response_bytes": "int8", "gateway_exception": "bool", "stream": "bool",
    "input_tokens": "int8", "output_tokens": "int8", "total_tokens": "int8", "cost_usd": "float8",
    "retry_count": "int4", "request_body": "bytea", "response_body": "bytea", "metadata": "bytea",
}  # fmt: skip
_COPY_TYPES = [_COPY_TYPES_BY_COLUMN.get(name, "text") for name in LOG_COLUMNS]
_COPY = f"COPY logs ({', '.join(LOG_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_METADATA_AT = LOG_COLUMNS.index("metadata")
_JSONB_VERSION = b"\x01"
_row_values = operator.itemgetter(*LOG_COLUMNS)
# One primary-key probe per id and partition, whatever the statistics: "id = ANY(...)" let the planner
# hash the ids and scan a partition not analyzed yet (today's, on a server without autovacuum) whole.
_STORED_IDS = ("SELECT given.id FROM unnest(%s::text[]) AS given (id)"
               " CROSS JOIN LATERAL (SELECT 1 FROM logs WHERE logs.id = given.id LIMIT 1) AS stored")
_LEDGER_SELECT = ", ".join(LEDGER_FIELDS)
_STEP_SELECT = ("id, created_at, method, path, endpoint, status, latency_ms, key_id, key_name, error, metadata,"
                " COALESCE(modelport_seen_status(response_body, %(id)s),"
                " modelport_seen_status(request_body, %(id)s)) AS saw_status")
_LIFECYCLE = (f"SELECT {_STEP_SELECT} FROM logs WHERE prediction_id = %(id)s OR id = %(ended_on)s OR id = %(first)s"
              " ORDER BY created_at, id LIMIT %(limit)s")
_ANALYTICS_FETCH = 5000
Rows = list[dict[str, Any]]  # inside the class ``list`` is a method


class PostgresLogStore(PagedLogReads):
    """``LogStore`` on the PostgreSQL database at ``url`` (migrated on open).

    ``retention_days``: partitions wholly older than that are dropped by ``upkeep`` (0: kept forever).
    ``pool_size``: connections at most; ``busy_timeout``: seconds a call waits for a pooled connection
    and a batch for ``APPEND_LOCK`` before ``StoreUnavailable``.
    """

    def __init__(self, url: str, retention_days: int = 0, pool_size: int = POOL_SIZE,
                 busy_timeout: float = POOL_WAIT_SECONDS) -> None:
        self._conninfo = check_database_url(url)
        self._retention_days = retention_days
        self._pool_size = pool_size
        self._busy_timeout = busy_timeout
        self._closed = False
        self._partition_days: set[int] = set()  # days known to have a partition
        self._pooled: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        with connection(self._conninfo) as conn:
            migrate(conn, url)
        self._pool = self._open_pool()
        self._next_upkeep = 0.0
        try:
            self.upkeep(_now_ms())
        except BaseException:
            self._pool.close()
            raise
        _open_log_stores.add(self)

    # -- connections ------------------------------------------------------------------------------
    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self._conninfo, min_size=1, max_size=self._pool_size, timeout=self._busy_timeout, num_workers=1,
            kwargs=connection_options(context=_ADAPTERS, options=f"-c lock_timeout={int(self._busy_timeout * 1000)}"),
            name="modelport-logs", open=False, configure=self._pooled.add, check=ConnectionPool.check_connection,
        )  # fmt: skip
        pool.open(wait=False)
        return pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the database's failures become the store's errors."""
        if self._closed:
            raise RuntimeError("the log store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(f"PostgreSQL at {describe(self._conninfo)} gave no connection within "
                                   f"{self._busy_timeout:g} s") from None
        except (psycopg.OperationalError, errors.LockNotAvailable) as exc:
            raise StoreUnavailable(f"PostgreSQL at {describe(self._conninfo)} failed: {one_line(exc)}") from None
        except psycopg.DataError as exc:
            raise ValueError(f"the database refused a value: {one_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(one_line(exc)) from None

    @contextmanager
    def _cursor(self, row_factory: Any = dict_row) -> Iterator[psycopg.Cursor]:
        with self._connection() as conn, conn.cursor(row_factory=row_factory) as cursor:
            yield cursor

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    def _forget_connections_after_fork(self) -> None:
        # As PostgresStore: the child must not speak on the parent's sockets; it opens its own.
        for conn in list(self._pooled):
            abandon_connection(conn)
        self._pooled = weakref.WeakSet()
        _ABANDONED_POOLS.append(self._pool)
        if not self._closed:
            self._pool = self._open_pool()

    # -- partitions ---------------------------------------------------------------------------------
    def upkeep(self, now_ms: int) -> None:
        self._next_upkeep = time.monotonic() + UPKEEP_INTERVAL_SECONDS
        today = now_ms // DAY_MS
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
            existing = partition_days(conn)
            if self._retention_days:
                oldest_kept = (now_ms - self._retention_days * DAY_MS) // DAY_MS  # a day holding a kept record
                for day in sorted(d for d in existing if d < oldest_kept):
                    drop_partition(conn, day)
                    existing.discard(day)
            for day in range(today - 1, today + PARTITIONS_AHEAD + 1):
                if day not in existing:
                    create_partition(conn, day)
                    existing.add(day)
        self._partition_days = existing
        self._settle_closed(today)

    def _settle_closed(self, today: int) -> None:
        """``pg_partitions.settle_closed``, outside APPEND_LOCK: batches go on meanwhile. A failure (a
        partition another node drops at that moment) waits for the next upkeep."""
        try:
            with self._connection() as conn:
                moved, analyzed = settle_closed(conn, today)
        except StoreError as exc:
            log.warning("settling the closed log partitions failed: %s", exc)
            return
        if moved or analyzed:
            log.info("closed log partitions settled: %d pages of GIN pending lists indexed, %d partitions analyzed",
                     moved, len(analyzed))

    def partitions(self) -> list[str]:
        """The names of the logs table's partitions, oldest first."""
        with self._connection() as conn:
            return [partition_name(day) for day in sorted(partition_days(conn))]

    # -- the log writer -----------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[_PostgresBatch]:
        if time.monotonic() >= self._next_upkeep:
            try:
                self.upkeep(_now_ms())
            except StoreError as exc:  # the batch's records are not to wait for it: the next hour retries
                log.warning("log upkeep failed: %s", exc)
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
            yield _PostgresBatch(self, conn)

    def _ensure_days(self, conn: psycopg.Connection, days: set[int]) -> None:
        """Partitions for ``days`` (the caller holds APPEND_LOCK). A day from yesterday on that is known
        costs nothing: retention (any node's) never drops it. An older one is looked up in the catalog,
        since another node's upkeep may have dropped it since this one last looked."""
        recent = _now_ms() // DAY_MS - 1
        missing = {day for day in days if day < recent or day not in self._partition_days}
        if missing:
            existing = partition_days(conn)
            for day in sorted(missing - existing):
                create_partition(conn, day)  # known once committed: the next batch finds it in the catalog
            self._partition_days = existing

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        with self._cursor() as cursor:
            return _entry(cursor, prediction_id)

    def open_predictions(self, since_ms: int, limit: int, *, provider: str) -> list[tuple[str, str, str | None]]:
        with self._cursor(row_factory=tuple_row) as cursor:
            rows = cursor.execute(
                "SELECT id, slug, key_id FROM predictions WHERE terminal_at IS NULL AND slug IS NOT NULL"
                " AND provider = %s AND created_at >= %s ORDER BY created_at, id LIMIT %s",
                (provider, since_ms, limit),
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    # -- the logs API -------------------------------------------------------------------------------
    def get(self, log_id: str) -> dict[str, Any] | None:
        with self._cursor() as cursor:
            row = cursor.execute(f"SELECT {FULL_SELECT} FROM logs WHERE id = %s", (log_id,)).fetchone()
        if row is None:
            return None
        found = detail_row(row)
        found["feedback"] = self.feedback_for(row["trace_id"]) if row["trace_id"] else []
        return found

    def _page(self, filters: LogFilter, columns: str, limit: int, after: tuple[int, str] | None) -> Rows:
        query, params = page_query(filters, columns, limit, after)
        with self._cursor() as cursor:
            return cursor.execute(query, params).fetchall()  # type: ignore[arg-type]

    def analytics_rows(self, filters: LogFilter, group: str | None = None) -> Iterator[tuple[Any, ...]]:
        if group is not None and group not in ANALYTICS_GROUPS:
            raise ValueError(f"analytics group must be one of {', '.join(ANALYTICS_GROUPS)}")
        clauses, params = _log_clauses(filters)
        query = ("SELECT created_at, status, latency_ms, cost_usd, cost_status, input_tokens, output_tokens"
                 f"{', ' + group if group else ''} FROM logs{_where(clauses)} ORDER BY created_at")
        # A server-side cursor: one pass over every row in range, a fetch at a time.
        with self._connection() as conn, conn.transaction(), conn.cursor(name="modelport_analytics") as cursor:
            cursor.itersize = _ANALYTICS_FETCH
            cursor.execute(query, params)  # type: ignore[arg-type]
            yield from cursor

    # -- the prediction view ------------------------------------------------------------------------
    def list_predictions(self, filters: PredictionFilter, limit: int, after: tuple[int, str] | None = None) -> Rows:
        clauses, params = _time_and_equal_clauses(filters, ("status", "model", "key_id", "slug"))
        if after is not None:
            clauses.append("(created_at, id) < (%s, %s)")
            params += [after[0], after[1]]
        query = f"SELECT {_LEDGER_SELECT} FROM predictions{_where(clauses)} ORDER BY created_at DESC, id DESC LIMIT %s"
        with self._cursor() as cursor:
            return [ledger_entry(row) for row in cursor.execute(query, [*params, limit])]  # type: ignore[arg-type]

    def prediction_lifecycle(self, prediction_id: str, created_on_log_id: str | None, ended_on_log_id: str | None,
                             limit: int) -> Rows:
        with self._cursor() as cursor:
            rows = cursor.execute(
                _LIFECYCLE,
                {"id": prediction_id, "ended_on": ended_on_log_id, "first": created_on_log_id, "limit": limit},
            ).fetchall()
        for step in rows:
            step["metadata"] = orjson.loads(step["metadata"]) if step["metadata"] else {}
        return rows

    # -- feedback -----------------------------------------------------------------------------------
    def add_feedback(self, items: Sequence[dict[str, Any]]) -> list[str]:
        rows = [_feedback_values(new_feedback(item, i)) for i, item in enumerate(items)]
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO feedback (id, trace_id, value, weight, metadata, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
        return [row[0] for row in rows]

    def update_feedback(self, feedback_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        current = self.feedback(feedback_id)
        if current is None:
            return None
        merged = {**current, **{k: v for k, v in changes.items() if k in ("value", "weight", "metadata")}}
        _, _, value, weight, metadata, _ = _feedback_values(new_feedback(merged, 0))
        with self._cursor() as cursor:
            cursor.execute("UPDATE feedback SET value = %s, weight = %s, metadata = %s WHERE id = %s",
                           (value, weight, metadata, feedback_id))
        return self.feedback(feedback_id)

    def feedback(self, feedback_id: str) -> dict[str, Any] | None:
        with self._cursor() as cursor:
            row = cursor.execute("SELECT * FROM feedback WHERE id = %s", (feedback_id,)).fetchone()
        return feedback_row(row) if row else None

    def feedback_for(self, trace_id: str) -> Rows:
        with self._cursor() as cursor:
            rows = cursor.execute("SELECT * FROM feedback WHERE trace_id = %s ORDER BY created_at, id",
                                  (trace_id,)).fetchall()
        return [feedback_row(r) for r in rows]


class _PostgresBatch(LedgerWrites):
    """``LogBatch`` on the connection holding the transaction (and APPEND_LOCK)."""

    __slots__ = ("_store", "_conn", "_checked", "_stored")
    placeholder = "%s"

    def __init__(self, store: PostgresLogStore, conn: psycopg.Connection) -> None:
        self._store = store
        self._conn = conn
        self._checked: set[str] = set()  # ids looked up under the lock: what is not stored stays so
        self._stored: set[str] = set()  # and those of them found stored

    def stored_ids(self, ids: Sequence[str]) -> set[str]:
        ids = list(ids)
        found = {row[0] for row in self._conn.execute(_STORED_IDS, (ids,))}
        self._checked.update(ids)
        self._stored |= found
        return found

    def append_logs(self, rows: Sequence[dict[str, Any]]) -> None:
        # Under APPEND_LOCK an id looked up and not found stays unstored until this transaction ends, so
        # the rows can be copied in without ON CONFLICT: ids not looked up yet are looked up now.
        unchecked = [row["id"] for row in rows if row["id"] not in self._checked]
        skip = self._stored | (self.stored_ids(unchecked) if unchecked else set())
        fresh = []
        for row in rows:
            if row["id"] not in skip:
                skip.add(row["id"])  # and a second row with one id in the same call is skipped too
                fresh.append(row)
        if not fresh:
            return
        conn = self._conn
        self._store._ensure_days(conn, {row["created_at"] // DAY_MS for row in fresh})
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(_COPY) as copy:
                # A savepoint: a refused value leaves the batch's other work as it was.
                copy.set_types(_COPY_TYPES)
                for row in fresh:
                    values = list(_row_values(row))
                    metadata = values[_METADATA_AT]
                    if metadata is not None:
                        values[_METADATA_AT] = _JSONB_VERSION + metadata.encode()
                    copy.write_row(values)
        except (psycopg.DataError, errors.IntegrityError, ValueError, TypeError, OverflowError, AttributeError) as exc:
            raise RecordRefused(one_line(exc)) from exc
        except errors.QueryCanceled as exc:  # COPY aborted by a value psycopg could not dump
            raise RecordRefused(one_line(exc.__cause__ or exc)) from exc

    def prediction_entry(self, prediction_id: str) -> dict[str, Any] | None:
        with self._conn.cursor(row_factory=dict_row) as cursor:
            return _entry(cursor, prediction_id)


def _entry(cursor: psycopg.Cursor, prediction_id: str) -> dict[str, Any] | None:
    row = cursor.execute(f"SELECT {_LEDGER_SELECT} FROM predictions WHERE id = %s", (prediction_id,)).fetchone()
    return ledger_entry(row) if row is not None else None


def _feedback_values(item: dict[str, Any]) -> tuple[str, str, int, float, str, int]:
    return (item["id"], item["trace_id"], item["value"], item["weight"], orjson.dumps(item["metadata"]).decode(),
            item["created_at"])


# -- filters --------------------------------------------------------------------------------------------
def page_query(filters: LogFilter, columns: str, limit: int, after: tuple[int, str] | None) -> tuple[str, list[Any]]:
    """A page of the logs API, newest first, after the keyset cursor ``after`` (the EXPLAIN test reads it)."""
    clauses, params = _log_clauses(filters)
    if after is not None:
        clauses.append("(created_at, id) < (%s, %s)")
        params += [after[0], after[1]]
    return f"SELECT {columns} FROM logs{_where(clauses)} ORDER BY created_at DESC, id DESC LIMIT %s", [*params, limit]


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _time_and_equal_clauses(filters: Any, columns: tuple[str, ...]) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("created_at >= %s")
        params.append(int(filters.since))
    if filters.until is not None:
        clauses.append("created_at < %s")
        params.append(int(filters.until))
    for column in columns:
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return clauses, params


def _log_clauses(filters: LogFilter) -> tuple[list[str], list[Any]]:
    clauses, params = _time_and_equal_clauses(
        filters, ("provider", "slug", "key_id", "trace_id", "model", "endpoint", "prediction_id"))
    if filters.status == "error":
        clauses.append("status >= 400")
    elif filters.status == "success":
        clauses.append("status < 400")
    elif filters.status is not None:
        clauses.append("status = %s")
        params.append(int(filters.status))
    if filters.metadata:
        clauses.append("metadata @> %s::jsonb")
        params.append(orjson.dumps({key.replace('"', ""): str(value) for key, value in filters.metadata.items()}).decode())
    if filters.q:
        pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(path ILIKE %s OR error ILIKE %s)")
        params.extend((pattern, pattern))
    return clauses, params


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_postgres_log_store(url: str, retention_days: int = 0) -> PostgresLogStore:
    """The log store at ``url``, migrated, with today's partitions."""
    return PostgresLogStore(url, retention_days=retention_days)


_open_log_stores: weakref.WeakSet[PostgresLogStore] = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections_after_fork() for store in list(_open_log_stores)])
_ABANDONED_POOLS: list[ConnectionPool] = []
