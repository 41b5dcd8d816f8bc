"""What only the SQLite log store has: its side tables for the metadata and q filters (migration 9),
an index for every filter of the logs API (shown by SQLite's own plans, with and without ANALYZE),
the same rows whichever way a page reads its q, a database of before them migrated with its records
backfilled, and retention deleting side rows with their records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from modelport.store import sqlite_logs
from modelport.store.log_base import DAY_MS, SUMMARY_FIELDS, LogFilter
from modelport.store.migrations import MIGRATIONS, apply_migrations
from modelport.store.sqlite_logs import SQLiteLogStore, _page_choices, _trigrams, page_query
from tests.test_log_store import log_row
from tests.test_pg_logs import LIST_FILTERS, NOW, realistic_rows

COLUMNS = ", ".join(SUMMARY_FIELDS)
FILTERS = [*LIST_FILTERS, LogFilter(q="v1"), LogFilter(q="/v1/"), LogFilter(metadata={"team": "t7", "run": "r5"}),
           LogFilter(trace_id="t-4242", metadata={"team": "t7"}), LogFilter(q="not found", provider="gemini")]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> SQLiteLogStore:
    path = tmp_path_factory.mktemp("plans") / "modelport.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn)
    conn.close()
    store = SQLiteLogStore(path)
    rows = realistic_rows(20_000)
    for start in range(0, len(rows), 2000):
        with store.batch() as batch:
            batch.append_logs(rows[start:start + 2000])
    yield store
    store.close()


def plan_lines(conn: sqlite3.Connection, filters: LogFilter, after: tuple[int, str] | None) -> list[str]:
    query, params = page_query(filters, COLUMNS, 51, after, **_page_choices(conn, filters, 51))
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)]


def may_walk(conn: sqlite3.Connection, filters: LogFilter) -> bool:
    """Whether a page may read records newest first through logs_by_time (an ordered walk that stops at
    the page's end) rather than an index of the filter's own: no filter; success, most records; a q too
    short for a trigram, or so common that sorting its matches would cost more than walking to them."""
    if filters in (LogFilter(), LogFilter(status="success")):
        return True
    return bool(filters.q) and not _page_choices(conn, filters, 51).get("text_index", False)


@pytest.mark.parametrize("analyzed", [False, True], ids=["as the gateway leaves it", "after ANALYZE"])
def test_every_filter_of_the_logs_api_reads_the_logs_through_an_index(filled: SQLiteLogStore, analyzed: bool) -> None:
    """As the gateway leaves it (no ANALYZE), every filter reads through its own index, or walks the
    time index where ``may_walk`` says so; an index walked (SCAN ... USING INDEX) is read in page order
    and stops at the page's end. After ANALYZE, SQLite may prefer that walk for a common value, as
    PostgreSQL's planner does, but neither reads a table through without an index."""
    conn = sqlite3.connect(filled.path, isolation_level=None)
    conn.execute("ANALYZE" if analyzed else "DROP TABLE IF EXISTS sqlite_stat1")
    wrong = {}
    for filters in FILTERS:
        for after in (None, (NOW - DAY_MS, "log_00010000")):  # the first page and one further on
            lines = plan_lines(conn, filters, after)
            scans = [line for line in lines if line.startswith("SCAN") and "VIRTUAL TABLE INDEX 0:M" not in line]
            if analyzed:
                walks = [line for line in scans if line.startswith("SCAN logs USING INDEX ")]
            else:
                walks = [line for line in scans if line.startswith("SCAN logs USING INDEX logs_failed_by_time")
                         or (line.startswith("SCAN logs USING INDEX logs_by_time") and may_walk(conn, filters))]
            if scans != walks:
                wrong[(repr(filters), after)] = lines
    for name in ("_RECORDS", "_COUNT_PAIR", "_COUNT_TEXT"):  # what a page counts to choose how it reads
        statement = getattr(sqlite_logs, name)
        lines = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, [None] * statement.count("?"))]
        if any(line.startswith("SCAN logs") for line in lines):
            wrong[name] = lines
    conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    conn.close()
    assert not wrong, "\n".join(f"{name}: {lines}" for name, lines in wrong.items())


def test_a_q_reads_the_same_rows_from_its_index_as_by_like_alone(filled: SQLiteLogStore) -> None:
    conn = filled._conn()
    for q in ("bad gateway", "BAD GATEWAY", "predictions/pred12", "/v1/", "not found", "upstream 5", 'a"b', "50%"):
        for after in (None, (NOW - DAY_MS, "log_00010000")):
            through_index, by_like = (
                [row["id"] for row in conn.execute(*page_query(LogFilter(q=q), COLUMNS, 51, after, text_index=index))]
                for index in (True, False))  # fmt: skip
            assert through_index == by_like, q
    assert _page_choices(conn, LogFilter(q="/v1/"), 51) == {"text_index": False}  # in every path: walked
    assert _page_choices(conn, LogFilter(q="predictions/pred12"), 51) == {"text_index": True}


def test_the_rarest_metadata_pair_leads(filled: SQLiteLogStore) -> None:
    conn = filled._conn()
    assert _page_choices(conn, LogFilter(metadata={"team": "t7", "run": "r5"}), 51) == {"lead": 1}
    assert _page_choices(conn, LogFilter(metadata={"run": "r5", "team": "t7"}), 51) == {"lead": 0}


def test_a_database_of_before_the_side_tables_is_migrated_and_its_records_found(tmp_path: Path) -> None:
    path = tmp_path / "modelport.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, MIGRATIONS[:8])
    old = [log_row(1, metadata='{"team": "ml", "n": 5, "flag": true, "nested": {"a": 1}, "none": null}',
                   error="upstream timed out"),
           log_row(2, metadata="[1, 2]", path="/v1/predictions/abc"), log_row(3, metadata="not json"),
           log_row(4, metadata=None)]  # fmt: skip
    columns = list(old[0])
    conn.executemany(f"INSERT INTO logs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                     [[row[c] for c in columns] for row in old])
    assert apply_migrations(conn) == list(range(9, len(MIGRATIONS) + 1))
    conn.close()
    store = SQLiteLogStore(path)
    with store.batch() as batch:
        batch.append_logs([log_row(5, metadata='{"team": "ml"}', path="/v1/predictions/abd")])

    def found(**filters: object) -> list[str]:
        return [row["id"][-1] for row in store.list(LogFilter(**filters))[0]]  # type: ignore[arg-type]

    assert found(metadata={"team": "ml"}) == ["5", "1"]
    assert found(metadata={"n": "5"}) == found(metadata={"flag": "1"}) == ["1"]  # as CAST(json_extract(...) AS TEXT)
    assert found(metadata={"nested": '{"a":1}'}) == ["1"]
    assert found(metadata={"none": "None"}) == found(metadata={"0": "1"}) == []
    assert found(q="TIMED") == ["1"]
    assert found(q="predictions/ab") == ["5", "2"]
    store.close()


def test_retention_deletes_the_side_rows_with_their_records(tmp_path: Path) -> None:
    path = tmp_path / "modelport.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn)
    store = SQLiteLogStore(path, retention_days=1)
    with store.batch() as batch:
        batch.append_logs([log_row(n, created_at=NOW - (3 if n % 2 else 0) * DAY_MS, path=f"/v1/old-{n % 2}",
                                   metadata=f'{{"age": "{n % 2}"}}') for n in range(10)])  # fmt: skip
    store.upkeep(NOW)
    assert [row["id"] for row in store.iter_export()] == [f"log_{n:08d}" for n in (8, 6, 4, 2, 0)]
    assert conn.execute("SELECT DISTINCT value FROM log_metadata").fetchall() == [("0",)]
    assert conn.execute("SELECT count(*) FROM log_text WHERE log_text MATCH ?", (_trigrams("old-1"),)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM log_text WHERE log_text MATCH ?", (_trigrams("old-0"),)).fetchone() == (5,)
    conn.execute("INSERT INTO log_text (log_text) VALUES ('integrity-check')")  # raises if the deletes broke it
    conn.close()
    store.close()
