"""Request logs: one record per request whatever its outcome, bodies capped and redacted, and nothing
lost in a burst, a locked store, a SIGTERM, a SIGKILL or a killed log service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import pytest

from modelport.logs.enrich import Enricher, Redactor
from modelport.log_record import Attempt, LogRecord
from modelport.logs.record import records_from_wire, records_to_wire
from modelport.store import LogFilter, SQLiteLogStore
from modelport.usage import PriceBook
from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN, replicate_provider, stored
from tests.harness import GatewayProcess

REPLICATE = {"x-portkey-provider": "@replicate-test"}
OPENAI = {"x-portkey-provider": "@openai-test"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tell me something"}]}


def queries(gateway: GatewayProcess) -> SQLiteLogStore:
    return SQLiteLogStore(gateway.data_dir / "modelport.db")


def wait_for_logs(gateway: GatewayProcess, filters: LogFilter, count: int, timeout: float = 15) -> list[dict]:
    """The rows a filter selects, once there are ``count`` of them (the writer is asynchronous)."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(queries(gateway).iter_export(filters, full=True))
        if len(found) >= count:
            time.sleep(0.3)  # and no more than that: a second write of the same request would show now
            return list(queries(gateway).iter_export(filters, full=True))
        time.sleep(0.05)
    raise AssertionError(f"expected {count} log rows for {filters}, found {len(found)}")


def one_log(gateway: GatewayProcess, trace_id: str) -> dict:
    rows = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert len(rows) == 1, rows
    return rows[0]


def trace() -> str:
    return "t-" + uuid.uuid4().hex


def metric(gateway: GatewayProcess, name: str) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def gateway_with(tmp_path: Path, fake_replicate, fake_openai, workers: int = 1, **settings) -> GatewayProcess:
    providers = [replicate_provider(fake_replicate[0].url), stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY}
    return GatewayProcess(tmp_path / "data", providers=providers, env=env, settings=settings, workers=workers)


# --- one record per request --------------------------------------------------------------------


def test_a_successful_request_is_logged_with_its_details(gateway):
    trace_id = trace()
    metadata = {"team": "search", "run": trace_id}
    response = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20, headers=gateway.headers(
        **OPENAI, **{"x-portkey-trace-id": trace_id, "x-portkey-metadata": json.dumps(metadata)}))
    assert response.status_code == 200
    row = one_log(gateway, trace_id)
    assert row["status"] == 200 and row["method"] == "POST" and row["path"] == "/v1/chat/completions"
    assert (row["provider"], row["slug"], row["endpoint"], row["model"]) == ("openai", "openai-test", "chat", "gpt-4o-mini")
    assert row["key_id"] and row["key_name"] and row["metadata"] == metadata
    assert row["created_at"].endswith("Z") and row["latency_ms"] > 0 and row["upstream_latency_ms"] > 0
    assert row["request_bytes"] > 0 and row["response_bytes"] == len(response.content)
    assert row["gateway_exception"] is False and row["error"] is None and row["cache_status"]
    usage = response.json()["usage"]
    assert (row["input_tokens"], row["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0
    assert json.loads(row["response_body"])["id"] == response.json()["id"]
    assert len(row["attempts"]) == 1 and row["attempts"][0]["status"] == 200
    assert row["request_headers"]["x-portkey-api-key"] == "[redacted]" and gateway.admin_key not in json.dumps(row)


def test_a_provider_error_is_logged_as_the_providers(gateway, fake_replicate):
    _, replicate = fake_replicate
    replicate.fail_next(503, path="/v1/account")
    trace_id = trace()
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**REPLICATE, **{"x-portkey-trace-id": trace_id}))
    assert response.status_code == 503
    row = one_log(gateway, trace_id)
    assert row["status"] == 503 and row["gateway_exception"] is False and row["provider"] == "replicate"
    assert row["cost_usd"] == 0 and row["cost_status"] == "priced"  # a failed call is not billed: a known zero


def test_a_gateway_error_is_logged_as_a_gateway_exception(gateway):
    trace_id = trace()
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@no-such-slug", "x-portkey-trace-id": trace_id}))
    assert response.headers["x-portkey-gateway-exception"] == "true"
    row = one_log(gateway, trace_id)
    assert row["status"] == response.status_code >= 400
    assert row["gateway_exception"] is True and "no-such-slug" in row["error"]


def test_a_request_without_a_valid_key_is_logged_too(gateway):
    trace_id = trace()
    response = httpx.get(gateway.v1 + "/account", headers={**REPLICATE, "x-portkey-api-key": "mp-wrong", "x-portkey-trace-id": trace_id})
    assert response.status_code == 401
    row = one_log(gateway, trace_id)
    assert row["status"] == 401 and row["gateway_exception"] is True and row["key_id"] is None


def test_a_client_that_disconnects_mid_request_is_logged_as_499(gateway):
    trace_id = trace()
    head = (f"POST /v1/predictions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 5000\r\nx-portkey-api-key: {gateway.admin_key}\r\nx-portkey-provider: @replicate-test\r\n"
            f"x-portkey-trace-id: {trace_id}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(head.encode() + b'{"input": {"text": "only part of')
        time.sleep(0.2)
    row = one_log(gateway, trace_id)
    assert row["status"] == 499 and "disconnected" in row["error"]


def test_a_stream_is_logged_once_with_its_usage(gateway):
    trace_id = trace()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, timeout=20,
                      headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id})) as response:
        streamed = b"".join(response.iter_bytes())
    row = one_log(gateway, trace_id)
    assert row["stream"] is True and row["status"] == 200
    assert row["response_body"].encode() == streamed  # the assembled events, as relayed
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_status"] == "priced"


def test_a_replicate_stream_relay_is_logged(gateway):
    headers = gateway.headers(**REPLICATE)
    created = httpx.post(gateway.v1 + "/models/test/llm/predictions", json={"input": {"prompt": "a b c"}, "stream": True}, headers=headers).json()
    with httpx.stream("GET", created["urls"]["stream"], headers={"Accept": "text/event-stream"}, timeout=20) as response:
        text = "".join(response.iter_text())
    assert "event: done" in text
    trace_id = httpx.post(gateway.v1 + "/models/test/llm/predictions", json={"input": {"prompt": "x"}}, headers=headers).headers["x-portkey-trace-id"]
    assert one_log(gateway, trace_id)  # written after the stream's record, so the stream's is in too
    streams = [r for r in queries(gateway).iter_export(LogFilter(endpoint="stream"), full=True) if "event: done" in (r["response_body"] or "")]
    assert streams and streams[0]["provider"] == "replicate" and streams[0]["stream"] is True


def test_retries_and_fallbacks_are_visible_as_attempts(gateway, fake_replicate):
    _, replicate = fake_replicate
    replicate.fail_next(500, path="/v1/account")
    retried = trace()
    config = {"provider": "@replicate-test", "retry": {"attempts": 2, "on_status_codes": [500]}}
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-config": json.dumps(config), "x-portkey-trace-id": retried}))
    assert response.status_code == 200
    row = one_log(gateway, retried)
    assert [(a["status"], a["retry"]) for a in row["attempts"]] == [(500, 0), (200, 1)]
    assert row["retry_count"] == 1

    fell_back = trace()
    config = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@replicate-down"}, {"provider": "@replicate-test"}]}
    response = httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-config": json.dumps(config), "x-portkey-trace-id": fell_back}))
    assert response.status_code == 200
    row = one_log(gateway, fell_back)
    assert [(a["index"], a["slug"]) for a in row["attempts"]] == [("config.targets[0]", "replicate-down"), ("config.targets[1]", "replicate-test")]
    assert row["attempts"][0]["error"] and row["last_used_index"] == "config.targets[1]"


# --- bodies: caps, redaction, switched off -----------------------------------------------------


@pytest.fixture(scope="module")
def redacting_gateway(tmp_path_factory, fake_replicate, fake_openai):
    settings = {"log_body_max_bytes": 600, "log_redact_paths": ["choices[*].message.content", "messages[*].content"]}
    with gateway_with(tmp_path_factory.mktemp("redacting"), fake_replicate, fake_openai, **settings) as process:
        yield process


def test_credentials_and_configured_paths_are_redacted(redacting_gateway):
    gateway = redacting_gateway
    trace_id = trace()
    headers = gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id, "Cookie": "session=abc123", "X-Custom-Token": "tok-999"})
    response = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, headers=headers, timeout=20)
    assert "Echo" in response.json()["choices"][0]["message"]["content"]
    row = one_log(gateway, trace_id)
    stored_body = json.loads(row["response_body"])
    assert stored_body["choices"][0]["message"]["content"] == "[redacted]"
    assert stored_body["id"] == response.json()["id"]
    assert json.loads(row["request_body"]) == {**CHAT, "messages": [{"role": "user", "content": "[redacted]"}]}
    assert row["request_headers"]["cookie"] == "[redacted]" and row["request_headers"]["x-custom-token"] == "[redacted]"
    everything = json.dumps(row)
    assert gateway.admin_key not in everything and OPENAI_KEY not in everything and "abc123" not in everything


def test_stream_bodies_are_capped(redacting_gateway):
    gateway = redacting_gateway
    trace_id = trace()
    body = {**CHAT, "messages": [{"role": "user", "content": " ".join(["word"] * 200)}], "stream": True}
    with httpx.stream("POST", gateway.v1 + "/chat/completions", json=body, timeout=20,
                      headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id})) as response:
        streamed = b"".join(response.iter_bytes())
    row = one_log(gateway, trace_id)
    assert len(streamed) > 600 and row["response_bytes"] == len(streamed)
    assert 0 < len(row["response_body"].encode()) <= 600 and row["response_body"].startswith("data:")


def test_a_json_body_cut_at_the_cap_is_not_stored_when_paths_must_be_redacted(redacting_gateway):
    gateway = redacting_gateway
    trace_id = trace()
    response = httpx.get(gateway.v1 + "/models", headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id}))
    assert len(response.content) > 600
    row = one_log(gateway, trace_id)
    assert row["response_body"] is None and row["response_bytes"] == len(response.content)


def test_body_storage_can_be_switched_off(tmp_path, fake_replicate, fake_openai):
    with gateway_with(tmp_path, fake_replicate, fake_openai, log_bodies=False) as gateway:
        trace_id = trace()
        httpx.post(gateway.v1 + "/chat/completions", json=CHAT, headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id}), timeout=20)
        row = one_log(gateway, trace_id)
    assert row["request_body"] is None and row["response_body"] is None
    assert row["status"] == 200 and row["response_bytes"] > 0


def test_body_storage_can_be_switched_off_per_key(gateway):
    created = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(),
                         json={"name": f"no-bodies-{trace()}", "scopes": ["inference"], "log_bodies": False})
    assert created.status_code in (200, 201), created.text
    quiet_key = created.json()["key"]
    quiet_trace, loud_trace = trace(), trace()
    httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20,
               headers={**OPENAI, "x-portkey-api-key": quiet_key, "x-portkey-trace-id": quiet_trace})
    httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20,
               headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": loud_trace}))
    quiet, loud = one_log(gateway, quiet_trace), one_log(gateway, loud_trace)
    assert quiet["request_body"] is None and quiet["response_body"] is None
    assert quiet["input_tokens"] > 0 and quiet["cost_status"] == "priced"  # usage and cost still recorded
    assert loud["request_body"] and loud["response_body"]
    shown = httpx.get(gateway.v1 + f"/api-keys/{created.json()['id']}", headers=gateway.headers()).json()
    assert shown["log_bodies"] is False


def test_request_bodies_are_capped_and_redacted_and_the_stored_secret_scrubbed():
    """The enrichment step on its own: the pipeline hands it a record, it makes the row."""
    enricher = Enricher(PriceBook.load(), Redactor(("input.api_key", "messages[*].content")), log_bodies=True, body_cap=200,
                        secrets_for=lambda slug: "r8_stored_secret_value")
    body = json.dumps({"input": {"api_key": "inner-secret", "prompt": "hi"}, "messages": [{"role": "user", "content": "private"}]}).encode()
    record = LogRecord(trace_id="t", method="POST", path="/v1/predictions", provider="replicate", slug="replicate-test",
                       request_body=body, status=201, request_headers={"x-api-key": "k-1", "accept": "application/json"},
                       response_body=b'{"detail": "token r8_stored_secret_value was echoed"}', error="saw r8_stored_secret_value")
    row = enricher.prepare(record).row
    stored_request = json.loads(row["request_body"])
    assert stored_request == {"input": {"api_key": "[redacted]", "prompt": "hi"}, "messages": [{"role": "user", "content": "[redacted]"}]}
    assert b"r8_stored_secret_value" not in row["response_body"] and "r8_stored_secret_value" not in row["error"]
    assert json.loads(row["request_headers"]) == {"x-api-key": "[redacted]", "accept": "application/json"}
    record = LogRecord(trace_id="t", method="POST", path="/v1/chat/completions", request_body=b"x" * 500, store_bodies=False)
    assert enricher.prepare(record).row["request_body"] is None  # the key said: do not store bodies
    record = LogRecord(trace_id="t", method="POST", path="/v1/files", request_body=b"y" * 500)
    assert enricher.prepare(record).row["request_body"] == b"y" * 200


# --- nothing lost ------------------------------------------------------------------------------


def test_a_burst_of_2000_concurrent_requests_is_all_logged(gateway):
    run = uuid.uuid4().hex
    headers = gateway.headers(**REPLICATE, **{"x-portkey-metadata": json.dumps({"burst": run})})

    async def burst() -> list[int]:
        # aiohttp, not httpx: httpx's pool slows down quadratically with thousands of queued requests.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def one() -> int:
                async with session.get(gateway.v1 + "/account") as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one() for _ in range(2000)))

    assert asyncio.run(burst()) == [200] * 2000
    rows = wait_for_logs(gateway, LogFilter(metadata={"burst": run}), 2000, timeout=60)
    assert len(rows) == 2000 and len({r["id"] for r in rows}) == 2000


def hold_write_lock(db_path: Path) -> sqlite3.Connection:
    """Another program holding SQLite's write lock: the store is there but takes no writes."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def send_tagged(gateway: GatewayProcess, tag: str, count: int) -> list[str]:
    headers = gateway.headers(**REPLICATE, **{"x-portkey-metadata": json.dumps({"run": tag})})
    with httpx.Client(base_url=gateway.v1, headers=headers, timeout=20) as client:
        responses = [client.get("/account") for _ in range(count)]
    assert all(r.status_code == 200 for r in responses)
    return [r.headers["x-portkey-trace-id"] for r in responses]


def wait_until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_locked_store_spills_to_disk_then_catches_up(tmp_path, fake_replicate, fake_openai):
    # A small queue: while the store is locked, records overflow the queue into the spill file too.
    with gateway_with(tmp_path, fake_replicate, fake_openai, log_queue_size=10) as gateway:
        send_tagged(gateway, "warm-up", 1)
        wait_for_logs(gateway, LogFilter(metadata={"run": "warm-up"}), 1)
        lock = hold_write_lock(gateway.data_dir / "modelport.db")
        try:
            traces = send_tagged(gateway, "locked", 60)
            wait_until(lambda: metric(gateway, "modelport_log_spilled_records_total") >= 60)
            assert metric(gateway, "modelport_log_written_records_total") == 1
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        rows = wait_for_logs(gateway, LogFilter(metadata={"run": "locked"}), 60)
        assert sorted(r["trace_id"] for r in rows) == sorted(traces)
        wait_until(lambda: metric(gateway, "modelport_log_spill_pending") == 0)
        assert metric(gateway, "modelport_log_replayed_records_total") >= 60
    assert not list((gateway.data_dir / "spill").glob("*.jsonl"))


def test_sigterm_during_load_logs_every_answered_request(tmp_path, fake_replicate, fake_openai):
    _, replicate = fake_replicate
    gateway = gateway_with(tmp_path, fake_replicate, fake_openai).start()
    answered: list[str] = []
    stop = threading.Event()

    def load(path: str, once: bool = False) -> None:
        headers = gateway.headers(**REPLICATE, **{"x-portkey-metadata": json.dumps({"run": "sigterm"})})
        with httpx.Client(base_url=gateway.v1, headers=headers, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get(path)
                except httpx.HTTPError:
                    return  # the gateway stopped accepting
                if response.status_code == 200:
                    answered.append(response.headers["x-portkey-trace-id"])
                if once:
                    return

    workers = [threading.Thread(target=load, args=("/account",)) for _ in range(8)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(answered) >= 300)
    # In flight when SIGTERM lands: answered during the graceful shutdown, so their records reach the
    # writer's queue moments before it is told to stop.
    replicate.delay_next(1.0, times=20, path="/v1/hardware")
    slow = [threading.Thread(target=load, args=("/hardware", True)) for _ in range(20)]
    for worker in slow:
        worker.start()
    wait_until(lambda: len(replicate.requests_to("/v1/hardware")) >= 20)
    assert gateway.stop(signal.SIGTERM) == 0
    stop.set()
    for worker in workers + slow:
        worker.join()
    logged = {r["trace_id"] for r in queries(gateway).iter_export(LogFilter(metadata={"run": "sigterm"}))}
    assert len(answered) >= 320
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered requests were not logged"


def test_a_sigkilled_gateway_replays_its_spill_file_on_restart(tmp_path, fake_replicate, fake_openai):
    gateway = gateway_with(tmp_path, fake_replicate, fake_openai).start()
    lock = hold_write_lock(gateway.data_dir / "modelport.db")
    try:
        traces = send_tagged(gateway, "killed", 40)
        wait_until(lambda: metric(gateway, "modelport_log_spilled_records_total") >= 40)
        gateway.stop(signal.SIGKILL)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    spilled = b"".join(path.read_bytes() for path in (gateway.data_dir / "spill").glob("*.jsonl"))
    assert spilled and b"[redacted]" in spilled
    assert gateway.admin_key.encode() not in spilled  # credentials are redacted before anything touches disk
    gateway.start()
    try:
        rows = wait_for_logs(gateway, LogFilter(metadata={"run": "killed"}), 40)
        assert sorted(r["trace_id"] for r in rows) == sorted(traces)
        wait_until(lambda: not list((gateway.data_dir / "spill").glob("*.jsonl")))
    finally:
        gateway.stop()


def test_a_killed_log_service_is_restarted_and_every_answered_request_is_logged(tmp_path, fake_replicate, fake_openai):
    gateway = gateway_with(tmp_path, fake_replicate, fake_openai, workers=2).start()
    answered: list[str] = []
    failed: list[int] = []
    stop = threading.Event()

    def load() -> None:
        headers = gateway.headers(**REPLICATE, **{"x-portkey-metadata": json.dumps({"run": "service-killed"})})
        with httpx.Client(base_url=gateway.v1, headers=headers, timeout=10) as client:
            while not stop.is_set():
                response = client.get("/account")
                if response.status_code == 200:
                    answered.append(response.headers["x-portkey-trace-id"])
                else:
                    failed.append(response.status_code)

    try:
        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answered) >= 300)
        killed = gateway.log_service_pid()
        assert killed is not None
        wait_until(lambda: metric(gateway, "modelport_log_queue_depth") > 0)
        os.kill(killed, signal.SIGKILL)  # while it holds records in memory: the workers must still have them
        wait_until(lambda: gateway.log_service_pid() not in (None, killed))
        wait_until(lambda: httpx.get(gateway.url + "/metrics").status_code == 200)  # the new one listens
        restarted_at = len(answered)
        wait_until(lambda: len(answered) >= restarted_at + 300)
        stop.set()
        for thread in threads:
            thread.join()
        assert failed == []
        rows = wait_for_logs(gateway, LogFilter(metadata={"run": "service-killed"}), len(answered), timeout=30)
        assert {r["trace_id"] for r in rows} == set(answered) and len(rows) == len(answered)
        wait_until(lambda: not list((gateway.data_dir / "spill").glob("*.jsonl")))  # workers' spills replayed
        assert metric(gateway, "modelport_log_replayed_records_total") > 0  # by the new service, which counts them
    finally:
        stop.set()
        gateway.stop()


def thread_niceness(pid: int) -> dict[int, int]:
    """Each thread's nice value by thread id (field 19 of /proc/<pid>/task/<tid>/stat)."""
    return {int(stat.parent.name): int(stat.read_text().rsplit(") ", 1)[1].split()[16])
            for stat in Path(f"/proc/{pid}/task").glob("*/stat")}


def test_a_log_service_that_falls_behind_catches_up_at_normal_priority(tmp_path, fake_replicate, fake_openai):
    with gateway_with(tmp_path, fake_replicate, fake_openai) as gateway:
        send_tagged(gateway, "warm-up", 1)
        wait_for_logs(gateway, LogFilter(metadata={"run": "warm-up"}), 1)
        service = gateway.log_service_pid()
        assert service is not None
        # Requests first: the enricher and writer threads that have kept up run at the lowest priority;
        # the event loop, which reads the workers' frames, at normal priority.
        niceness = thread_niceness(service)
        assert niceness[service] == 0 and list(niceness.values()).count(19) == 2, niceness
        assert metric(gateway, "modelport_log_catch_ups_total") == 0
        headers = gateway.headers(**REPLICATE, **{"x-portkey-metadata": json.dumps({"run": "behind"})})

        async def burst(count: int) -> list[int]:
            async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=50)) as session:
                async def one() -> int:
                    async with session.get(gateway.v1 + "/account") as response:
                        await response.read()
                        return response.status

                return await asyncio.gather(*(one() for _ in range(count)))

        os.kill(service, signal.SIGSTOP)  # the service falls behind: the workers hold what it has not read
        try:
            assert asyncio.run(burst(1500)) == [200] * 1500
        finally:
            os.kill(service, signal.SIGCONT)
        rows = wait_for_logs(gateway, LogFilter(metadata={"run": "behind"}), 1500, timeout=60)
        assert len({r["id"] for r in rows}) == 1500
        assert metric(gateway, "modelport_log_catch_ups_total") >= 1
        assert metric(gateway, "modelport_log_spilled_records_total") == 0
        # ...and it caught up on second enricher and writer threads, at normal priority.
        assert list(thread_niceness(service).values()).count(0) >= 3, thread_niceness(service)


def test_every_kind_of_value_a_record_holds_crosses_the_wire_unchanged():
    """Workers send records to the log service as marshal; a value it cannot encode would send the
    whole batch to the spill file instead. This record holds each kind the pipeline puts in one."""
    record = LogRecord(trace_id="t", method="POST", path="/v1/chat/completions", key_id="k", provider="anthropic",
                       status=200, latency_ms=1.5, upstream_latency_ms=None, metadata={"user": "a", "n": [1, {"x": None}]},
                       request_headers=[(b"host", b"gw"), (b"x-a", b"1")], response_headers=((b"Date", b"now"),),
                       request_body=b"{}", response_body=None, usage={"prompt_tokens": 3, "details": {"cached": 0}},
                       stream=True, store_bodies=False)
    record.attempts.append(Attempt(index="config.targets[0]", provider="anthropic", slug=None, started_at=1.0, status=200))
    (decoded,) = records_from_wire(records_to_wire([record]))
    assert decoded == record
