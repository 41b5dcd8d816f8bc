"""The PostgreSQL log ingest: records/s through the log service's writer, or its store alone.

    PYTHONPATH=src python3 bench/pg_log_ingest.py [--through writer|store] [--rate N] [--seconds 60]
        [--batch 500] [--server postgresql://postgres@127.0.0.1:5432]

``--through writer`` (the default) is the log service's real path: records decoded from the workers'
wire frames (``records_from_wire``) are submitted to a ``LogWriter`` on the database (as
``logs/service.py`` does), which enriches, prices and writes them on its own lanes, the background
one at the service's niceness. ``--rate N`` offers N records/s in 10 ms ticks (0: as fast as it
takes them, the queue kept four catch-up batches ahead, so past the catch-up mark); printed per 10 s window are the records/s
settled (committed) and the queue depth at the window's end: a writer that falls behind shows a
growing queue. CPU is read for this process and every server backend of the database.

``--through store``: each batch is what the log writer does per transaction (``logs/writer.py``): ``stored_ids`` of the
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

from modelport.ids import new_time_ordered_id
from modelport.logs.record import records_from_wire, records_to_wire  # noqa: E402
from modelport.logs.service import BACKGROUND_NICENESS  # noqa: E402
from modelport.logs.writer import CATCH_UP_BATCH_SIZE, LogWriter  # noqa: E402
from modelport.settings import Settings  # noqa: E402
from modelport.store import open_sqlite_store, open_store  # noqa: E402
from modelport.store.pg_logs import PostgresLogStore  # noqa: E402

WINDOW_SECONDS = 10


async def template_rows(count: int) -> list[dict[str, Any]]:
    """The log writer's rows for ``count`` records (enrichment needs a writer, and a writer a store)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.load({"data_dir": data_dir})
        store = open_sqlite_store(settings.data_dir)
        writer = LogWriter(settings, store, None)
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


def run_store(url: str, templates: list[dict[str, Any]], seconds: float) -> None:
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


TICK_SECONDS = 0.01
FRAME_RECORDS = 100  # records per wire frame, as a worker's shipper sends them under load


def backends_cpu(conn: Any) -> float:
    """CPU seconds of every server backend connected to this database (the writer's, its pool's)."""
    pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    return sum(cpu_seconds(pid) for pid in pids if Path(f"/proc/{pid}").exists())


async def run_writer(url: str, rate: int, seconds: float) -> None:
    import psycopg

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.load({"data_dir": data_dir, "database_url": url, "master_key": "b" * 64,
                                  "signing_secret": "s" * 32, "log_queue_size": 10_000_000})
        store = open_store(settings)
        writer = LogWriter(settings, store, None, background_niceness=BACKGROUND_NICENESS)
        await writer.start()
        frame = records_to_wire([record(i) for i in range(FRAME_RECORDS)])
        watcher = psycopg.connect(url, autocommit=True)
        server_cpu, own_cpu = backends_cpu(watcher), time.process_time()
        windows: list[str] = []
        deepest = offered = 0
        started = window_started = time.perf_counter()
        window_settled = writer.settled_total
        while (now := time.perf_counter()) - started < seconds:
            due = int((now - started) * rate) if rate else writer.settled_total + 4 * CATCH_UP_BATCH_SIZE
            while offered < due:
                for item in records_from_wire(frame):  # what the service decodes per frame it reads
                    item.id, item.created_at = new_time_ordered_id("log_"), time.time()
                    writer.submit(item)
                offered += FRAME_RECORDS
            deepest = max(deepest, len(writer._queue))
            if now - window_started >= WINDOW_SECONDS:
                windows.append(f"{(writer.settled_total - window_settled) / (now - window_started):,.0f}"
                               f" (queue {len(writer._queue):,})")
                window_started, window_settled = now, writer.settled_total
            await asyncio.sleep(TICK_SECONDS)
        elapsed = time.perf_counter() - started
        settled = writer.settled_total
        server_cpu, own_cpu = backends_cpu(watcher) - server_cpu, time.process_time() - own_cpu
        left = len(writer._queue)
        writer._queue.clear()  # what it did not take in time is the finding, not something to wait for
        await writer.stop()
        stored = watcher.execute("SELECT count(*) FROM logs").fetchone()[0]
        watcher.close()
        store.close()
    print(f"offered {'as fast as taken' if not rate else f'{rate:,} records/s'}: {settled:,} records settled in "
          f"{elapsed:.1f} s, {settled / elapsed:,.0f} records/s sustained; deepest queue {deepest:,}; "
          f"{left:,} left queued at the end; stored {stored:,}")
    print(f"per {WINDOW_SECONDS} s window: {', '.join(windows)} records/s")
    print(f"CPU per 1,000 records: server backends {server_cpu / settled * 1e6:.1f} ms, log writer process "
          f"{own_cpu / settled * 1e6:.1f} ms (load average {os.getloadavg()[0]:.1f} at the end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--through", choices=("writer", "store"), default="writer")
    parser.add_argument("--rate", type=int, default=0, help="records/s offered to the writer (0: as fast as it takes them)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=500, help="rows per transaction (--through store)")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    with bench_database(args.server) as url:
        if args.through == "writer":
            asyncio.run(run_writer(url, args.rate, args.seconds))
        else:
            run_store(url, asyncio.run(template_rows(args.batch)), args.seconds)


if __name__ == "__main__":
    main()
