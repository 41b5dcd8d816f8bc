"""Every filter of the logs API at 1,000,000 records, on each store: p50 and p95 of a page, in ms.

    PYTHONPATH=src python3 bench/log_queries.py [--records 1000000] [--runs 20] [--stores sqlite,postgres]
        [--server postgresql://postgres@127.0.0.1:5432]

Each store gets a store of its own (a temporary data dir; a fresh PostgreSQL database, dropped after),
filled through the store's batch path (``batch().append_logs``, 5,000 rows a transaction; no API, no
log writer) with the same records: 30 days of a gateway's traffic, most calls successful, a few
keys, models and providers dominant, traces and Replicate predictions of a few records each, errors
with their messages, metadata of 3-4 keys per record (team, env, user, sometimes run) and small
bodies. PostgreSQL is then ANALYZEd, as autovacuum would; SQLite is left as the gateway leaves it (no
ANALYZE). Then each filter asks ``LogStore.list`` for its first page of 50 ``--runs`` times (and
the page after it once per run, through its cursor, where there is one), after one warm-up call.
Printed: a markdown table of p50/p95 per filter per store, and the fill time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modelport.settings import Settings  # noqa: E402
from modelport.store import LogFilter, LogStore, open_log_store, open_sqlite_store  # noqa: E402
from modelport.store.log_base import DAY_MS, LOG_COLUMNS  # noqa: E402

BATCH = 5000
DAYS = 30
NOW = 1_800_000_000_000  # 2027-01-15 08:00 UTC: fixed, so a filter's rows are the same on every run
START = NOW - DAYS * DAY_MS
PROVIDERS = (("openai", 45), ("anthropic", 25), ("replicate", 15), ("gemini", 10), ("cohere", 5))
ENDPOINTS = {"openai": (("chat", 70), ("embeddings", 20), ("completions", 10)), "anthropic": (("messages", 100),),
             "gemini": (("chat", 100),), "cohere": (("chat", 60), ("embeddings", 40)), "replicate": (("proxy", 100),)}
PATHS = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings", "completions": "/v1/completions",
         "messages": "/v1/messages"}
STATUSES = ((200, 82), (201, 4), (400, 3), (401, 1), (404, 2), (429, 3), (500, 3), (502, 2))
ERRORS = {400: "invalid request: {}", 401: "upstream rejected the provider key", 404: "model {} not found",
          429: "upstream 429: rate limited, retry after {}s", 500: "upstream 500: internal error {}",
          502: "bad gateway: cannot reach the provider ({})"}
ENVS = (("prod", 70), ("staging", 20), ("dev", 10))
REQUEST = '{"model": "%s", "messages": [{"role": "user", "content": "question %d about the thing at hand"}]}'
RESPONSE = '{"id": "r%d", "object": "chat.completion", "choices": [{"message": {"content": "%s"}}], "usage": {}}'


def _table(pairs: tuple[tuple[Any, int], ...]) -> tuple[list[Any], list[int]]:
    return [value for value, _ in pairs], [weight for _, weight in pairs]


def record_batches(count: int, seed: int = 11) -> Iterator[list[dict[str, Any]]]:
    """``count`` records in time order, ``BATCH`` at a time."""
    chance = random.Random(seed)
    providers, endpoints, statuses, envs = _table(PROVIDERS), {p: _table(e) for p, e in ENDPOINTS.items()}, _table(STATUSES), _table(ENVS)
    step = DAYS * DAY_MS / count
    batch: list[dict[str, Any]] = []
    for n in range(count):
        created_at = START + int(n * step)
        provider = chance.choices(*providers)[0]
        endpoint = chance.choices(*endpoints[provider])[0]
        status = chance.choices(*statuses)[0]
        model = f"model-{int(chance.paretovariate(1.3)) % 60}"
        prediction = f"pred{n // 4:07x}" if provider == "replicate" else None
        metadata = {"team": f"t{chance.randrange(30)}", "env": chance.choices(*envs)[0], "user": f"u{chance.randrange(5000)}"}
        if chance.random() < 0.3:
            metadata["run"] = f"r{chance.randrange(10_000)}"
        error = ERRORS[status].format(chance.randrange(1000)) if status >= 400 else None
        request = (REQUEST % (model, n)).encode()
        response = (RESPONSE % (n, "an answer " * chance.randrange(5, 40))).encode()
        batch.append({**dict.fromkeys(LOG_COLUMNS), **{
            "id": f"log_{created_at:012x}{n:08x}", "trace_id": f"tr-{n // 3:x}", "created_at": created_at,
            "key_id": f"key_{int(chance.paretovariate(1.1)) % 40}", "key_name": "bench", "provider": provider,
            "slug": f"team-{chance.randrange(20)}", "endpoint": endpoint, "method": "POST",
            "path": f"/v1/predictions/{prediction}" if prediction else PATHS[endpoint], "model": model,
            "status": status, "latency_ms": chance.uniform(50, 3000), "upstream_latency_ms": chance.uniform(40, 2900),
            "request_bytes": len(request), "response_bytes": len(response), "cache_status": "MISS",
            "gateway_exception": int(status == 502), "error": error, "stream": int(chance.random() < 0.2),
            "prediction_id": prediction, "input_tokens": 60, "output_tokens": 80, "total_tokens": 140,
            "cost_usd": 0.0002, "cost_status": "priced", "retry_count": 0, "metadata": _json(metadata),
            "attempts": "[]", "request_headers": '{"content-type": "application/json"}',
            "response_headers": '{"content-type": "application/json"}', "request_body": request,
            "response_body": response, "request_content_type": "application/json",
            "response_content_type": "application/json",
        }})  # fmt: skip
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _json(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{key}": "{value}"' for key, value in mapping.items()) + "}"


FILTERS: list[tuple[str, LogFilter]] = [
    ("none", LogFilter()),
    ("since+until (1 h, 10 days ago)", LogFilter(since=NOW - 10 * DAY_MS, until=NOW - 10 * DAY_MS + 3_600_000)),
    ("provider (45%)", LogFilter(provider="openai")),
    ("provider (5%)", LogFilter(provider="cohere")),
    ("slug (5%)", LogFilter(slug="team-7")),
    ("status=error (14%)", LogFilter(status="error")),
    ("status=success (86%)", LogFilter(status="success")),
    ("status=502 (2%)", LogFilter(status=502)),
    ("key_id (common)", LogFilter(key_id="key_1")),
    ("key_id (rare)", LogFilter(key_id="key_39")),
    ("trace_id", LogFilter(trace_id="tr-1e240")),
    ("model (rare)", LogFilter(model="model-45")),
    ("endpoint (4.5%)", LogFilter(endpoint="completions")),
    ("prediction_id", LogFilter(prediction_id="pred0001000")),
    ("metadata env=prod (70%)", LogFilter(metadata={"env": "prod"})),
    ("metadata team (3%)", LogFilter(metadata={"team": "t7"})),
    ("metadata run (rare)", LogFilter(metadata={"run": "r1234"})),
    ("metadata team+env", LogFilter(metadata={"team": "t7", "env": "dev"})),
    ("q path (common)", LogFilter(q="chat/completions")),
    ("q error (1%)", LogFilter(q="rate limited")),
    ("q path (rare)", LogFilter(q="pred0001000")),
    ("q no match", LogFilter(q="no such text")),
    ("q 2 chars", LogFilter(q="v1")),
    ("since+key+error", LogFilter(since=NOW - 3 * DAY_MS, key_id="key_3", status="error")),
]


def fill(store: LogStore, count: int) -> float:
    started = time.perf_counter()
    for rows in record_batches(count):
        with store.batch() as batch:
            batch.append_logs(rows)
    return time.perf_counter() - started


def timings(store: LogStore, filters: LogFilter, runs: int) -> list[float]:
    store.list(filters, limit=50)  # warm-up
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        _, cursor = store.list(filters, limit=50)
        found.append((time.perf_counter() - started) * 1000)
        if cursor:
            started = time.perf_counter()
            store.list(filters, limit=50, cursor=cursor)
            found.append((time.perf_counter() - started) * 1000)
    return found


@contextmanager
def sqlite_store(_: argparse.Namespace) -> Iterator[LogStore]:
    with tempfile.TemporaryDirectory(prefix="mp-log-queries-") as data_dir:
        settings = Settings.load({"data_dir": data_dir})
        open_sqlite_store(settings.data_dir).close()
        store = open_log_store(settings)
        yield store
        store.close()


@contextmanager
def postgres_store(args: argparse.Namespace) -> Iterator[LogStore]:
    from pg_drivers import bench_database

    from modelport.store.pg_logs import PostgresLogStore

    with bench_database(args.server) as url:
        store = PostgresLogStore(url)
        store.upkeep(NOW)
        yield store
        store.close()


def analyzed(store: LogStore) -> None:
    if hasattr(store, "_connection"):  # PostgreSQL: the statistics autovacuum would have gathered
        with store._connection() as conn:  # type: ignore[attr-defined]
            conn.execute("ANALYZE logs")
        # and what the hourly upkeep does to the days already over (their GIN pending lists indexed),
        # as a month of traffic would have met it; the fill took under an hour, so no upkeep ran.
        store.upkeep(NOW)  # type: ignore[attr-defined]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    opened = {"sqlite": sqlite_store, "postgres": postgres_store}
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name in args.stores.split(","):
        with opened[name](args) as store:
            seconds = fill(store, args.records)
            print(f"{name}: filled {args.records:,} records in {seconds:.0f} s ({args.records / seconds:,.0f}/s)", flush=True)
            analyzed(store)
            results[name] = {}
            for label, filters in FILTERS:
                found = timings(store, filters, args.runs)
                results[name][label] = (statistics.median(found), percentile(found, 0.95))
                print(f"  {label}: p50 {results[name][label][0]:.2f} ms, p95 {results[name][label][1]:.2f} ms", flush=True)
    names = list(results)
    print("\n| filter | " + " | ".join(f"{n} p50 | {n} p95" for n in names) + " |")
    print("|---|" + "---:|" * (2 * len(names)))
    for label, _ in FILTERS:
        cells = " | ".join(f"{results[n][label][0]:.1f} | {results[n][label][1]:.1f}" for n in names)
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
