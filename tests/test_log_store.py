"""The log store's promises to its writers and readers, whatever implements it (every test runs on the
SQLite and the PostgreSQL store): a replayed batch is logged once, a prediction's end is claimed by
exactly one writer however many race for it, the store's failures reach the writer as the store's
errors (to spill, or to store a record degraded), never the driver's, and the logs API reads the same
pages, in the same order, with the same cursors from both."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelport.settings import Settings
from modelport.store import LogFilter, LogStore, PredictionFilter, RecordRefused, StoreUnavailable, open_log_store, open_sqlite_store
from modelport.store.log_base import DAY_MS, LOG_COLUMNS, PredictionEnd, PredictionSeen
from tests.pg_support import fresh_database, need_psycopg

PREDICTIONS = 200


@dataclass(frozen=True)
class Backend:
    """Where a test's log store lives: ``open`` gives a new store object on it (another writer)."""

    kind: str  # "sqlite" or "postgres"
    where: str  # the data dir or the database URL

    def open(self, busy_timeout: float = 5.0, retention_days: int = 0) -> LogStore:
        return open_backend(self.kind, self.where, busy_timeout, retention_days)

    @contextmanager
    def write_locked(self) -> Iterator[None]:
        """Another session holds what a batch must take first."""
        if self.kind == "sqlite":
            lock = sqlite3.connect(Path(self.where) / "modelport.db", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            return
        import psycopg

        from modelport.store.pg_logs import APPEND_LOCK

        with psycopg.connect(self.where, autocommit=True) as lock:
            lock.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK,))
            yield


def open_backend(kind: str, where: str, busy_timeout: float = 5.0, retention_days: int = 0) -> LogStore:
    if kind == "sqlite":
        settings = Settings.load({"data_dir": where, "log_retention_days": retention_days})
        open_sqlite_store(settings.data_dir).close()  # creates and migrates the database, as every process does first
        return open_log_store(settings, busy_timeout=busy_timeout)
    from modelport.store.pg_logs import PostgresLogStore

    return PostgresLogStore(where, retention_days=retention_days, busy_timeout=busy_timeout)


@contextmanager
def backend_of(kind: str, tmp_path: Path) -> Iterator[Backend]:
    if kind == "sqlite":
        yield Backend("sqlite", str(tmp_path / "data"))
        return
    need_psycopg()
    with fresh_database() as url:
        yield Backend("postgres", url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_of(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def store(backend: Backend) -> Iterator[LogStore]:
    opened = backend.open()
    yield opened
    opened.close()


def log_row(n: int, **fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(LOG_COLUMNS), "id": f"log_{n:08d}", "trace_id": f"t-{n}", "created_at": 1_700_000_000_000 + n,
            "method": "GET", "path": "/v1/models", "status": 200, "gateway_exception": 0, "stream": 0,
            "cost_status": "unpriced", "metadata": "{}", **fields}  # fmt: skip


def seen(n: int) -> PredictionSeen:
    return PredictionSeen(f"p{n}", "replicate", "team-a", "key_a", "owner/model", None, None, "starting",
                          1_700_000_000_000 + n, f"log_create_{n}")


def end(log_id: str) -> PredictionEnd:
    return PredictionEnd("succeeded", 1_700_000_100_000, log_id, 2.5, 0.0025, "priced", None, {"seconds": 2.5})


def test_a_replayed_batch_is_logged_once(store: LogStore) -> None:
    rows = [log_row(n) for n in range(5)]
    with store.batch() as batch:
        batch.append_logs(rows)
    with store.batch() as batch:
        assert batch.stored_ids([row["id"] for row in rows] + ["log_new"]) == {row["id"] for row in rows}
        batch.append_logs([*rows, log_row(5)])  # the stored ids are skipped, not refused
    assert [row["id"] for row in store.iter_export(LogFilter())] == [f"log_{n:08d}" for n in reversed(range(6))]


def test_of_two_writers_that_saw_a_prediction_open_only_the_first_to_end_it_wins(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    with first.batch() as batch:
        batch.note_prediction(seen(1))
    assert first.prediction_entry("p1")["terminal_at"] is None  # type: ignore[index]
    assert second.prediction_entry("p1")["terminal_at"] is None  # type: ignore[index]  # both decide to price it
    with first.batch() as batch:
        assert batch.end_prediction("p1", end("log_first")) is True
    with second.batch() as batch:
        assert batch.end_prediction("p1", end("log_second")) is False
    entry = second.prediction_entry("p1")
    assert entry is not None and entry["terminal_log_id"] == "log_first" and entry["cost_usd"] == 0.0025
    first.close()
    second.close()


def _race(kind: str, where: str, name: str, start: Any, results: Any) -> None:
    """One writer: read every entry (all open), then, once the other is ready too, try to end each."""
    store = open_backend(kind, where)
    open_ids = [f"p{n}" for n in range(PREDICTIONS) if store.prediction_entry(f"p{n}")["terminal_at"] is None]  # type: ignore[index]
    start.wait()
    won = []
    for prediction_id in open_ids:
        with store.batch() as batch:
            if batch.end_prediction(prediction_id, end(f"log_{name}_{prediction_id}")):
                won.append(prediction_id)
    results.put((name, won))
    store.close()


def test_two_processes_ending_the_same_predictions_claim_each_exactly_once(backend: Backend, store: LogStore) -> None:
    with store.batch() as batch:
        for n in range(PREDICTIONS):
            batch.note_prediction(seen(n))
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    writers = [context.Process(target=_race, args=(backend.kind, backend.where, name, start, results)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    won = dict(results.get(timeout=120) for _ in writers)
    for writer in writers:
        writer.join(30)
    assert set(won["a"]).isdisjoint(won["b"])  # no prediction charged twice
    assert sorted(won["a"] + won["b"]) == sorted(f"p{n}" for n in range(PREDICTIONS))  # nor left uncharged
    for name, ids in won.items():  # and the entry names the record of the writer that won
        assert all(store.prediction_entry(i)["terminal_log_id"] == f"log_{name}_{i}" for i in ids)  # type: ignore[index]


def test_a_locked_store_is_unavailable_in_the_stores_terms(backend: Backend) -> None:
    store = backend.open(busy_timeout=0.1)
    with backend.write_locked():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="lock"):
            with store.batch() as batch:
                batch.append_logs([log_row(1)])
        assert time.monotonic() - started < 2
    with store.batch() as batch:  # and answers again once the lock is gone
        batch.append_logs([log_row(1)])
    assert store.get("log_00000001") is not None
    store.close()


def test_a_value_the_store_cannot_hold_is_refused_and_the_batch_left_unwritten(store: LogStore) -> None:
    with pytest.raises(RecordRefused):
        with store.batch() as batch:
            batch.append_logs([log_row(1), log_row(2, request_bytes=2**70)])  # beyond a 64-bit integer
    assert store.list()[0] == []


# -- reading: the same pages, in the same order, from both stores --------------------------------------
BASE_MS = 1_700_000_000_000


def varied_rows() -> list[dict[str, Any]]:
    """Rows that tie on created_at (3 per millisecond), ids whose byte order differs from a locale's
    (upper case, "_" and "-"), and every filtered column varied."""
    rows = []
    for n in range(60):
        suffix = ("A", "a", "_", "-", "Z")[n % 5]
        rows.append(log_row(
            n, id=f"log_{n // 3:04d}{suffix}{n:03d}", created_at=BASE_MS + (n // 3), trace_id=f"t-{n % 4}",
            provider=("openai", "anthropic", "replicate")[n % 3], slug=("team-a", "team-b")[n % 2],
            key_id=f"key_{n % 3}", model=("gpt-4o", "claude")[n % 2], endpoint=("proxy", "chat")[n % 2],
            status=(200, 404, 500, 201)[n % 4], prediction_id=f"p{n % 5}" if n % 2 else None,
            path=("/v1/chat/completions", "/v1/models", "/v1/predictions/Abc")[n % 3],
            error="upstream timed out" if n % 7 == 0 else None,
            metadata='{"env": "prod", "team": "ml"}' if n % 2 else '{"env": "dev"}',
            request_body=b'{"model": "x"}' if n % 2 else b"\xff\xfe binary",
            request_headers='{"b-header": "1", "a-header": "2"}'))
    return rows


FILTERS = [
    LogFilter(), LogFilter(since=BASE_MS + 3, until=BASE_MS + 12), LogFilter(provider="openai"),
    LogFilter(slug="team-b"), LogFilter(status="error"), LogFilter(status="success"), LogFilter(status=404),
    LogFilter(key_id="key_1"), LogFilter(trace_id="t-2"), LogFilter(model="claude"), LogFilter(endpoint="chat"),
    LogFilter(prediction_id="p3"), LogFilter(metadata={"env": "prod"}), LogFilter(metadata={"env": "prod", "team": "ml"}),
    LogFilter(q="predictions"), LogFilter(q="TIMED"), LogFilter(q="%"), LogFilter(provider="openai", status="error"),
]  # fmt: skip


def pages(store: LogStore, filters: LogFilter, limit: int) -> list[tuple[list[dict[str, Any]], str | None]]:
    found, cursor = [], None
    while True:
        rows, cursor = store.list(filters, limit=limit, cursor=cursor)
        found.append((rows, cursor))
        if cursor is None:
            return found


@pytest.mark.postgres
def test_both_stores_read_the_same_pages_with_the_same_cursors(tmp_path: Path) -> None:
    with backend_of("sqlite", tmp_path) as lite, backend_of("postgres", tmp_path) as pg:
        stores = [lite.open(), pg.open()]
        for store in stores:
            with store.batch() as batch:
                batch.append_logs(varied_rows())
        for filters in FILTERS:
            on_sqlite, on_postgres = (pages(store, filters, limit=7) for store in stores)
            assert on_sqlite == on_postgres, filters
            assert sum(len(rows) for rows, _ in on_sqlite) == len(list(stores[0].iter_export(filters)))
            assert list(stores[0].iter_export(filters, full=True)) == list(stores[1].iter_export(filters, full=True))
            for group in (None, "provider", "model", "key_id"):  # oldest first; rows of one millisecond in any order
                on_sqlite, on_postgres = (list(store.analytics_rows(filters, group)) for store in stores)
                assert [row[0] for row in on_sqlite] == sorted(row[0] for row in on_sqlite)
                assert on_sqlite == sorted(on_postgres, key=lambda row: (row[0], on_sqlite.index(row)))
        assert stores[0].get("log_0005A015") == stores[1].get("log_0005A015") is not None
        assert len(pages(stores[0], LogFilter(), limit=7)) == 9  # 60 rows: the filters above did page
        for store in stores:
            store.close()


def test_a_bad_cursor_is_refused_with_a_message(store: LogStore) -> None:
    with pytest.raises(ValueError, match="next_cursor"):
        store.list(cursor="not a cursor")


def test_feedback_is_kept_in_order_and_shown_on_its_trace(store: LogStore) -> None:
    with store.batch() as batch:
        batch.append_logs([log_row(1)])
    ids = store.add_feedback([{"trace_id": "t-1", "value": 1}, {"trace_id": "t-1", "value": -2, "metadata": {"b": 1, "a": 2}}])
    with pytest.raises(ValueError, match=r"feedback\[1\].value"):
        store.add_feedback([{"trace_id": "t-1", "value": 3}, {"trace_id": "t-1", "value": 11}])
    assert [item["id"] for item in store.feedback_for("t-1")] == ids  # the bad call added nothing
    assert store.update_feedback(ids[0], {"weight": 0.5})["weight"] == 0.5  # type: ignore[index]
    assert store.update_feedback("fb_missing", {"weight": 0.5}) is None
    found = store.get("log_00000001")
    assert found is not None and [item["value"] for item in found["feedback"]] == [1, -2]
    assert list(found["feedback"][1]["metadata"]) == ["b", "a"]  # as given


def test_the_prediction_ledger_and_its_lifecycle(store: LogStore) -> None:
    created = b'{"id": "p1", "status": "starting"}'
    listed = b'{"results": [{"id": "p0", "status": "failed"}, {"id": "p1", "status": "processing"}]}'
    with store.batch() as batch:
        batch.note_prediction(seen(1))
        batch.note_prediction(seen(2))
        batch.append_logs([log_row(1, prediction_id="p1", response_body=created),
                           log_row(2, response_body=listed), log_row(3, prediction_id="p1", response_body=b"\xff cut"),
                           log_row(4, prediction_id="p1", request_body=b'{"id": "p1", "status": "succeeded"}')])
        batch.note_listed_status("p1", "processing")
        assert batch.end_prediction("p1", end("log_00000004")) is True
        batch.note_listed_status("p1", "starting")  # ended: a list page no longer moves it
    entry = store.prediction_entry("p1")
    assert entry is not None and entry["status"] == "succeeded" and entry["usage"] == {"seconds": 2.5}
    steps = store.prediction_lifecycle("p1", None, "log_00000002", limit=10)
    assert [(s["id"], s["saw_status"]) for s in steps] == [
        ("log_00000001", "starting"), ("log_00000002", "processing"), ("log_00000003", None),
        ("log_00000004", "succeeded")]  # fmt: skip
    # The record it was created on, when that record names no single prediction (an images call).
    assert [s["id"] for s in store.prediction_lifecycle("p2", "log_00000002", None, limit=10)] == ["log_00000002"]
    assert [e["id"] for e in store.list_predictions(PredictionFilter(), limit=10)] == ["p2", "p1"]
    assert [e["id"] for e in store.list_predictions(PredictionFilter(), limit=10, after=(BASE_MS + 2, "p2"))] == ["p1"]
    assert store.open_predictions(0, 10, provider="replicate") == [("p2", "team-a", "key_a")]


# -- retention and partitions ------------------------------------------------------------------------
def test_retention_deletes_records_older_than_it(backend: Backend) -> None:
    now = 1_800_000_000_000
    store = backend.open(retention_days=3)
    with store.batch() as batch:
        batch.append_logs([log_row(n, created_at=now - n * DAY_MS // 2) for n in range(12)])  # 0 to 5.5 days old
    store.upkeep(now)
    kept = {row["id"] for row in store.iter_export()}
    # The ones under 3 days old always stay; PostgreSQL drops whole days, so it may keep up to a day more.
    assert {f"log_{n:08d}" for n in range(6)} <= kept
    assert kept <= {f"log_{n:08d}" for n in range(8)}
    store.close()
    forever = backend.open(retention_days=0)
    forever.upkeep(now + 100 * DAY_MS)
    assert {row["id"] for row in forever.iter_export()} == kept
    forever.close()


def test_sqlite_retention_deletes_in_chunks_until_none_is_left(tmp_path: Path) -> None:
    from modelport.store import sqlite_logs

    with backend_of("sqlite", tmp_path) as lite:
        store = lite.open(retention_days=1)
        with store.batch() as batch:
            batch.append_logs([log_row(n, created_at=BASE_MS) for n in range(2 * sqlite_logs._RETENTION_CHUNK + 7)])
            batch.append_logs([log_row(10**6, created_at=BASE_MS + 5 * DAY_MS)])
        store.upkeep(BASE_MS + 5 * DAY_MS)
        assert [row["id"] for row in store.iter_export()] == [f"log_{10**6:08d}"]
        store.close()
