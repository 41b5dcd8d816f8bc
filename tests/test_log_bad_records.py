"""One request must never stop logging: metadata the log store cannot hold is refused at the door, and
a record that cannot be encoded or stored is kept in a degraded form instead of holding up the records
behind it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from modelport.logs.record import DEGRADED_KEY
from modelport.log_record import LogRecord
from modelport.logs.spill import record_from_line, record_to_line
from modelport.logs.writer import LogWriter
from modelport.settings import Settings
from modelport.store import LogFilter, open_log_store, open_sqlite_store
from tests.conftest import OPENAI_KEY
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess
from tests.test_logging import metric, wait_for_logs

OPENAI = {"x-portkey-provider": "@openai-test"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def nested(depth: int) -> dict:
    """An object ``depth`` levels deep (the outer object is level 1)."""
    value: dict = {"leaf": "x"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


REFUSED = {
    "300 levels deep": (nested(300), "nests deeper than 8 levels"),
    "9 levels deep": (nested(9), "nests deeper than 8 levels"),
    "a list 9 levels deep": ({"a": [[[[[[[["x"]]]]]]]]}, "nests deeper than 8 levels"),
    "65 keys": ({f"k{i}": "v" for i in range(65)}, "more than 64 keys"),
    "65 keys nested": ({"a": {f"k{i}": "v" for i in range(40)}, "b": {f"k{i}": "v" for i in range(24)}},
                       "more than 64 keys"),
    "a long value": ({"note": "x" * 1025}, "a value of 1,025 characters; at most 1,024"),
    "a long key": ({"k" * 129: "v"}, "a key of 129 characters; at most 128"),
    "9 KB of JSON": ({f"k{i}": "v" * 200 for i in range(45)}, "at most 8,192 are accepted"),
    "not an object": (["a"], "must be a JSON object"),
}


@pytest.mark.parametrize("metadata,message", REFUSED.values(), ids=REFUSED.keys())
def test_metadata_the_log_store_cannot_hold_is_refused_with_a_clear_400(gateway, metadata, message):
    response = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20,
                          headers=gateway.headers(**OPENAI, **{"x-portkey-metadata": json.dumps(metadata)}))
    assert response.status_code == 400, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]
    assert error["code"] == "invalid_header"
    assert error["message"].startswith("x-portkey-metadata ") and message in error["message"], error


def test_metadata_at_every_limit_is_accepted_and_logged_whole(gateway):
    metadata = {**nested(8), **{f"k{i}": "v" * 100 for i in range(54)}, "long": "x" * 1024, "k" * 128: [1, 2.5, None]}
    trace_id = "t-" + uuid.uuid4().hex
    response = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20, headers=gateway.headers(
        **OPENAI, **{"x-portkey-metadata": json.dumps(metadata), "x-portkey-trace-id": trace_id}))
    assert response.status_code == 200, response.text
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert row["metadata"] == metadata


def test_a_keys_default_metadata_has_the_same_bounds(gateway):
    """A key's defaults.metadata is merged into every request's metadata, so it is bounded the same way."""
    for metadata, message in (REFUSED["300 levels deep"], REFUSED["a long value"]):
        response = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(),
                              json={"name": "k-" + uuid.uuid4().hex[:8], "defaults": {"metadata": metadata}})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"].startswith("defaults.metadata ")
        assert message in response.json()["error"]["message"]


def test_the_command_line_bounds_a_keys_metadata_the_same_way(tmp_path):
    import os
    import subprocess
    import sys

    open_sqlite_store(tmp_path / "data").close()  # the gateway's data directory, as `modelport serve` makes it
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")},
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run([sys.executable, "-m", "modelport", "keys", "create", "--name", "deep", "--metadata",
                             json.dumps(nested(300)), "--data-dir", str(tmp_path / "data")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "nests deeper than 8 levels" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def boastful_upstream():
    """An OpenAI-compatible upstream whose usage claims more tokens than SQLite can count: its integers
    are signed 64-bit, while orjson encodes up to 2**64, so the record gets as far as the insert."""
    async def chat(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
        return web.json_response({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                                  "usage": {"prompt_tokens": 10**19, "completion_tokens": 1, "total_tokens": 10**19 + 1}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with FakeServer(app) as server:
        yield server


def test_a_record_the_store_refuses_is_stored_degraded_and_the_records_behind_it_are_stored(tmp_path, boastful_upstream):
    gateway = GatewayProcess(tmp_path / "data", settings={"require_api_key": False, "allow_private_hosts": True})
    upstream = {"x-portkey-provider": "openai", "x-portkey-custom-host": boastful_upstream.url + "/v1",
                "authorization": f"Bearer {OPENAI_KEY}"}
    with gateway:
        bad = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20,
                         headers={**upstream, "x-portkey-metadata": json.dumps({"run": "bad"})})
        assert bad.status_code == 200
        for _ in range(3):
            good = httpx.get(gateway.v1 + "/models", timeout=20,
                             headers={**upstream, "x-portkey-metadata": json.dumps({"run": "good"})})
            assert good.status_code == 404  # this upstream serves chat only: still a record like any other
        assert len(wait_for_logs(gateway, LogFilter(metadata={"run": "good"}), 3)) == 3
        (row,) = [r for r in wait_for_logs(gateway, LogFilter(), 4) if DEGRADED_KEY in r["metadata"]]
        assert row["status"] == 200 and row["path"] == "/v1/chat/completions"
        assert "the store refused the record" in row["metadata"][DEGRADED_KEY]
        assert row["input_tokens"] is None and row["request_body"] is None
        assert metric(gateway, "modelport_log_degraded_records_total") == 1


def deep_record(run: str) -> LogRecord:
    return LogRecord(trace_id="t-" + run, method="POST", path="/v1/chat/completions", status=200, metadata=nested(300),
                     request_headers=[(b"content-type", b"application/json")], request_body=b"{}")


def test_a_record_that_cannot_be_encoded_is_stored_degraded_and_the_records_behind_it_are_stored(tmp_path):
    """Metadata is bounded at the door, but whatever reaches the writer must not stop it: this record's
    metadata is deeper than the store's JSON encoder goes."""
    settings = Settings.load({"data_dir": tmp_path})
    store = open_sqlite_store(settings.data_dir)

    async def write() -> None:
        writer = LogWriter(settings, store, None)
        await writer.start()
        writer.submit(deep_record("bad"))
        for i in range(3):
            writer.submit(LogRecord(trace_id=f"t-good-{i}", method="GET", path="/v1/models", status=200))
        deadline = time.monotonic() + 10
        while writer.settled_total < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await writer.stop()

    asyncio.run(write())
    rows = {row["trace_id"]: row for row in open_log_store(settings).iter_export(LogFilter(), full=True)}
    assert sorted(rows) == ["t-bad", "t-good-0", "t-good-1", "t-good-2"]
    assert "could not be encoded" in rows["t-bad"]["metadata"][DEGRADED_KEY]
    assert rows["t-bad"]["status"] == 200 and rows["t-good-0"]["metadata"] == {}


def test_a_record_that_cannot_be_encoded_spills_degraded():
    """Workers spill to a JSON-lines file while the log service is away: that file must take it too."""
    record = record_from_line(record_to_line(deep_record("spilled")))
    assert record.trace_id == "t-spilled" and record.status == 200
    assert "could not be encoded" in record.metadata[DEGRADED_KEY]
    assert record.request_headers == {} and record.request_body is None
