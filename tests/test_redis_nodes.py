"""Two gateway nodes on one Redis: a provider's rate limit holds across both, and the response cache is
shared (an answer cached through node A is a hit on node B).

Each node has its own data directory (its own SQLite store), so the two share no key records yet (that
needs the PostgreSQL store): the limit under test is a stored provider's, created with the same slug on
each node (a provider's counter is named by its slug), and requests use the admin key both nodes get
from MODELPORT_ADMIN_KEY. The admin key's record id differs per node, so the cache test lets keys share
entries (``cache_share_across_keys``), as an operator sharing a cache across nodes without a shared
store would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import httpx
import pytest

from tests.harness import GatewayProcess
from tests.limits_support import add_provider, upstream  # noqa: F401 (fixture)
from tests.redis_support import SHARED_URL, prefix  # noqa: F401 (fixture)
from tests.test_rate_limits import CHAT, PER_MINUTE_20, away_from_a_minute_boundary

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes(tmp_path, prefix) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    # A timeout longer than the default: this is about exactness, on a test machine that may be busy.
    settings = {"redis_url": SHARED_URL, "redis_key_prefix": prefix, "cache_share_across_keys": True,
                "redis_timeout": 2.0}
    with GatewayProcess(tmp_path / "node-a", settings=settings, workers=2) as a, \
         GatewayProcess(tmp_path / "node-b", settings=settings, workers=2) as b:  # fmt: skip
        yield a, b


@pytest.fixture
def state(upstream):
    _, state = upstream
    state.reset()
    yield state
    state.reset()


async def _burst(node: GatewayProcess, slug: str, count: int) -> list[httpx.Response]:
    headers = node.headers(**{"x-portkey-provider": f"@{slug}"})
    async with httpx.AsyncClient(base_url=node.v1, headers=headers, timeout=30,
                                 limits=httpx.Limits(max_connections=count)) as client:  # fmt: skip
        return await asyncio.gather(*(client.post("/chat/completions", json=CHAT) for _ in range(count)))


async def _both(a: GatewayProcess, b: GatewayProcess, slug: str) -> list[httpx.Response]:
    first, second = await asyncio.gather(_burst(a, slug, 40), _burst(b, slug, 40))
    return first + second


def test_a_provider_limit_holds_across_two_nodes(nodes, upstream, state) -> None:
    """80 concurrent requests, 40 to each node (2 workers each), upstream answering in 200 ms, against
    20 per minute: exactly 20 answered, 60 refused with 429, and the upstream saw exactly 20."""
    a, b = nodes
    for node in nodes:
        with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=30) as admin:
            add_provider(admin, upstream, "shared-limit", rate_limits=PER_MINUTE_20)
    state.delay = 0.2
    away_from_a_minute_boundary()
    answers = asyncio.run(_both(a, b, "shared-limit"))
    assert sorted(answer.status_code for answer in answers) == [200] * 20 + [429] * 60
    assert state.count == 20
    admitted = [answer for answer in answers if answer.status_code == 200]
    # One counter for both nodes: each admitted request saw a distinct count, 19 … 0 left after it.
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in admitted) == list(range(20))
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "provider @shared-limit allows 20 requests per minute" in refused.json()["error"]["message"]
    for node in nodes:  # either node's control plane reads the shared counter
        with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=30) as admin:
            (usage,) = admin.get("/virtual-keys/shared-limit").json()["usage"]["rate_limits"]
            assert (usage["used"], usage["remaining"]) == (20, 0)


def test_an_answer_cached_through_one_node_is_a_hit_on_the_other(nodes, upstream, state) -> None:
    a, b = nodes
    for node in nodes:
        with httpx.Client(base_url=node.v1, headers=node.headers(), timeout=30) as admin:
            add_provider(admin, upstream, "cached-upstream")
    config = '{"provider": "@cached-upstream", "cache": {"mode": "simple", "max_age": 60}}'
    body = {**CHAT, "messages": [{"role": "user", "content": f"cache me {time.time()}"}]}
    first = httpx.post(a.v1 + "/chat/completions", json=body, headers=a.headers(**{"x-portkey-config": config}))
    assert first.status_code == 200 and first.headers["x-portkey-cache-status"] == "MISS"
    second = httpx.post(b.v1 + "/chat/completions", json=body, headers=b.headers(**{"x-portkey-config": config}))
    assert second.status_code == 200 and second.headers["x-portkey-cache-status"] == "HIT"
    assert second.json() == first.json() and second.headers["content-type"] == first.headers["content-type"]
    assert state.count == 1  # node B never asked the upstream
    other = {**body, "temperature": 0.5}  # another request: its own entry
    third = httpx.post(b.v1 + "/chat/completions", json=other, headers=b.headers(**{"x-portkey-config": config}))
    assert third.headers["x-portkey-cache-status"] == "MISS" and state.count == 2
