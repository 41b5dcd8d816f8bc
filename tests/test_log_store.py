"""The log store's promises to its writers, whatever implements it: a replayed batch is logged once, a
prediction's end is claimed by exactly one writer however many race for it, and the store's failures
reach the writer as the store's errors (to spill, or to store a record degraded), never the driver's."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from modelport.settings import Settings
from modelport.store import LogFilter, LogStore, RecordRefused, StoreUnavailable, open_log_store, open_store
from modelport.store.log_base import LOG_COLUMNS, PredictionEnd, PredictionSeen

PREDICTIONS = 200


def log_row(n: int, **fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(LOG_COLUMNS), "id": f"log_{n:08d}", "trace_id": f"t-{n}", "created_at": 1_700_000_000_000 + n,
            "method": "GET", "path": "/v1/models", "status": 200, "gateway_exception": 0, "stream": 0,
            "cost_status": "unpriced", "metadata": "{}", **fields}  # fmt: skip


def opened(data_dir: Path, busy_timeout: float = 5.0) -> LogStore:
    settings = Settings.load({"data_dir": data_dir})
    open_store(settings.data_dir).close()  # creates and migrates the database, as every process does first
    return open_log_store(settings, busy_timeout=busy_timeout)


def seen(n: int) -> PredictionSeen:
    return PredictionSeen(f"p{n}", "replicate", "team-a", "key_a", "owner/model", None, None, "starting",
                          1_700_000_000_000 + n, f"log_create_{n}")


def end(log_id: str) -> PredictionEnd:
    return PredictionEnd("succeeded", 1_700_000_100_000, log_id, 2.5, 0.0025, "priced", None, {"seconds": 2.5})


def test_a_replayed_batch_is_logged_once(tmp_path: Path) -> None:
    store = opened(tmp_path)
    rows = [log_row(n) for n in range(5)]
    with store.batch() as batch:
        batch.append_logs(rows)
    with store.batch() as batch:
        assert batch.stored_ids([row["id"] for row in rows] + ["log_new"]) == {row["id"] for row in rows}
        batch.append_logs([*rows, log_row(5)])  # the stored ids are skipped, not refused
    assert [row["id"] for row in store.iter_export(LogFilter())] == [f"log_{n:08d}" for n in reversed(range(6))]
    store.close()


def test_of_two_writers_that_saw_a_prediction_open_only_the_first_to_end_it_wins(tmp_path: Path) -> None:
    first, second = opened(tmp_path), opened(tmp_path)
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


def _race(data_dir: Path, name: str, start: Any, results: Any) -> None:
    """One writer: read every entry (all open), then, once the other is ready too, try to end each."""
    store = opened(data_dir)
    open_ids = [f"p{n}" for n in range(PREDICTIONS) if store.prediction_entry(f"p{n}")["terminal_at"] is None]  # type: ignore[index]
    start.wait()
    won = []
    for prediction_id in open_ids:
        with store.batch() as batch:
            if batch.end_prediction(prediction_id, end(f"log_{name}_{prediction_id}")):
                won.append(prediction_id)
    results.put((name, won))
    store.close()


def test_two_processes_ending_the_same_predictions_claim_each_exactly_once(tmp_path: Path) -> None:
    store = opened(tmp_path)
    with store.batch() as batch:
        for n in range(PREDICTIONS):
            batch.note_prediction(seen(n))
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    writers = [context.Process(target=_race, args=(tmp_path, name, start, results)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    won = dict(results.get(timeout=120) for _ in writers)
    for writer in writers:
        writer.join(30)
    assert set(won["a"]).isdisjoint(won["b"])  # no prediction charged twice
    assert sorted(won["a"] + won["b"]) == sorted(f"p{n}" for n in range(PREDICTIONS))  # nor left uncharged
    for name, ids in won.items():  # and the entry names the record of the writer that won
        assert all(store.prediction_entry(i)["terminal_log_id"] == f"log_{name}_{i}" for i in ids)  # type: ignore[index]
    store.close()


def test_a_locked_store_is_unavailable_in_the_stores_terms(tmp_path: Path) -> None:
    store = opened(tmp_path, busy_timeout=0.1)
    lock = sqlite3.connect(tmp_path / "modelport.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            with store.batch() as batch:
                batch.append_logs([log_row(1)])
        assert time.monotonic() - started < 2
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    with store.batch() as batch:  # and answers again once the lock is gone
        batch.append_logs([log_row(1)])
    assert store.get("log_00000001") is not None
    store.close()


def test_a_value_the_store_cannot_hold_is_refused_and_the_batch_left_unwritten(tmp_path: Path) -> None:
    store = opened(tmp_path)
    with pytest.raises(RecordRefused):
        with store.batch() as batch:
            batch.append_logs([log_row(1), log_row(2, request_bytes=2**70)])  # beyond a 64-bit integer
    assert store.list()[0] == []
    store.close()
