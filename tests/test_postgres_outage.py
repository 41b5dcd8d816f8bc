"""PostgreSQL stopped under load: the node keeps answering from what it has loaded, /health says degraded
and why, log records spill to disk and are replayed when the database is back: no answered request
without its log record."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.conftest import OPENAI_KEY
from tests.harness import GatewayProcess
from tests.pg_private import PrivatePostgres
from tests.pg_support import MASTER_KEY, need_psycopg

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def health(node: GatewayProcess) -> dict:
    return httpx.get(node.url + "/health", timeout=5).json()


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_postgres_stopped_mid_load_loses_no_answered_request(tmp_path, fake_openai):
    need_psycopg()
    database = PrivatePostgres()
    database.start()
    env = {"MODELPORT_MASTER_KEY": MASTER_KEY, "MODELPORT_SIGNING_SECRET": "outage-test-signing-secret-0123456789ab"}
    node = GatewayProcess(tmp_path / "node", settings={"database_url": database.url}, env=env, workers=2)
    try:
        with node, httpx.Client(base_url=node.v1, headers=node.headers(), timeout=20) as admin:
            made = admin.post("/virtual-keys", json={"name": "o", "slug": "openai-o", "provider": "openai",
                                                     "key": OPENAI_KEY, "custom_host": fake_openai[0].url + "/v1"})
            assert made.status_code == 200, made.text
            key = admin.post("/api-keys", json={"name": "load", "scopes": ["inference"]}).json()
            answered, stop = [], threading.Event()

            def load() -> None:
                headers = {"x-portkey-api-key": key["key"], "x-portkey-provider": "@openai-o"}
                with httpx.Client(base_url=node.v1, headers=headers, timeout=20) as http:
                    while not stop.is_set():
                        answered.append(http.post("/chat/completions", json=CHAT).status_code)

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            wait_for(lambda: len(answered) > 50, 20, "no load")
            database.stop()
            wait_for(lambda: health(node)["status"] == "degraded", 10, "/health did not say degraded")
            assert "PostgreSQL" in health(node)["reasons"][0]
            during = len(answered)
            wait_for(lambda: len(answered) > during + 50, 20, "requests stopped while PostgreSQL was away")
            database.start()
            wait_for(lambda: health(node)["status"] == "ok", 20, "/health did not recover")
            time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join()
            assert set(answered) == {200}, {s: answered.count(s) for s in set(answered)}

            def logged() -> int:
                page = admin.get("/logs/export", params={"key_id": key["id"]})
                return sum(1 for line in page.text.splitlines() if line.strip())

            wait_for(lambda: logged() == len(answered), 30, f"{len(answered)} answered, {logged()} logged")
    finally:
        database.remove()


def test_a_node_killed_under_load_has_logged_what_it_answered_more_than_a_second_before(tmp_path, fake_openai):
    """SIGKILL to every process of the node (as a crash or an OOM kill of the group would): what it had
    answered more than one second earlier is in the logs after it restarts (docs/deployment.md: the window)."""
    import signal
    import uuid

    from tests.pg_support import fresh_database

    need_psycopg()
    env = {"MODELPORT_MASTER_KEY": MASTER_KEY, "MODELPORT_SIGNING_SECRET": "sigkill-test-signing-secret-0123456789abc"}
    with fresh_database() as url:
        node = GatewayProcess(tmp_path / "node", settings={"database_url": url}, env=env, workers=2).start()
        try:
            with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=20) as admin:
                assert admin.post("/virtual-keys", json={"name": "k", "slug": "openai-k", "provider": "openai",
                                                         "key": OPENAI_KEY, "custom_host": fake_openai[0].url + "/v1"}
                                  ).status_code == 200
            answered: list[tuple[float, str]] = []
            stop = threading.Event()

            def load() -> None:
                headers = {"x-portkey-provider": "@openai-k", **node.headers()}
                with httpx.Client(base_url=node.v1, headers=headers, timeout=5) as http:
                    while not stop.is_set():
                        trace = f"killed-{uuid.uuid4().hex}"
                        try:
                            status = http.post("/chat/completions", json=CHAT, headers={"x-portkey-trace-id": trace}).status_code
                        except httpx.HTTPError:
                            return  # the node is gone
                        if status == 200:
                            answered.append((time.monotonic(), trace))

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            wait_for(lambda: len(answered) > 100, 30, "no load")
            time.sleep(3)  # under load for seconds: the writer has a backlog to lose, if it loses any
            killed_at = time.monotonic()
            node.stop(signal.SIGKILL)
            stop.set()
            for thread in threads:
                thread.join()
            node.start()
            due = {trace for at, trace in answered if at < killed_at - 1.0}
            assert len(due) > 200
            with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=20) as admin:
                def logged() -> set[str]:
                    lines = admin.get("/logs/export").text.splitlines()
                    return {json.loads(line)["trace_id"] for line in lines if line.strip()}

                wait_for(lambda: due <= logged(), 20, "answered requests missing from the logs after a SIGKILL")
        finally:
            node.stop()
