"""The PostgreSQL log store's ingest: records/s through ``PostgresLogStore`` from one writer thread.

    PYTHONPATH=src python3 bench/pg_log_ingest.py [--seconds 60] [--batch 500] [--server postgresql://postgres@127.0.0.1:5432]

Each batch is what the log writer does per transaction (``logs/writer.py``): ``stored_ids`` of the
batch's ids, then ``append_logs`` of the rows, in one ``batch()``. Rows are the writer's own rows for a
chat completion (bench/log_writer.py's records, enriched by ``LogWriter._prepare``: ~1 KB of request
and response bodies, headers, metadata, one attempt), each with a fresh time-ordered id and the
current time. A fresh database per run, dropped afterwards. Printed: the sustained rate over the
whole run, the rate of each 10 s window (a store that falls behind shows it there), batch p50/p99, and
the CPU a batch costs the server's backend and this process (what the rate would be on idle cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from log_writer import record  # noqa: E402  (bench/ is not a package)
from pg_drivers import bench_database  # noqa: E402

from modelport.logs.record import new_time_ordered_id  # noqa: E402
from modelport.logs.writer import LogWriter  # noqa: E402
from modelport.settings import Settings  # noqa: E402
from modelport.store import open_sqlite_store  # noqa: E402
from modelport.store.pg_logs import PostgresLogStore  # noqa: E402

WINDOW_SECONDS = 10


async def template_rows(count: int) -> list[dict[str, Any]]:
    """The log writer's rows for ``count`` records (enrichment needs a writer, and a writer a store)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.load({"data_dir": data_dir})
        store = open_sqlite_store(settings.data_dir)
        writer = LogWriter(settings, store, lambda: None)
        rows = [writer._prepare(record(i)).row for i in range(count)]
        store.close()
    return rows


def fresh(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now_ms = time.time_ns() // 1_000_000
    return [{**row, "id": new_time_ordered_id("log_"), "created_at": now_ms} for row in templates]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine (the server's backend: loopback)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, templates: list[dict[str, Any]], seconds: float) -> None:
    store = PostgresLogStore(url, pool_size=1)  # one connection, as one writer: its backend's CPU is measured
    with store._connection() as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    backend_cpu, own_cpu = cpu_seconds(backend), time.process_time()
    batch_ms: list[float] = []
    windows: list[int] = []
    written = in_window = 0
    started = window_started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        rows = fresh(templates)
        begun = time.perf_counter()
        with store.batch() as batch:
            seen = batch.stored_ids([row["id"] for row in rows])
            batch.append_logs([row for row in rows if row["id"] not in seen])
        now = time.perf_counter()
        batch_ms.append((now - begun) * 1000)
        written += len(rows)
        in_window += len(rows)
        if now - window_started >= WINDOW_SECONDS:
            windows.append(round(in_window / (now - window_started)))
            in_window, window_started = 0, now
    elapsed = time.perf_counter() - started
    backend_cpu, own_cpu = cpu_seconds(backend) - backend_cpu, time.process_time() - own_cpu
    with store._connection() as conn:
        stored = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
        size = conn.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i"
                            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'logs'::regclass").fetchone()[0]
    store.close()
    batch_ms.sort()
    print(f"{written} records in {elapsed:.1f} s: {written / elapsed:,.0f} records/s sustained "
          f"(stored {stored}, logs partitions {size})")
    print(f"per {WINDOW_SECONDS} s window: {', '.join(f'{w:,}' for w in windows)} records/s")
    print(f"batch of {len(templates)}: p50 {statistics.median(batch_ms):.1f} ms, "
          f"p99 {batch_ms[int(len(batch_ms) * 0.99)]:.1f} ms, max {batch_ms[-1]:.1f} ms; CPU per batch: "
          f"server backend {backend_cpu / len(batch_ms) * 1000:.1f} ms, this process {own_cpu / len(batch_ms) * 1000:.1f} ms"
          f" (load average {os.getloadavg()[0]:.1f} at the end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    templates = asyncio.run(template_rows(args.batch))
    with bench_database(args.server) as url:
        run(url, templates, args.seconds)


if __name__ == "__main__":
    main()
