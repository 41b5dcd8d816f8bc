"""`modelport serve`: readiness, graceful shutdown on SIGTERM, multiple workers."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.conftest import REPLICATE_TOKEN, replicate_provider
from tests.harness import GatewayProcess


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_in_flight_requests_finish(tmp_path, fake_replicate, workers):
    server, replicate = fake_replicate
    process = GatewayProcess(tmp_path / "data", providers=[replicate_provider(server.url)],
                             env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=workers).start()
    headers = process.headers(**{"x-portkey-provider": "@replicate-test"})
    replicate.delay_next(1.5, path="/v1/account", times=4)
    results: list[httpx.Response] = []

    def slow_call() -> None:
        results.append(httpx.get(process.v1 + "/account", headers=headers, timeout=20))

    callers = [threading.Thread(target=slow_call) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)  # the requests are in flight upstream
    started = time.monotonic()
    code = process.stop(signal.SIGTERM)
    for caller in callers:
        caller.join()
    assert [r.status_code for r in results] == [200] * 4
    assert code == 0
    assert time.monotonic() - started < 15
    assert "Traceback" not in process.log_text()


def test_workers_spread_connections_and_all_serve(tmp_path, fake_replicate):
    server, _ = fake_replicate
    with GatewayProcess(tmp_path / "data", providers=[replicate_provider(server.url)],
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2) as process:
        assert httpx.get(process.url + "/health").json() == {"status": "ok"}
        headers = process.headers(**{"x-portkey-provider": "@replicate-test"})
        statuses = {httpx.get(process.v1 + "/account", headers=headers).status_code for _ in range(20)}
        assert statuses == {200}


def test_revoked_key_is_refused_on_every_worker_at_once(tmp_path, fake_replicate):
    server, _ = fake_replicate
    with GatewayProcess(tmp_path / "data", providers=[replicate_provider(server.url)],
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2) as process:
        created = httpx.post(process.v1 + "/api-keys", headers=process.headers(),
                             json={"name": "short-lived", "scopes": ["inference"]})
        assert created.status_code in (200, 201), created.text
        key = created.json()["key"]
        headers = {"x-portkey-api-key": key, "x-portkey-provider": "@replicate-test"}
        # Fresh connections land on both workers (SO_REUSEPORT hashes each connection): warm both caches.
        assert {httpx.get(process.v1 + "/account", headers=headers).status_code for _ in range(20)} == {200}
        revoked = httpx.post(process.v1 + f"/api-keys/{created.json()['id']}/revoke", headers=process.headers())
        assert revoked.status_code == 200, revoked.text
        assert {httpx.get(process.v1 + "/account", headers=headers).status_code for _ in range(20)} == {401}
