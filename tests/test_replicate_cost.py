"""Replicate predictions as one lifecycle in the logs, priced once when their end is first seen."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from modelport.logs.analytics import summarize
from modelport.store import LogFilter, SQLiteLogStore
from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN, replicate_provider, stored
from tests.harness import GatewayProcess

REPLICATE = {"x-portkey-provider": "@replicate-test"}
CPU, A40_LARGE = 0.0001, 0.000725  # USD per second, shipped hardware table


def start_gateway(tmp: Path, fake_replicate, fake_openai, replicate_prices: dict, prices: dict | None = None,
                  workers: int = 1, **settings) -> GatewayProcess:
    (tmp / "replicate-prices.json").write_text(json.dumps(replicate_prices))
    settings["replicate_pricing_file"] = str(tmp / "replicate-prices.json")
    if prices is not None:
        (tmp / "prices.json").write_text(json.dumps(prices))
        settings["pricing_file"] = str(tmp / "prices.json")
    providers = [replicate_provider(fake_replicate[0].url), stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY}
    return GatewayProcess(tmp / "data", providers=providers, env=env, settings=settings, workers=workers).start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    """test/echo mapped to cpu; gpt-4.1-mini marked unpriced by the operator; no autopoll."""
    process = start_gateway(tmp_path_factory.mktemp("priced"), fake_replicate, fake_openai,
                            {"models": {"test/echo": "cpu"}}, {"openai": {"gpt-4.1-mini": None}})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def autopoll_gateway(tmp_path_factory, fake_replicate, fake_openai):
    """test/llm priced per token as an official model; unknown hardware assumed; autopoll on."""
    process = start_gateway(tmp_path_factory.mktemp("autopoll"), fake_replicate, fake_openai,
                            {"official": {"test/llm": {"input": 10, "output": 20}}},
                            replicate_autopoll=True, replicate_autopoll_interval=0.3)
    yield process
    process.stop()


def client(gateway: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=gateway.v1, headers=gateway.headers(**REPLICATE), timeout=20)


def run_to_end(gateway: GatewayProcess, path: str, body: dict, **headers: str) -> dict:
    with client(gateway) as http:
        prediction = http.post(path, json=body, headers=headers).json()
        while prediction["status"] not in ("succeeded", "failed", "canceled"):
            prediction = http.get(f"/predictions/{prediction['id']}").json()
        http.get(f"/predictions/{prediction['id']}")  # one more look after the end: must not be charged again
    return prediction


def lifecycle(gateway: GatewayProcess, prediction_id: str, rows: int, timeout: float = 15) -> list[dict]:
    """The log rows of one prediction, once there are ``rows`` of them and one carries its end."""
    deadline = time.monotonic() + timeout
    while True:
        terminal = terminal_log(gateway, prediction_id)  # read first: the rows read next then include it
        found = list(SQLiteLogStore(gateway.data_dir / "modelport.db").iter_export(LogFilter(prediction_id=prediction_id), full=True))
        if len(found) >= rows and terminal is not None and any(r["id"] == terminal for r in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} log rows for {prediction_id}, expected {rows} and a priced end")
        time.sleep(0.05)


def terminal_log(gateway: GatewayProcess, prediction_id: str) -> str | None:
    with sqlite3.connect(gateway.data_dir / "modelport.db") as conn:
        row = conn.execute("SELECT terminal_log_id FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
    return row[0] if row else None


def priced_once(gateway: GatewayProcess, rows: list[dict]) -> dict:
    """The one row that carries the prediction's cost; every other row says where it went."""
    charged = [r for r in rows if r["cost_usd"]]
    assert len(charged) == 1, [(r["path"], r["cost_usd"], r["cost_status"]) for r in rows]
    assert charged[0]["id"] == terminal_log(gateway, charged[0]["prediction_id"])
    for other in rows:
        if other is not charged[0]:
            assert other["cost_usd"] in (0, None)
            assert other["cost_reason"] and charged[0]["prediction_id"] in other["cost_reason"]
    return charged[0]


def test_a_prediction_is_priced_once_by_its_hardware_and_predict_time(gateway):
    prediction = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "hello"}})
    rows = lifecycle(gateway, prediction["id"], rows=4)  # create, poll (processing), poll (succeeded), one more
    charged = priced_once(gateway, rows)
    assert charged["cost_usd"] == pytest.approx(1.5 * CPU) and charged["cost_status"] == "priced"
    assert "cpu" in charged["cost_reason"] and charged["usage"]["seconds"] == 1.5
    assert {r["model"] for r in rows} == {"test/echo"}
    assert sum(r["cost_usd"] or 0 for r in rows) == pytest.approx(1.5 * CPU)


def test_a_sync_prediction_is_priced_on_its_create(gateway):
    with client(gateway) as http:
        done = http.post("/models/test/echo/predictions", json={"input": {"text": "now", "predict_time": 2}},
                         headers={"Prefer": "wait=5"}).json()
    assert done["status"] == "succeeded"
    [row] = lifecycle(gateway, done["id"], rows=1)
    assert row["method"] == "POST" and row["cost_usd"] == pytest.approx(2 * CPU)


def test_a_deployment_is_priced_by_the_hardware_its_api_reports(gateway, fake_replicate):
    _, replicate = fake_replicate
    looked_up = len(replicate.requests_to("/v1/deployments/test/llm-prod", method="GET"))
    first = run_to_end(gateway, "/deployments/test/llm-prod/predictions", {"input": {"prompt": "one two"}})
    second = run_to_end(gateway, "/deployments/test/llm-prod/predictions", {"input": {"prompt": "three"}})
    for prediction in (first, second):
        charged = priced_once(gateway, lifecycle(gateway, prediction["id"], rows=4))
        assert charged["cost_usd"] == pytest.approx(2.5 * A40_LARGE) and charged["cost_status"] == "priced"
        assert "gpu-a40-large" in charged["cost_reason"]
    received = replicate.requests_to("/v1/deployments/test/llm-prod", method="GET")[looked_up:]
    assert len(received) == 1  # cached for the second prediction
    assert received[0].headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"


def test_unknown_hardware_is_the_default_and_flagged_estimated(gateway):
    prediction = run_to_end(gateway, "/models/test/image/predictions", {"input": {"prompt": "a cat"}})
    charged = priced_once(gateway, lifecycle(gateway, prediction["id"], rows=4))
    assert charged["cost_status"] == "estimated"
    assert charged["cost_usd"] == pytest.approx(4.0 * A40_LARGE)  # MODELPORT_REPLICATE_DEFAULT_HARDWARE
    assert "default" in charged["cost_reason"]


def test_a_canceled_prediction_is_charged_on_the_cancel(gateway):
    with client(gateway) as http:
        created = http.post("/models/test/echo/predictions", json={"input": {"text": "x", "predict_time": 3}}).json()
        assert http.get(f"/predictions/{created['id']}").json()["status"] == "processing"
        assert http.post(f"/predictions/{created['id']}/cancel").json()["status"] == "canceled"
    charged = priced_once(gateway, lifecycle(gateway, created["id"], rows=3))
    assert charged["path"].endswith("/cancel") and charged["cost_usd"] == pytest.approx(3 * CPU)


def test_unknown_cost_is_unpriced_never_zero(gateway):
    with client(gateway) as http:
        started = http.post("/models/test/echo/predictions", json={"input": {"text": "never polled"}})
    chat = httpx.post(gateway.v1 + "/chat/completions", timeout=20, json={"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]},
                      headers=gateway.headers(**{"x-portkey-provider": "@openai-test"}))
    assert chat.status_code == 200
    queries = SQLiteLogStore(gateway.data_dir / "modelport.db")
    deadline = time.monotonic() + 10
    while len(rows := [queries.get(l["id"]) for l in queries.list(LogFilter(trace_id=chat.headers["x-portkey-trace-id"]))[0]]) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rows[0]["cost_usd"] is None and rows[0]["cost_status"] == "unpriced" and rows[0]["input_tokens"] > 0
    [create] = list(queries.iter_export(LogFilter(prediction_id=started.json()["id"])))
    assert create["cost_usd"] is None and create["cost_status"] == "unpriced"
    totals = summarize(queries, LogFilter(trace_id=chat.headers["x-portkey-trace-id"]))["totals"]
    assert totals["unpriced_requests"] == 1 and totals["cost_usd"] == 0


def test_priced_once_even_when_several_workers_see_the_end(tmp_path, fake_replicate, fake_openai):
    gateway = start_gateway(tmp_path, fake_replicate, fake_openai, {"models": {"test/echo": "cpu"}}, workers=2)
    try:
        with client(gateway) as http:
            created = http.post("/models/test/echo/predictions", json={"input": {"text": "race"}}).json()
        polls: list[int] = []

        def poll() -> None:
            with client(gateway) as own:  # a connection each, so the kernel spreads them over workers
                for _ in range(5):
                    polls.append(own.get(f"/predictions/{created['id']}").status_code)

        threads = [threading.Thread(target=poll) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert polls == [200] * 40
        rows = lifecycle(gateway, created["id"], rows=41)
        assert sum(r["cost_usd"] or 0 for r in rows) == pytest.approx(1.5 * CPU)
        priced_once(gateway, rows)
    finally:
        gateway.stop()


# --- token-priced models and autopoll ----------------------------------------------------------


def test_a_token_priced_model_uses_the_token_counts(autopoll_gateway):
    prediction = run_to_end(autopoll_gateway, "/models/test/llm/predictions", {"input": {"prompt": "count these four words"}})
    rows = lifecycle(autopoll_gateway, prediction["id"], rows=4)
    charged = priced_once(autopoll_gateway, rows)
    metrics = prediction["metrics"]
    expected = metrics["input_token_count"] * 10 / 1e6 + metrics["output_token_count"] * 20 / 1e6
    assert charged["cost_usd"] == pytest.approx(expected) and charged["cost_status"] == "priced"
    assert (charged["input_tokens"], charged["output_tokens"]) == (metrics["input_token_count"], metrics["output_token_count"])
    assert sum(r["input_tokens"] or 0 for r in rows) == metrics["input_token_count"]  # tokens counted once too


def test_autopoll_prices_a_fire_and_forget_prediction(autopoll_gateway, fake_replicate):
    with client(autopoll_gateway) as http:
        created = http.post("/models/test/echo/predictions", json={"input": {"text": "fire and forget"}}).json()
    rows = lifecycle(autopoll_gateway, created["id"], rows=2)
    charged = priced_once(autopoll_gateway, rows)
    assert charged["metadata"] == {"modelport_autopoll": "true"} and charged["method"] == "GET"
    assert charged["cost_status"] == "estimated" and charged["cost_usd"] == pytest.approx(1.5 * A40_LARGE)
    time.sleep(1)  # several autopoll rounds later, the ended prediction is no longer polled
    _, replicate = fake_replicate
    polled = replicate.requests_to(f"/v1/predictions/{created['id']}")
    assert len(polled) == len(lifecycle(autopoll_gateway, created["id"], rows=2)) - 1


def test_a_streamed_prediction_nobody_polls_is_priced_by_autopoll(autopoll_gateway):
    with client(autopoll_gateway) as http:
        created = http.post("/models/test/llm/predictions", json={"input": {"prompt": "stream me"}, "stream": True}).json()
    with httpx.stream("GET", created["urls"]["stream"], headers={"Accept": "text/event-stream"}, timeout=20) as response:
        assert "event: done" in "".join(response.iter_text())
    charged = priced_once(autopoll_gateway, lifecycle(autopoll_gateway, created["id"], rows=2))
    assert charged["output_tokens"] == 2 and charged["cost_status"] == "priced"


def test_autopoll_runs_once_for_all_workers(tmp_path, fake_replicate, fake_openai):
    _, replicate = fake_replicate
    interval, window = 0.3, 2.1
    gateway = start_gateway(tmp_path, fake_replicate, fake_openai, {"models": {"test/echo": "cpu"}}, workers=2,
                            replicate_autopoll=True, replicate_autopoll_interval=interval)
    try:
        replicate.script_next(polls=10_000)  # never ends while we watch
        with client(gateway) as http:
            created = http.post("/models/test/echo/predictions", json={"input": {"text": "nobody polls me"}}).json()
        path = f"/v1/predictions/{created['id']}"
        deadline = time.monotonic() + 15
        while not replicate.requests_to(path):
            assert time.monotonic() < deadline, "autopoll never polled"
            time.sleep(0.05)
        first = len(replicate.requests_to(path))
        time.sleep(window)
        polls = len(replicate.requests_to(path)) - first
    finally:
        gateway.stop()
    assert 1 <= polls <= window / interval + 1, f"{polls} polls in {window} s at one per {interval} s"
