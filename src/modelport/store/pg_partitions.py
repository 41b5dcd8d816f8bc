"""The daily partitions of the PostgreSQL ``logs`` table (``pg_logs.py`` decides when; this says how).

A partition holds one UTC day, [day, next day) in epoch ms, and is named ``logs_pYYYYMMDD``: the
catalog's names are the record of which days exist, so no table of our own can disagree with them.
Callers hold ``pg_logs.APPEND_LOCK``, so DDL on the partitions never races (``settle_closed`` does no
DDL and needs no lock).

A day's partition is written until its day ends, then only read (a replayed spill aside). Its GIN
indexes (metadata, ``q``'s trigrams) take inserts into a pending list that every search of the index
reads whole until VACUUM, autoanalyze or 4 MB (``gin_pending_list_limit``) moves it into the index;
a server without autovacuum (or a partition autovacuum has not reached yet) leaves up to 4 MB per
index and partition unindexed, and a rare ``q`` or metadata value then read that in every daily
partition: 4-7 s and ~0.5 s at 1M records (bench/README.md, "Logs-API filters at 1M records").
``settle_closed`` moves those lists into their indexes once a day is over, and gives a partition
never analyzed its statistics, so the planner knows a closed day as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg import sql

from .log_base import DAY_MS

PARTITIONS_AHEAD = 2  # days of partitions created ahead of today
_PREFIX = "logs_p"


def partition_name(day: int) -> str:
    """``day``: days since the epoch (``created_at // DAY_MS``)."""
    return _PREFIX + datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y%m%d")


def partition_days(conn: psycopg.Connection) -> set[int]:
    """The days that have a partition, read from the catalog."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'logs'::regclass"
    ).fetchall()
    days = set()
    for (name,) in rows:
        digits = name[len(_PREFIX):]
        if name.startswith(_PREFIX) and digits.isdigit():
            days.add(int(datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC).timestamp()) // 86_400)
    return days


def settle_closed(conn: psycopg.Connection, today: int) -> tuple[int, list[str]]:
    """Every partition of a day before ``today``: its GIN pending lists moved into the indexes (a list
    already empty costs a read of the index's first page), and ANALYZE of those never analyzed.
    Returns (pages of pending list moved, partitions analyzed)."""
    closed = [(oid, name) for oid, name in conn.execute(
        "SELECT c.oid, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'logs'::regclass AND c.relname < %s", (partition_name(today),))]  # fmt: skip
    if not closed:
        return 0, []
    oids = [oid for oid, _ in closed]
    moved = conn.execute(
        "SELECT COALESCE(sum(gin_clean_pending_list(x.indexrelid)), 0) FROM pg_index x"
        " JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_am am ON am.oid = ic.relam"
        " WHERE x.indrelid = ANY(%s) AND am.amname = 'gin'", (oids,)).fetchone()  # fmt: skip
    unanalyzed = [name for (name,) in conn.execute(
        "SELECT relname FROM pg_stat_user_tables WHERE relid = ANY(%s)"
        " AND last_analyze IS NULL AND last_autoanalyze IS NULL ORDER BY relname", (oids,))]  # fmt: skip
    for name in unanalyzed:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    return int(moved[0]) if moved else 0, unanalyzed


def create_partition(conn: psycopg.Connection, day: int) -> None:
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF logs FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(partition_name(day)), sql.Literal(day * DAY_MS), sql.Literal((day + 1) * DAY_MS)))


def drop_partition(conn: psycopg.Connection, day: int) -> None:
    """The day's partition and its rows, at once (retention): no row-by-row delete, no bloat left."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition_name(day))))
