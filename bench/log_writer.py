"""The log writer's insert throughput: records/s through ``LogWriter`` in batches of 500.

    PYTHONPATH=src python3 bench/log_writer.py [--records 20000] [--runs 5]

Two figures per run, on a fresh data dir each time:
- *end to end*: records submitted all at once, timed until the writer has settled them all (it is
  behind, so it takes the catch-up lane's batches of 500): enrichment, pricing and the transaction.
- *store only*: the same records enriched beforehand, then written 500 per transaction: what the log
  store itself costs (the idempotency check, the ledger and the insert).
Records look like a chat completion's: ~1 KB of request and response JSON, metadata, one attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from modelport.log_record import Attempt, LogRecord
from modelport.logs.writer import CATCH_UP_BATCH_SIZE, LogWriter
from modelport.settings import Settings
from modelport.store import open_sqlite_store

REQUEST = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello " * 60}]})
RESPONSE = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "world " * 80}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 61, "completion_tokens": 80, "total_tokens": 141},
})  # fmt: skip


def record(i: int) -> LogRecord:
    found = LogRecord(trace_id=f"bench-{i}", method="POST", path="/v1/chat/completions", provider="openai",
                      endpoint="chat", model="gpt-4o-mini", status=200, latency_ms=12.5, upstream_latency_ms=11.0,
                      key_id="key_bench", key_name="bench", metadata={"team": "a", "run": str(i % 7)},
                      request_headers={"content-type": "application/json"},
                      response_headers={"content-type": "application/json"}, request_body=REQUEST,
                      response_body=RESPONSE, content_type="application/json",
                      response_content_type="application/json", request_bytes=len(REQUEST),
                      response_bytes=len(RESPONSE))  # fmt: skip
    found.attempts.append(Attempt(index="0", provider="openai", slug=None, started_at=time.time(), status=200, latency_ms=11.0))
    return found


async def end_to_end(data_dir: Path, count: int) -> float:
    settings = Settings.load({"data_dir": data_dir, "log_queue_size": count + 1})
    store = open_sqlite_store(settings.data_dir)
    writer = LogWriter(settings, store, None)
    await writer.start()
    records = [record(i) for i in range(count)]
    started = time.perf_counter()
    for item in records:
        writer.submit(item)
    writer._wake.set()
    while writer.settled_total < count:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    await writer.stop()
    store.close()
    return count / elapsed


async def store_only(data_dir: Path, count: int) -> float:
    settings = Settings.load({"data_dir": data_dir, "log_queue_size": count + 1})
    store = open_sqlite_store(settings.data_dir)
    writer = LogWriter(settings, store, None)
    await writer.start()
    prepared = [writer._prepare(record(i)) for i in range(count)]
    batches = [prepared[i:i + CATCH_UP_BATCH_SIZE] for i in range(0, count, CATCH_UP_BATCH_SIZE)]

    def write_all() -> float:
        started = time.perf_counter()
        for batch in batches:
            writer._write(batch)
        return time.perf_counter() - started

    elapsed = await asyncio.to_thread(write_all)
    await writer.stop()
    store.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"end to end": [], "store only": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            figures["end to end"].append(asyncio.run(end_to_end(Path(first), args.records)))
            figures["store only"].append(asyncio.run(store_only(Path(second), args.records)))
    for name, values in figures.items():
        print(f"{name:>10}: median {statistics.median(values):,.0f} records/s "
              f"(runs: {', '.join(f'{v:,.0f}' for v in values)})")


if __name__ == "__main__":
    main()
