"""``modelport logs`` (list, tail, show, export), run as a separate process like an operator would.

Most tests read a database seeded with known records and no gateway running (the CLI reads the store
directly); one reads what a running gateway just logged.
"""

from __future__ import annotations

import csv
import io
import os
import queue
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest

import modelport.store
from modelport.ids import new_time_ordered_id
from modelport.store import SQLiteLogStore
from modelport.store.log_base import LOG_COLUMNS, SUMMARY_FIELDS
from modelport.store.migrations import apply_migrations
from tests.harness import GatewayProcess, first_line_then_hang_up

SRC = str(Path(modelport.store.__file__).resolve().parents[2])
NOW = int(time.time() * 1000)


def environment() -> dict[str, str]:
    """This environment without MODELPORT_* settings, with ModelPort importable."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}, "PYTHONPATH": SRC}


def record(n: int, **fields: Any) -> dict[str, Any]:
    """A logs row as the writer stores it: ``n`` seconds before NOW, an OpenAI chat unless told otherwise."""
    row: dict[str, Any] = dict.fromkeys(LOG_COLUMNS)
    row.update(
        id=f"log_{n:024x}", trace_id=f"trace-{n}", created_at=NOW - n * 1000, key_id="key_a", key_name="team a",
        provider="openai", slug="openai-test", endpoint="chat", method="POST", path="/v1/chat/completions",
        model="gpt-4o-mini", status=200, latency_ms=12.5, upstream_latency_ms=10.0, request_bytes=40,
        response_bytes=300, cache_status="DISABLED", gateway_exception=0, stream=0, input_tokens=3,
        output_tokens=4, total_tokens=7, cost_usd=0.000012, cost_status="priced", retry_count=0,
        last_used_index="config", metadata=orjson.dumps({"team": "a"}).decode(),
        attempts=orjson.dumps([{"index": "config", "provider": "openai", "slug": "openai-test", "started_at": 1.0,
                                "latency_ms": 10.0, "status": 200, "retry": 0, "error": None}]).decode(),
        usage=orjson.dumps({"input_tokens": 3, "output_tokens": 4}).decode(),
        request_headers="{}", response_headers=orjson.dumps({"content-type": "application/json"}).decode(),
        request_body=b'{"model":"gpt-4o-mini","messages":[]}', response_body=b'{"answer":"Echo: hi"}',
        request_content_type="application/json", response_content_type="application/json",
    )  # fmt: skip
    row.update(fields)
    return row


SEEDED = [
    record(9),
    record(8, provider="replicate", slug="replicate-test", endpoint="proxy", method="POST",
           path="/v1/models/test/echo/predictions", model="test/echo", status=201, cost_usd=0.0003,
           cost_status="estimated", prediction_id="pred-1", metadata='{"team": "b"}', key_id="key_b"),
    record(7, status=500, error="upstream said no", cost_usd=None, cost_status="unpriced"),
    record(6, provider="replicate", slug="replicate-down", endpoint="proxy", method="GET", path="/v1/models/x/y",
           model=None, status=502, gateway_exception=1, error="cannot reach the provider", cost_usd=None,
           cost_status="unpriced", metadata='{"team": "b"}', response_body=b"\xff\xfe binary"),
    record(5, model="gpt-4o"),
]  # fmt: skip


def seed(db_path: Path, rows: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        apply_migrations(conn)
    finally:
        conn.close()
    store = SQLiteLogStore(db_path)
    with store.batch() as batch:
        batch.append_logs(rows)
    store.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    seed(path / "modelport.db", SEEDED)
    return path


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport", "logs", *args, "--data-dir", str(data_dir)],
                          env=environment(), capture_output=True, text=True, timeout=60)  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed(data_dir: Path, *args: str) -> list[str]:
    return [r["id"] for r in orjson.loads(ok(run(data_dir, "list", "--json", *args)))["data"]]


def seeded(*numbers: int) -> list[str]:
    return [f"log_{n:024x}" for n in numbers]


def test_list_prints_a_table_newest_first(data_dir: Path) -> None:
    table, legend = ok(run(data_dir, "list")).split("\n\n")
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "ID", "STATUS", "PROVIDER", "MODEL", "LATENCY", "TOKENS", "COST", "REQUEST"]
    assert [line.split()[2] for line in lines[1:]] == [log_id for log_id in seeded(5, 6, 7, 8, 9)]
    assert legend == ("STATUS* = an error of the gateway itself, not of the provider; "
                      "~$ = an estimated cost (see logs show for why)\n")  # fmt: skip
    assert "\n\n" not in ok(run(data_dir, "list", "--slug", "openai-test"))  # no marks, no legend
    by_id = {line.split()[2]: line for line in lines[1:]}
    assert "unpriced" in by_id[seeded(7)[0]] and "$0.0000" not in by_id[seeded(7)[0]]  # unknown cost is not $0
    assert "~$0.000300" in by_id[seeded(8)[0]]  # an estimate says so
    assert "502*" in by_id[seeded(6)[0]] and "GET /v1/models/x/y" in by_id[seeded(6)[0]]


def test_the_table_prints_ids_whole_so_show_takes_them_as_printed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log_id = new_time_ordered_id("log_")  # what the gateway gives a record
    seed(data_dir / "modelport.db", [record(1, id=log_id)])
    printed = ok(run(data_dir, "list")).splitlines()[1].split()[2]
    assert printed == log_id
    assert ok(run(data_dir, "show", printed)).startswith(log_id)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--provider", "replicate"], [6, 8]),
        (["--slug", "openai-test"], [5, 7, 9]),
        (["--errors"], [6, 7]),
        (["--status", "201"], [8]),
        (["--status", "success"], [5, 8, 9]),
        (["--model", "gpt-4o"], [5]),
        (["--endpoint", "proxy"], [6, 8]),
        (["--key", "key_b"], [8]),
        (["--trace-id", "trace-7"], [7]),
        (["--prediction-id", "pred-1"], [8]),
        (["--metadata", "team=b"], [6, 8]),
        (["--metadata", "team=b", "--errors"], [6]),
        (["-q", "said no"], [7]),
        (["--since", str(NOW - 7500)], [5, 6, 7]),
        (["--until", str(NOW - 7500)], [8, 9]),
        (["--since", "1h"], [5, 6, 7, 8, 9]),
        (["--until", "2000-01-01T00:00:00Z"], []),
    ],
)
def test_list_filters(data_dir: Path, args: list[str], expected: list[int]) -> None:
    assert listed(data_dir, *args) == seeded(*expected)


def test_list_pages_with_a_cursor(data_dir: Path) -> None:
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(5):
        page = orjson.loads(ok(run(data_dir, "list", "--json", "--limit", "2", *cursor)))
        seen += [r["id"] for r in page["data"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == seeded(5, 6, 7, 8, 9)
    assert "modelport logs list --cursor" in ok(run(data_dir, "list", "--limit", "2"))


def test_show_prints_one_record_for_people_and_as_json(data_dir: Path) -> None:
    [log_id] = seeded(9)
    text = ok(run(data_dir, "show", log_id))
    assert text.startswith(f"{log_id}  POST /v1/chat/completions  →  200")
    assert "Attempts:\n  config  openai @openai-test  status 200" in text
    assert '"answer": "Echo: hi"' in text  # a JSON body, pretty-printed
    as_json = orjson.loads(ok(run(data_dir, "show", log_id, "--json")))
    assert as_json == SQLiteLogStore(data_dir / "modelport.db").get(log_id)
    binary = orjson.loads(ok(run(data_dir, "show", seeded(6)[0], "--json")))
    assert binary["response_body_encoding"] == "base64"


def test_show_of_an_unknown_id_fails_cleanly(data_dir: Path) -> None:
    result = run(data_dir, "show", "log_missing")
    assert result.returncode == 1 and "no log record 'log_missing'" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_csv_to_a_file(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = run(data_dir, "export", "--format", "csv", "-o", str(target), "--provider", "openai")
    ok(result)
    assert "Wrote 3 record(s)" in result.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert list(rows[0]) == list(SUMMARY_FIELDS)
    assert [row["id"] for row in rows] == seeded(5, 7, 9)
    assert [row["cost_usd"] for row in rows] == ["1.2e-05", "", "1.2e-05"]


def test_export_jsonl_to_standard_output_matches_the_api_rows(data_dir: Path) -> None:
    lines = ok(run(data_dir, "export", "--metadata", "team=b")).splitlines()
    rows, _ = SQLiteLogStore(data_dir / "modelport.db").list()
    assert [orjson.loads(line) for line in lines] == [r for r in rows if r["metadata"] == {"team": "b"}]
    assert len(lines) == 2
    full = [orjson.loads(line) for line in ok(run(data_dir, "export", "--full", "--trace-id", "trace-9")).splitlines()]
    assert full[0]["response_body"] == '{"answer":"Echo: hi"}'


def test_tail_prints_the_latest_oldest_first(data_dir: Path) -> None:
    lines = ok(run(data_dir, "tail", "-n", "3")).splitlines()
    assert [line.split()[2] for line in lines[1:]] == seeded(7, 6, 5)
    as_json = [orjson.loads(line)["id"] for line in ok(run(data_dir, "tail", "-n", "2", "--json")).splitlines()]
    assert as_json == seeded(6, 5)


def lines_of(process: subprocess.Popen[str]) -> "queue.Queue[str]":
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def next_ids(found: "queue.Queue[str]", count: int, timeout: float = 10) -> list[str]:
    ids = []
    deadline = time.monotonic() + timeout
    while len(ids) < count:
        ids.append(orjson.loads(found.get(timeout=max(0.1, deadline - time.monotonic())))["id"])
    return ids


@pytest.fixture
def follower(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], "queue.Queue[str]"]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "modelport", "logs", "tail", "-f", "-n", "1", "--json", "--provider", "openai",
         "--data-dir", str(data_dir)],
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield process, lines_of(process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_tail_follow_prints_new_records_as_they_are_written(data_dir: Path, follower: Any) -> None:
    process, found = follower
    assert next_ids(found, 1) == seeded(5)
    db = data_dir / "modelport.db"
    seed(db, [record(-1, id="log_new_1"), record(-2, id="log_new_2", provider="replicate")])
    assert next_ids(found, 1) == ["log_new_1"]  # the replicate one is filtered out
    # The writer inserts in batches: a record can land after a newer one was printed. Still shown, once.
    seed(db, [record(-3, id="log_new_3"), record(0, id="log_late")])
    assert sorted(next_ids(found, 2)) == ["log_late", "log_new_3"]
    time.sleep(1.5)  # three more polls
    assert found.empty() and process.poll() is None


def test_missing_database_and_bad_arguments_fail_cleanly(tmp_path: Path) -> None:
    result = run(tmp_path / "nowhere", "list")
    assert result.returncode == 1 and "no database at" in result.stderr
    bad = run(tmp_path, "list", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr
    bad = run(tmp_path, "list", "--metadata", "team")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


@pytest.mark.parametrize("args", [["list", "--limit", "1000"], ["list", "--json", "--limit", "1000"], ["export"]])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    seed(data_dir / "modelport.db", [record(n) for n in range(1, 1001)])  # ~200 KB of table: more than a pipe holds
    command = [sys.executable, "-m", "modelport", "logs", *args, "--data-dir", str(data_dir)]
    first, code, stderr = first_line_then_hang_up(command, environment())
    assert first.strip()
    assert (code, stderr) == (0, "")


def test_list_reads_what_a_running_gateway_logged(gateway: GatewayProcess, fake_replicate: Any) -> None:
    trace_id = f"cli-{secrets.token_hex(6)}"
    reply = httpx.get(gateway.v1 + "/models/test/echo", headers=gateway.headers(**{
        "x-portkey-provider": "@replicate-test", "x-portkey-trace-id": trace_id}))  # fmt: skip
    assert reply.status_code == 200
    deadline = time.monotonic() + 15
    while not (found := listed(gateway.data_dir, "--trace-id", trace_id)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    [record_id] = found
    text = ok(run(gateway.data_dir, "show", record_id))
    assert "GET /v1/models/test/echo  →  200" in text and trace_id in text
