"""Two gateway nodes (2 workers each, their own data dirs) on one PostgreSQL database and one Redis behave
as one gateway: keys, revocations, provider secrets and configs cross within a second, logs from both are
read from either with exact counts, and a Replicate prediction made on one and polled on the other is
charged once."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import httpx
import pytest

from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN
from tests.harness import GatewayProcess
from tests.pg_support import MASTER_KEY, fresh_database, need_psycopg
from tests.redis_support import SHARED_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
WITHIN = 1.0  # seconds a change may take to reach every worker of every node


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    need_psycopg()
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, database_url) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    import redis
    import uuid

    key_prefix = f"mp-test-{uuid.uuid4().hex[:12]}:"
    settings = {"database_url": database_url, "redis_url": SHARED_URL, "redis_key_prefix": key_prefix}
    env = {"MODELPORT_MASTER_KEY": MASTER_KEY, "MODELPORT_SIGNING_SECRET": "scale-out-test-signing-secret-0123456789"}
    root = tmp_path_factory.mktemp("scale-out")
    with GatewayProcess(root / "a", settings=settings, env=env, workers=2) as a, \
         GatewayProcess(root / "b", settings=settings, env=env, workers=2) as b:  # fmt: skip
        yield a, b
    client = redis.Redis.from_url(SHARED_URL)
    stale = list(client.scan_iter(match=key_prefix + "*", count=1000))
    if stale:
        client.delete(*stale)
    client.close()


def admin(node: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=node.v1, headers=node.headers(), timeout=20)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long ``check`` took to hold, failing past ``seconds``; asked on fresh connections, so every
    worker of the node gets asked, not only the one a kept-alive connection sticks to."""
    started = time.monotonic()
    while True:
        if all(check() for _ in range(4)):
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not seen within {seconds} s")
        time.sleep(0.02)


def chat(node: GatewayProcess, key: str, slug: str) -> int:
    return httpx.post(node.v1 + "/chat/completions", json=CHAT, timeout=20,
                      headers={"x-portkey-api-key": key, "x-portkey-provider": f"@{slug}"}).status_code


def test_a_key_made_on_one_node_works_on_the_other_and_a_revocation_crosses_within_a_second(nodes, fake_openai):
    a, b = nodes
    with admin(a) as on_a, admin(b) as on_b:
        made = on_a.post("/virtual-keys", json={"name": "shared", "slug": "openai-shared", "provider": "openai",
                                                "key": OPENAI_KEY, "custom_host": fake_openai[0].url + "/v1"})
        assert made.status_code == 200, made.text
        key = on_a.post("/api-keys", json={"name": "app", "scopes": ["inference"]}).json()
        within(WITHIN, lambda: chat(b, key["key"], "openai-shared") == 200)
        assert on_b.post(f"/api-keys/{key['id']}/revoke").status_code == 200
        took = within(WITHIN, lambda: chat(a, key["key"], "openai-shared") == 401)
    assert took < WITHIN
    assert chat(a, key["key"], "openai-shared") == 401 and chat(b, key["key"], "openai-shared") == 401


def test_a_provider_secret_rotated_on_one_node_is_used_by_the_other_within_a_second(nodes, fake_openai):
    a, b = nodes
    with admin(a) as on_a:
        made = on_a.post("/virtual-keys", json={"name": "rotating", "slug": "openai-rotating", "provider": "openai",
                                                "key": "sk-wrong", "custom_host": fake_openai[0].url + "/v1"})
        assert made.status_code == 200, made.text
        key = on_a.post("/api-keys", json={"name": "rotation", "scopes": ["inference"]}).json()["key"]
        within(WITHIN, lambda: chat(b, key, "openai-rotating") == 401)  # the fake refuses the wrong secret
        assert on_a.put("/virtual-keys/openai-rotating", json={"key": OPENAI_KEY}).status_code == 200
        within(WITHIN, lambda: chat(b, key, "openai-rotating") == 200)


def test_logs_from_both_nodes_are_read_from_either_with_exact_counts(nodes, fake_openai):
    a, b = nodes
    with admin(a) as on_a:
        assert on_a.post("/virtual-keys", json={"name": "counted", "slug": "openai-counted", "provider": "openai",
                                                "key": OPENAI_KEY, "custom_host": fake_openai[0].url + "/v1"}).status_code == 200
        made = on_a.post("/api-keys", json={"name": "counted", "scopes": ["inference"]}).json()
    for node, count in ((a, 7), (b, 5)):
        for _ in range(count):
            assert chat(node, made["key"], "openai-counted") == 200

    def counted(node: GatewayProcess) -> int:
        with admin(node) as http:
            return len(http.get("/logs", params={"key_id": made["id"], "limit": 100}).json()["data"])

    within(10, lambda: counted(a) == 12 and counted(b) == 12)


def test_a_prediction_made_on_one_node_and_polled_on_the_other_is_charged_once(nodes, fake_replicate):
    a, b = nodes
    with admin(a) as on_a:
        made = on_a.post("/virtual-keys", json={"name": "replicate", "slug": "replicate-shared", "provider": "replicate",
                                                "key": REPLICATE_TOKEN, "custom_host": fake_replicate[0].url + "/v1"})
        assert made.status_code == 200, made.text
        key = on_a.post("/api-keys", json={"name": "tenant", "scopes": ["inference"]}).json()["key"]
    headers = {"x-portkey-api-key": key, "x-portkey-provider": "@replicate-shared"}
    created = httpx.post(a.v1 + "/models/test/echo/predictions", json={"input": {"text": "hello"}},
                         headers=headers, timeout=20).json()
    for _ in range(20):  # polled on the other node, and once more after it ended
        polled = httpx.get(f"{b.v1}/predictions/{created['id']}", headers=headers, timeout=20)
        assert polled.status_code == 200, polled.text  # the owner recorded on A is known on B
        if polled.json()["status"] == "succeeded":
            break
    assert httpx.get(f"{b.v1}/predictions/{created['id']}", headers=headers, timeout=20).json()["status"] == "succeeded"

    def charged_once() -> bool:
        with admin(a) as http:
            rows = http.get("/logs", params={"prediction_id": created["id"], "limit": 100}).json()["data"]
        return len(rows) >= 3 and sum(1 for r in rows if r["cost_usd"]) == 1

    within(10, charged_once)
