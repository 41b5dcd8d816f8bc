"""psycopg 3 against asyncpg on this machine's PostgreSQL, for the two jobs the PostgreSQL store has.

(a) a key lookup by hash (``SELECT * FROM api_keys WHERE key_hash = $1``): median and p99 µs per call,
    one caller, and 32 concurrent callers (psycopg: 32 threads on their own connections, and 32 asyncio
    tasks on AsyncConnections; asyncpg: 32 tasks on a pool of 32); and, for scale, the in-memory
    replica's lookup that the store's hot path actually does;
(b) bulk ingest of log-like rows (~1 KB, one jsonb column) with COPY, in batches of 500, one
    transaction per batch: records/s.

It creates a database of its own (``mp_bench_<random>``) and drops it. Run:

    python bench/pg_drivers.py [--server postgresql://postgres@127.0.0.1:5432] [--rows 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import asyncpg
import orjson
import psycopg

KEYS = 10_000
SEQUENTIAL_CALLS = 5_000
CONCURRENT_CALLERS = 32
CALLS_PER_CALLER = 300
BATCH = 500

SCHEMA = """
CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, scopes JSONB NOT NULL,
                       metadata JSONB NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT);
CREATE TABLE logs (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, key_id TEXT, provider TEXT, model TEXT,
                   status INTEGER, latency_ms DOUBLE PRECISION, path TEXT, metadata JSONB, request_body BYTEA);
"""
LOG_COLUMNS = ("id", "created_at", "key_id", "provider", "model", "status", "latency_ms", "path", "metadata",
               "request_body")


@contextmanager
def bench_database(server: str) -> Iterator[str]:
    name = f"mp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def prepare(url: str) -> list[str]:
    hashes = [hashlib.sha256(f"key-{i}".encode()).hexdigest() for i in range(KEYS)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY api_keys (id, name, key_hash, scopes, metadata, created_at) FROM STDIN") as copy:
            for i, key_hash in enumerate(hashes):
                copy.write_row((f"key_{i:08d}", f"k{i}", key_hash, '["inference"]', '{"team": "ml"}', 0))
        conn.execute("VACUUM ANALYZE api_keys")
    return hashes


def summary(samples_ns: list[int]) -> str:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return f"median {p50:8.1f} µs   p99 {p99:8.1f} µs"


LOOKUP = "SELECT * FROM api_keys WHERE key_hash = %s"
LOOKUP_PG = "SELECT * FROM api_keys WHERE key_hash = $1"


# -- (a) lookups ---------------------------------------------------------------------------------
def psycopg_sequential(url: str, hashes: list[str]) -> list[int]:
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        return [_timed(lambda h=h: conn.execute(LOOKUP, (h,)).fetchone()) for h in _picks(hashes, SEQUENTIAL_CALLS)]


def psycopg_threads(url: str, hashes: list[str]) -> tuple[list[int], float]:
    conns = [psycopg.connect(url, autocommit=True, prepare_threshold=0) for _ in range(CONCURRENT_CALLERS)]
    samples: list[int] = []
    start = threading.Barrier(CONCURRENT_CALLERS + 1)

    def caller(conn: psycopg.Connection) -> None:
        picks = _picks(hashes, CALLS_PER_CALLER)
        start.wait()
        mine = [_timed(lambda h=h: conn.execute(LOOKUP, (h,)).fetchone()) for h in picks]
        samples.extend(mine)

    threads = [threading.Thread(target=caller, args=(c,)) for c in conns]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for conn in conns:
        conn.close()
    return samples, len(samples) / elapsed


async def psycopg_async(url: str, hashes: list[str]) -> tuple[list[int], list[int], float]:
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
             for _ in range(CONCURRENT_CALLERS)]  # fmt: skip
    sequential = [await _atimed(conns[0].execute(LOOKUP, (h,))) for h in _picks(hashes, SEQUENTIAL_CALLS)]

    async def caller(conn: psycopg.AsyncConnection) -> list[int]:
        return [await _atimed(conn.execute(LOOKUP, (h,))) for h in _picks(hashes, CALLS_PER_CALLER)]

    began = time.perf_counter()
    results = await asyncio.gather(*(caller(c) for c in conns))
    elapsed = time.perf_counter() - began
    for conn in conns:
        await conn.close()
    concurrent = [s for r in results for s in r]
    return sequential, concurrent, len(concurrent) / elapsed


async def asyncpg_lookups(url: str, hashes: list[str]) -> tuple[list[int], list[int], float]:
    pool = await asyncpg.create_pool(url, min_size=CONCURRENT_CALLERS, max_size=CONCURRENT_CALLERS)
    async with pool.acquire() as conn:
        sequential = [await _atimed(conn.fetchrow(LOOKUP_PG, h)) for h in _picks(hashes, SEQUENTIAL_CALLS)]

    async def caller() -> list[int]:
        async with pool.acquire() as conn:
            return [await _atimed(conn.fetchrow(LOOKUP_PG, h)) for h in _picks(hashes, CALLS_PER_CALLER)]

    began = time.perf_counter()
    results = await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))
    elapsed = time.perf_counter() - began
    await pool.close()
    concurrent = [s for r in results for s in r]
    return sequential, concurrent, len(concurrent) / elapsed


def replica_lookup(hashes: list[str]) -> list[int]:
    replica = {h: object() for h in hashes}
    return [_timed(lambda h=h: replica.get(h)) for h in _picks(hashes, SEQUENTIAL_CALLS)]


def store_lookups(server: str) -> tuple[list[int], list[int]]:
    """What authentication calls on a cache miss, on each real store: ``get_api_key_by_hash``."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from modelport.keys import hash_api_key
    from modelport.store import open_sqlite_store
    from modelport.store.postgres import open_postgres_store
    from modelport.vault import generate_master_key

    master_key = generate_master_key()
    with tempfile.TemporaryDirectory() as data_dir, bench_database(server) as url:
        stores = [open_sqlite_store(Path(data_dir), master_key), open_postgres_store(url, master_key)]
        results = []
        for store in stores:
            hashes = [hash_api_key(store.create_api_key(f"k{i}")[1]) for i in range(200)]
            results.append([_timed(lambda h=h: store.get_api_key_by_hash(h)) for h in _picks(hashes, SEQUENTIAL_CALLS)])
            store.close()
    return results[0], results[1]


# -- (b) ingest ----------------------------------------------------------------------------------
def log_rows(count: int) -> list[tuple[Any, ...]]:
    metadata = orjson.dumps({"user": "u-123", "team": "ml", "trace": "t" * 40, "env": "prod"}).decode()
    body = os.urandom(350).hex().encode()[:700]  # ~1 KB a row with the other columns
    now = time.time_ns() // 1_000_000
    return [(f"log_{i:012d}", now + i, "key_00000001", "openai", "gpt-4o-mini", 200, 12.5,
             "/v1/chat/completions", metadata, body) for i in range(count)]  # fmt: skip


LOG_TYPES = ["text", "int8", "text", "text", "text", "int4", "float8", "text", "jsonb", "bytea"]


def psycopg_copy(url: str, rows: list[tuple[Any, ...]], binary: bool = False) -> float:
    statement = f"COPY logs ({', '.join(LOG_COLUMNS)}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE logs")
        began = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            with conn.transaction(), conn.cursor().copy(statement) as copy:
                if binary:
                    copy.set_types(LOG_TYPES)
                for row in rows[offset:offset + BATCH]:
                    copy.write_row(row)
        return len(rows) / (time.perf_counter() - began)


async def asyncpg_copy(url: str, rows: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(url)
    await conn.execute("TRUNCATE logs")
    began = time.perf_counter()
    for offset in range(0, len(rows), BATCH):
        async with conn.transaction():
            await conn.copy_records_to_table("logs", records=rows[offset:offset + BATCH], columns=LOG_COLUMNS)
    rate = len(rows) / (time.perf_counter() - began)
    await conn.close()
    return rate


# -- helpers -------------------------------------------------------------------------------------
def _picks(hashes: list[str], count: int) -> list[str]:
    return [hashes[int.from_bytes(os.urandom(4), "big") % len(hashes)] for _ in range(count)]


def _timed(call: Callable[[], Any]) -> int:
    began = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - began


async def _atimed(awaitable: Any) -> int:
    began = time.perf_counter_ns()
    result = await awaitable
    if hasattr(result, "fetchone"):
        await result.fetchone()
    return time.perf_counter_ns() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--rows", type=int, default=50_000, help="log rows each driver ingests")
    args = parser.parse_args()
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), asyncpg {asyncpg.__version__}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")  # fmt: skip
    with bench_database(args.server) as url:
        hashes = prepare(url)
        print(f"\n(a) key lookup by hash, {KEYS} keys; sequential {SEQUENTIAL_CALLS} calls, "
              f"concurrent {CONCURRENT_CALLERS} callers x {CALLS_PER_CALLER}")  # fmt: skip
        print(f"  in-memory replica (dict)         sequential    {summary(replica_lookup(hashes))}")
        sqlite_store, postgres_store = store_lookups(args.server)
        print(f"  SQLiteStore.get_api_key_by_hash  sequential    {summary(sqlite_store)}")
        print(f"  PostgresStore (its replica)      sequential    {summary(postgres_store)}")
        print(f"  psycopg sync                     sequential    {summary(psycopg_sequential(url, hashes))}")
        samples, rate = psycopg_threads(url, hashes)
        print(f"  psycopg sync, 32 threads         concurrent    {summary(samples)}   {rate:8.0f} calls/s")
        sequential, concurrent, rate = asyncio.run(psycopg_async(url, hashes))
        print(f"  psycopg async                    sequential    {summary(sequential)}")
        print(f"  psycopg async, 32 tasks          concurrent    {summary(concurrent)}   {rate:8.0f} calls/s")
        sequential, concurrent, rate = asyncio.run(asyncpg_lookups(url, hashes))
        print(f"  asyncpg                          sequential    {summary(sequential)}")
        print(f"  asyncpg, 32 tasks                concurrent    {summary(concurrent)}   {rate:8.0f} calls/s")

        rows = log_rows(args.rows)
        size = sum(len(str(value)) for value in rows[0])
        print(f"\n(b) COPY of {args.rows} log rows (~{size} bytes each, jsonb metadata), batches of {BATCH}, "
              "one transaction each")  # fmt: skip
        for label, run in (("psycopg (text COPY)", lambda: psycopg_copy(url, rows)),
                           ("psycopg (binary COPY)", lambda: psycopg_copy(url, rows, binary=True)),
                           ("asyncpg (binary COPY)", lambda: asyncio.run(asyncpg_copy(url, rows)))):  # fmt: skip
            rates = [run() for _ in range(3)]
            print(f"  {label:32} {statistics.median(rates):8.0f} records/s (median of 3: "
                  f"{', '.join(f'{r:.0f}' for r in rates)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
