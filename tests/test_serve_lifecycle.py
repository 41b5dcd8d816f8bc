"""`modelport serve`: readiness, graceful shutdown on SIGTERM, multiple workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
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
    arrived_before = len(replicate.requests_to("/v1/account"))
    results: list[httpx.Response] = []

    def slow_call() -> None:
        results.append(httpx.get(process.v1 + "/account", headers=headers, timeout=20))

    callers = [threading.Thread(target=slow_call) for _ in range(4)]
    for caller in callers:
        caller.start()
    # SIGTERM once every request is in flight upstream (a fixed sleep raced them on a loaded machine).
    deadline = time.monotonic() + 10
    while len(replicate.requests_to("/v1/account")) < arrived_before + 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    code = process.stop(signal.SIGTERM)
    for caller in callers:
        caller.join()
    assert [r.status_code for r in results] == [200] * 4
    assert code == 0
    assert time.monotonic() - started < 15
    assert "Traceback" not in process.log_text()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, fake_replicate):
    """One two-worker gateway for the tests that only use it (neither stops it nor changes what the other reads)."""
    server, _ = fake_replicate
    with GatewayProcess(tmp_path_factory.mktemp("two-workers") / "data", providers=[replicate_provider(server.url)],
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2) as process:
        yield process


def test_workers_spread_connections_and_all_serve(two_workers):
    process = two_workers
    assert httpx.get(process.url + "/health").json() == {"status": "ok"}
    headers = process.headers(**{"x-portkey-provider": "@replicate-test"})
    statuses = {httpx.get(process.v1 + "/account", headers=headers).status_code for _ in range(20)}
    assert statuses == {200}


def test_revoked_key_is_refused_on_every_worker_at_once(two_workers):
    process = two_workers
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


def serve_on(tmp_path, port: int, workers: int, name: str) -> tuple[int, str]:
    """Run `modelport serve` on ``port`` as a user would (no preset admin key) until it exits: its exit
    code and output. One that is still running after 20 s is killed and the test fails."""
    env = {k: v for k, v in os.environ.items() if k != "MODELPORT_ADMIN_KEY"}
    command = [sys.executable, "-m", "modelport", "serve", "--port", str(port), "--workers", str(workers),
               "--data-dir", str(tmp_path / name)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"a second gateway started on port {port}, which was in use:\n{output.decode()}")
    return process.returncode, output.decode()


def assert_refused_in_one_line(code: int, output: str, port: int) -> None:
    assert code == 2, output
    assert output.count("\n") == 1 and f":{port}" in output and "already in use" in output, output
    assert "listening" not in output and "admin key" not in output.lower() and "Traceback" not in output


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = serve_on(tmp_path, port, workers, "data")
    assert_refused_in_one_line(code, output, port)
    assert not (tmp_path / "data" / "admin.key").exists()  # nothing was set up for a gateway that never ran


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_gateway_never_shares_a_served_port(tmp_path, fake_replicate, workers):
    # SO_REUSEPORT would let a second gateway's workers join the first's sockets and answer part of its
    # traffic with their own keys.
    server, _ = fake_replicate
    with GatewayProcess(tmp_path / "first", providers=[replicate_provider(server.url)],
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2) as first:
        code, output = serve_on(tmp_path, first.port, workers, "second")
        assert_refused_in_one_line(code, output, first.port)
        headers = first.headers(**{"x-portkey-provider": "@replicate-test"})
        assert {httpx.get(first.v1 + "/account", headers=headers).status_code for _ in range(20)} == {200}
