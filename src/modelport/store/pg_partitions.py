"""The daily partitions of the PostgreSQL ``logs`` table (``pg_logs.py`` decides when; this says how).

A partition holds one UTC day, [day, next day) in epoch ms, and is named ``logs_pYYYYMMDD``: the
catalog's names are the record of which days exist, so no table of our own can disagree with them.
Callers hold ``pg_logs.APPEND_LOCK``, so DDL on the partitions never races.
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


def create_partition(conn: psycopg.Connection, day: int) -> None:
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF logs FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(partition_name(day)), sql.Literal(day * DAY_MS), sql.Literal((day + 1) * DAY_MS)))


def drop_partition(conn: psycopg.Connection, day: int) -> None:
    """The day's partition and its rows, at once (retention): no row-by-row delete, no bloat left."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition_name(day))))
