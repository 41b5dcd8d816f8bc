"""What only the PostgreSQL log store has: its partitions, its indexes (no filter of the logs API scans
the logs table, shown by the planner on realistic statistics) and a prediction's end claimed by one
conditional UPDATE when two transactions race for it with nothing else ordering them."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from modelport.store.log_base import DAY_MS, SUMMARY_FIELDS, LogFilter
from tests.pg_support import fresh_database, need_psycopg
from tests.test_log_store import end, log_row, seen

pytestmark = pytest.mark.postgres
NOW = 1_800_000_000_000  # 2027-01-15 08:00 UTC


@pytest.fixture
def url() -> Iterator[str]:
    need_psycopg()
    with fresh_database() as found:
        yield found


def open_logs(url: str, **options: Any):
    from modelport.store.pg_logs import PostgresLogStore

    return PostgresLogStore(url, **options)


def test_partitions_are_made_ahead_and_on_demand_and_dropped_whole_by_retention(url: str) -> None:
    store = open_logs(url, retention_days=2)
    store.upkeep(NOW)
    assert [p for p in store.partitions() if p >= "logs_p2027"] == [
        "logs_p20270114", "logs_p20270115", "logs_p20270116", "logs_p20270117"]  # fmt: skip
    far = NOW + 400 * DAY_MS  # beyond every partition: its day's partition is made in the batch
    with store.batch() as batch:
        batch.append_logs([log_row(1, created_at=far), log_row(2, created_at=NOW - 5 * DAY_MS)])
    assert {row["id"] for row in store.iter_export()} == {"log_00000001", "log_00000002"}
    assert "logs_p20280219" in store.partitions() and "logs_p20270110" in store.partitions()
    store.upkeep(NOW)  # the partition of 5 days ago is wholly older than 2 days: dropped with its row
    assert "logs_p20270110" not in store.partitions()
    assert [row["id"] for row in store.iter_export()] == ["log_00000001"]
    with store.batch() as batch:  # and a late record of that day gets a partition again
        batch.append_logs([log_row(3, created_at=NOW - 5 * DAY_MS)])
    assert store.get("log_00000003") is not None
    store.close()


def test_two_transactions_racing_to_end_a_prediction_charge_it_once(url: str) -> None:
    """Past APPEND_LOCK (taken by every batch): two raw transactions, the second's UPDATE waiting on
    the first's row lock; the condition, re-checked on the committed row, lets only one through."""
    import psycopg

    from modelport.store.pg_logs import _PostgresBatch

    store = open_logs(url)
    with store.batch() as batch:
        batch.note_prediction(seen(1))
    first, second = psycopg.connect(url), psycopg.connect(url)
    outcomes: dict[str, bool] = {}
    first_won = _PostgresBatch(store, first).end_prediction("p1", end("log_first"))
    waiting = threading.Thread(target=lambda: outcomes.update(second=_PostgresBatch(store, second).end_prediction(
        "p1", end("log_second"))))  # fmt: skip
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive()  # blocked on the first's uncommitted update
    first.commit()
    waiting.join(10)
    second.commit()
    assert (first_won, outcomes["second"]) == (True, False)
    assert store.prediction_entry("p1")["terminal_log_id"] == "log_first"  # type: ignore[index]
    first.close()
    second.close()
    store.close()


def realistic_rows(count: int) -> list[dict[str, Any]]:
    """A gateway's mix over 3 days: most calls succeed, a few keys and models dominate, a trace or a
    prediction has a handful of records, metadata varies per team and run, errors are rare."""
    chance = random.Random(11)
    rows = []
    for n in range(count):
        status = chance.choices([200, 201, 400, 404, 429, 500, 502], [80, 5, 4, 3, 3, 3, 2])[0]
        replicate = chance.random() < 0.1
        rows.append(log_row(
            n, created_at=NOW - 3 * DAY_MS + n * (3 * DAY_MS // count), trace_id=f"t-{n // 3}",
            provider="replicate" if replicate else chance.choice(["openai", "anthropic", "gemini"]),
            slug=f"team-{chance.randrange(20)}", key_id=f"key_{int(chance.paretovariate(1.2)) % 200}",
            model=f"model-{int(chance.paretovariate(1.5)) % 50}", endpoint=chance.choice(["proxy", "chat", "embeddings"]),
            status=status, prediction_id=f"pred{n // 4}" if replicate else None,
            path=chance.choice(["/v1/chat/completions", "/v1/embeddings", f"/v1/predictions/pred{n // 4}"]),
            error=f"upstream {status}: {chance.choice(['rate limited', 'bad gateway', 'not found'])}" if status >= 400 else None,
            metadata=f'{{"team": "t{chance.randrange(30)}", "run": "r{chance.randrange(1000)}"}}'))
    return rows


LIST_FILTERS = [
    LogFilter(), LogFilter(since=NOW - DAY_MS, until=NOW - DAY_MS + 3_600_000), LogFilter(provider="replicate"),
    LogFilter(slug="team-3"), LogFilter(status="error"), LogFilter(status="success"), LogFilter(status=502),
    LogFilter(key_id="key_150"), LogFilter(trace_id="t-4242"), LogFilter(model="model-40"),
    LogFilter(endpoint="embeddings"), LogFilter(prediction_id="pred777"), LogFilter(metadata={"run": "r123"}),
    LogFilter(metadata={"team": "t7", "run": "r5"}), LogFilter(q="bad gateway"), LogFilter(q="predictions/pred12"),
    LogFilter(since=NOW - DAY_MS, key_id="key_3", status="error"),
]  # fmt: skip


def test_no_filter_of_the_logs_api_scans_the_logs_partitions(url: str) -> None:
    from modelport.store.pg_logs import _LIFECYCLE, _STORED_IDS, page_query

    store = open_logs(url)
    store.upkeep(NOW)
    rows = realistic_rows(20_000)
    for start in range(0, len(rows), 2000):
        with store.batch() as batch:
            batch.append_logs(rows[start:start + 2000])
    plans = {}
    with store._connection() as conn:
        conn.execute("ANALYZE logs")
        # An empty partition (the days ahead) is read by a Seq Scan of nothing: the planner's right choice.
        holding_rows = [name for (name,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'logs'::regclass AND c.reltuples > 0")]  # fmt: skip
        assert len(holding_rows) == 4  # the 3 days of rows, cut by 4 midnights
        for filters in LIST_FILTERS:
            for after in (None, (NOW - DAY_MS, "log_00010000")):  # the first page and one further on
                query, params = page_query(filters, ", ".join(SUMMARY_FIELDS), 51, after)
                plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, params))
                plans[(repr(filters), after)] = plan
        ids = [row["id"] for row in rows[::40]]
        plans["stored_ids"] = "\n".join(row[0] for row in conn.execute("EXPLAIN " + _STORED_IDS, (ids,)))
        plans["prediction_lifecycle"] = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + _LIFECYCLE, {"id": "pred777", "ended_on": "log_00003110", "first": "log_00003108", "limit": 200}))
    scanned = {name: [line for line in plan.splitlines() if any(f"Seq Scan on {p} " in line for p in holding_rows)]
               for name, plan in plans.items()}
    assert not any(scanned.values()), {name: lines for name, lines in scanned.items() if lines}
    store.close()


def test_upkeep_indexes_the_pending_gin_entries_of_days_that_are_over(url: str) -> None:
    """A day over is read, not written: its GIN pending lists (what a search reads whole) go into the
    indexes and it gets statistics; the day being written keeps its list (its inserts stay cheap)."""
    from modelport.store.pg_partitions import partition_name

    store = open_logs(url)
    store.upkeep(NOW)
    today = NOW // DAY_MS
    with store.batch() as batch:
        batch.append_logs([log_row(n, created_at=(today - 2 + n % 3) * DAY_MS + n, metadata=f'{{"run": "r{n}"}}',
                                   error=f"upstream 429: rate limited {n}") for n in range(300)])

    def pending_pages(day: int) -> int:  # moves the list it counts: each day is asked once
        with store._connection() as conn:
            return conn.execute(
                "SELECT sum(gin_clean_pending_list(indexrelid)) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
                " JOIN pg_am am ON am.oid = c.relam WHERE x.indrelid = %s::regclass AND am.amname = 'gin'",
                (partition_name(day),)).fetchone()[0]  # fmt: skip

    assert pending_pages(today - 2) > 0  # what an insert leaves, before any upkeep
    store.upkeep(NOW)
    assert pending_pages(today - 1) == 0
    assert pending_pages(today) > 0
    with store._connection() as conn:
        analyzed = {name for (name,) in conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname LIKE 'logs_p%' AND last_analyze IS NOT NULL")}
    assert {partition_name(today - 2), partition_name(today - 1)} <= analyzed
    assert partition_name(today) not in analyzed
    store.close()


def test_a_partition_another_node_dropped_is_made_again_for_a_late_record(url: str) -> None:
    import time

    writer, other = open_logs(url), open_logs(url, retention_days=2)
    late = time.time_ns() // 1_000_000 - 5 * DAY_MS  # a replayed spill of 5 days ago, say
    with writer.batch() as batch:
        batch.append_logs([log_row(1, created_at=late)])
    with writer.batch() as batch:  # the writer has seen that day's partition now
        batch.append_logs([log_row(2, created_at=late + 1)])
    other.upkeep(time.time_ns() // 1_000_000)  # another node's retention drops it
    assert writer.get("log_00000001") is None
    with writer.batch() as batch:
        batch.append_logs([log_row(3, created_at=late + 2)])
    assert writer.get("log_00000003") is not None
    writer.close()
    other.close()


def test_an_upkeep_that_cannot_run_now_does_not_hold_up_the_batch_it_came_with(url: str) -> None:
    import time

    import psycopg

    from modelport.store.pg_partitions import partition_name

    store = open_logs(url, retention_days=1, busy_timeout=0.2)
    old = time.time_ns() // 1_000_000 - 5 * DAY_MS
    with store.batch() as batch:
        batch.append_logs([log_row(1, created_at=old)])
    old_partition = partition_name(old // DAY_MS)
    with psycopg.connect(url) as reader:  # a long read of that day holds off its DROP
        reader.execute(f"SELECT count(*) FROM {old_partition}")
        store._next_upkeep = 0.0  # an hour has passed
        with store.batch() as batch:
            batch.append_logs([log_row(2, created_at=old + 5 * DAY_MS)])
        assert store.get("log_00000002") is not None and old_partition in store.partitions()
    store._next_upkeep = 0.0
    with store.batch() as batch:  # the next upkeep, with the reader gone, drops it
        batch.append_logs([log_row(3, created_at=old + 5 * DAY_MS)])
    assert old_partition not in store.partitions() and store.get("log_00000001") is None
    store.close()
