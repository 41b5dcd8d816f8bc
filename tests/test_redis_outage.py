"""Redis killed mid-load (a private redis-server, stopped by its PID): requests under a limit are refused
with a 503 naming Redis (fail closed), or admitted unchecked and counted with MODELPORT_LIMITS_FAIL_OPEN;
requests under no limit never notice; the response cache is bypassed; /health says degraded, then ok
once Redis is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import contextmanager
from typing import Any, Iterator

import httpx
import pytest

from tests.harness import GatewayProcess
from tests.limits_support import add_provider, upstream  # noqa: F401 (fixture)
from tests.redis_support import PrivateRedis
from tests.test_rate_limits import CHAT

pytestmark = pytest.mark.slow

ROOMY = [{"type": "requests", "unit": "rpm", "value": 100_000}]
CACHED = '{"provider": "@open-upstream", "cache": {"mode": "simple", "max_age": 60}}'


@pytest.fixture
def redis_server(tmp_path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path / "redis") as server:
        yield server


@contextmanager
def gateway_on(tmp_path, redis_server: PrivateRedis, upstream, workers: int = 2, timeout: float = 1.0,
               **env: str) -> Iterator[GatewayProcess]:  # fmt: skip
    """A gateway on ``redis_server``; its Redis timeout longer than the default where the test is about a
    refused connection (instant), so a busy test machine cannot turn a slow answer into a refusal."""
    settings = {"redis_url": redis_server.url, "redis_timeout": timeout}
    with GatewayProcess(tmp_path / "data", settings=settings, workers=workers, env=env) as node:
        with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=30) as admin:
            add_provider(admin, upstream, "limited-upstream", rate_limits=ROOMY)
            add_provider(admin, upstream, "open-upstream")
        yield node


def chat(node: GatewayProcess, slug: str, **headers: str) -> httpx.Response:
    body = {**CHAT, "messages": [{"role": "user", "content": headers.pop("content", "hello")}]}
    return httpx.post(node.v1 + "/chat/completions", json=body, timeout=30,
                      headers=node.headers(**{"x-portkey-provider": f"@{slug}", **headers}))  # fmt: skip


async def load_while_killing(node: GatewayProcess, redis_server: PrivateRedis) -> list[tuple[float, int, Any]]:
    """8 clients sending limited requests for 1.5 s; Redis is killed 0.5 s in. (time sent, status, body)."""
    killed_at: list[float] = []
    answers: list[tuple[float, int, Any]] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            sent = time.monotonic()
            answer = await client.post("/chat/completions", json=CHAT)
            answers.append((sent - killed_at[0] if killed_at else -1.0, answer.status_code, answer))

    async def kill_soon() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis_server.kill)
        killed_at.append(time.monotonic())

    headers = node.headers(**{"x-portkey-provider": "@limited-upstream"})
    async with httpx.AsyncClient(base_url=node.v1, headers=headers, timeout=10) as client:
        await asyncio.gather(kill_soon(), *(client_loop(client) for _ in range(8)))
    return answers


def wait_for_health(node: GatewayProcess, status: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(node.url + "/health", timeout=5)
        assert health.status_code == 200  # degraded is still serving: a load balancer keeps the node
        if health.json()["status"] == status or time.monotonic() > deadline:
            return health.json()
        time.sleep(0.1)


def wait_until_admitted(node: GatewayProcess, timeout: float = 5) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (answer := chat(node, "limited-upstream")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def test_redis_down_fails_closed_bypasses_the_cache_and_recovers(tmp_path, redis_server, upstream) -> None:
    upstream[1].reset()
    with gateway_on(tmp_path, redis_server, upstream) as node:
        assert chat(node, "limited-upstream").status_code == 200
        assert chat(node, "open-upstream", **{"x-portkey-config": CACHED}).headers["x-portkey-cache-status"] == "MISS"
        assert chat(node, "open-upstream", **{"x-portkey-config": CACHED}).headers["x-portkey-cache-status"] == "HIT"
        assert wait_for_health(node, "ok") == {"status": "ok"}

        answers = asyncio.run(load_while_killing(node, redis_server))
        assert {status for _, status, _ in answers} <= {200, 503}  # never a 500, never a hang
        after = [answer for since, status, answer in answers if since > 0.3]
        assert after and {answer.status_code for answer in after} == {503}
        refused = after[0]
        assert refused.headers["x-portkey-gateway-exception"] == "true"
        error = refused.json()["error"]
        assert error["code"] == "rate_limits_unavailable" and error["type"] == "service_unavailable"
        assert f"Redis at 127.0.0.1:{redis_server.port}/0 is unreachable" in error["message"]
        assert "Traceback" not in refused.text

        assert chat(node, "open-upstream").status_code == 200  # no limit: never touches Redis
        bypassed = chat(node, "open-upstream", **{"x-portkey-config": CACHED})
        assert bypassed.status_code == 200 and bypassed.headers["x-portkey-cache-status"] == "MISS"
        health = wait_for_health(node, "degraded")
        assert health["status"] == "degraded"
        (reason,) = health["reasons"]
        assert f"Redis at 127.0.0.1:{redis_server.port}/0 is unreachable" in reason and "refused (503)" in reason

        redis_server.start()  # same port, empty
        assert wait_for_health(node, "ok") == {"status": "ok"}
        assert wait_until_admitted(node).status_code == 200
        # Each worker notices on its own (its second of backoff passed): the cache fills and serves again.
        deadline = time.monotonic() + 5
        while chat(node, "open-upstream", **{"x-portkey-config": CACHED}).headers["x-portkey-cache-status"] != "HIT":
            assert time.monotonic() < deadline, "the cache never served again after Redis came back"
    assert "Traceback" not in node.log_text()


def test_with_fail_open_requests_pass_uncounted_and_are_tallied(tmp_path, redis_server, upstream) -> None:
    upstream[1].reset()
    with gateway_on(tmp_path, redis_server, upstream, MODELPORT_LIMITS_FAIL_OPEN="true") as node:
        answers = asyncio.run(load_while_killing(node, redis_server))
        assert {status for _, status, _ in answers} == {200}
        unchecked = [answer for since, _, answer in answers if since > 0.3]
        assert unchecked and "x-ratelimit-limit-requests" not in unchecked[0].headers  # nothing was counted
        health = wait_for_health(node, "degraded")
        assert "admitted unchecked" in health["reasons"][0]
        metrics = httpx.get(node.url + "/metrics", timeout=10).text
        (line,) = [line for line in metrics.splitlines() if line.startswith("modelport_limits_unchecked_total ")]
        assert int(line.split()[1]) >= len(unchecked)  # both workers' requests, in the node's tally
        redis_server.start()
        assert wait_for_health(node, "ok") == {"status": "ok"}
        deadline = time.monotonic() + 5  # each worker counts again once its second of backoff has passed
        while "x-ratelimit-limit-requests" not in (counted := chat(node, "limited-upstream")).headers:
            assert counted.status_code == 200 and time.monotonic() < deadline, "never counted again"
        assert counted.headers["x-ratelimit-limit-requests"] == "100000"
    log = node.log_text()
    assert log.count("admitting requests without checking their limits") <= 2  # once per outage, per worker
    assert "Traceback" not in log


def test_a_stalled_redis_costs_a_request_its_timeout_not_the_event_loop(tmp_path, redis_server, upstream) -> None:
    """SIGSTOP: connections stay open and nothing answers. A limited request waits at most the 250 ms
    timeout, then is refused; while it waits, requests under no limit are answered. After three timeouts
    in a row Redis counts as down: limited requests fail at once until the one-second backoff has passed.
    One worker, so all requests share its event loop."""
    upstream[1].reset()
    with gateway_on(tmp_path, redis_server, upstream, workers=1, timeout=0.25) as node:
        assert chat(node, "limited-upstream").status_code == 200
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            async def stalled_and_open() -> list[tuple[httpx.Response, float, float]]:
                async with httpx.AsyncClient(base_url=node.v1, timeout=10) as client:
                    async def timed(slug: str, after: float) -> tuple[httpx.Response, float, float]:
                        await asyncio.sleep(after)
                        started = time.monotonic()
                        headers = node.headers(**{"x-portkey-provider": f"@{slug}"})
                        answer = await client.post("/chat/completions", json=CHAT, headers=headers)
                        return answer, started, time.monotonic()
                    return await asyncio.gather(timed("limited-upstream", 0), timed("open-upstream", 0.05))

            (limited, limited_sent, limited_done), (unlimited, _, unlimited_done) = asyncio.run(stalled_and_open())
            assert limited.status_code == 503 and "no answer within 250 ms" in limited.json()["error"]["message"]
            assert 0.2 <= limited_done - limited_sent < 1.0
            assert unlimited.status_code == 200 and unlimited_done < limited_done  # answered while the other waited
            def timed_refusal() -> float:
                started = time.monotonic()
                assert chat(node, "limited-upstream").status_code == 503
                return time.monotonic() - started

            waited = [timed_refusal() for _ in range(2)]  # the second and third timeouts in a row
            at_once = [timed_refusal() for _ in range(3)]  # down now: refused without waiting on Redis again
            assert min(at_once) < min(waited) - 0.15, (waited, at_once)
            assert wait_for_health(node, "degraded")["status"] == "degraded"
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert wait_until_admitted(node).status_code == 200
