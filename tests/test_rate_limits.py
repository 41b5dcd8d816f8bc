"""Request rate limits on gateway API keys and stored providers: exact across a node's workers.

80 concurrent requests against a limit of 20 per minute, on two worker processes, with the upstream
answering in 200 ms (so the requests overlap): exactly 20 answered, 60 refused with 429, and the
upstream saw exactly 20.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Iterator

import httpx
import pytest

from tests.harness import GatewayProcess
from tests.test_cli_admin import clean_environment
from tests.limits_support import add_key, add_provider, admin, gateway, upstream  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

CHAT = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hello"}]}
PER_MINUTE_20 = [{"type": "requests", "unit": "rpm", "value": 20}]


@pytest.fixture
def state(upstream):
    _, state = upstream
    state.reset()
    state.delay = 0.2
    yield state
    state.reset()


def assert_usage_shows_the_full_window(shown: dict) -> None:
    (usage,) = shown["usage"]["rate_limits"]
    assert (usage["unit"], usage["value"], usage["used"], usage["remaining"]) == ("rpm", 20, 20, 0)
    assert usage["resets_at"].endswith(":00Z")


def away_from_a_minute_boundary() -> None:
    """The burst must fall in one UTC minute: a new window in the middle would admit more, rightly."""
    second = datetime.now(timezone.utc).second + datetime.now(timezone.utc).microsecond / 1e6
    if second > 48:
        time.sleep(60.5 - second)


async def burst(gateway: GatewayProcess, key: str, slug: str, count: int = 80) -> list[httpx.Response]:
    headers = {"x-portkey-api-key": key, "x-portkey-provider": f"@{slug}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=gateway.v1, headers=headers, timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.post("/chat/completions", json=CHAT) for _ in range(count)))


def assert_exactly_twenty(answers: list[httpx.Response], state, whose: str) -> None:
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 20 + [429] * 60
    assert state.count == 20  # the upstream never saw a refused request
    admitted = [answer for answer in answers if answer.status_code == 200]
    # Each admitted request was counted once, in order: remaining after it runs 19 … 0 with no repeat.
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in admitted) == list(range(20))
    assert {a.headers["x-ratelimit-limit-requests"] for a in admitted} == {"20"}
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["x-portkey-gateway-exception"] == "true"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limited"
    assert whose in error["message"] and "20 requests per minute (rpm)" in error["message"]
    assert error["limit"]["unit"] == "rpm" and error["limit"]["value"] == 20
    assert error["limit"]["resets_at"].endswith(":00Z")  # windows are aligned to the UTC minute


def test_a_key_limit_admits_exactly_its_value_across_workers(gateway, admin, upstream, state) -> None:
    add_provider(admin, upstream, "open-upstream")
    key, key_id = add_key(admin, "twenty-a-minute", rate_limits=PER_MINUTE_20)
    away_from_a_minute_boundary()
    answers = asyncio.run(burst(gateway, key, "open-upstream"))
    assert_exactly_twenty(answers, state, "gateway API key")
    assert_usage_shows_the_full_window(admin.get(f"/api-keys/{key_id}").json())
    usage = subprocess.run([sys.executable, "-m", "modelport", "keys", "usage", "twenty-a-minute", "--json",
                            "--data-dir", str(gateway.data_dir)], env=clean_environment(), capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert usage.returncode == 0, usage.stderr
    (row,) = json.loads(usage.stdout)["data"]  # the CLI reads the node's own counters
    assert (row["key_id"], row["used"], row["remaining"]) == (key_id, 20, 0)
    metrics = httpx.get(gateway.url + "/metrics").text
    labels = f'owner="key:{key_id}",unit="rpm",rule="0"'
    assert f"modelport_rate_limit_requests{{{labels}}} 20\n" in metrics
    assert f"modelport_rate_limit_used_requests{{{labels}}} 20\n" in metrics


def test_a_provider_limit_admits_exactly_its_value_across_workers(gateway, admin, upstream, state) -> None:
    add_provider(admin, upstream, "limited-upstream", rate_limits=PER_MINUTE_20)
    key, _ = add_key(admin, "unlimited")
    away_from_a_minute_boundary()
    answers = asyncio.run(burst(gateway, key, "limited-upstream"))
    assert_exactly_twenty(answers, state, "provider @limited-upstream")
    assert_usage_shows_the_full_window(admin.get("/virtual-keys/limited-upstream").json())


def test_a_fallback_moves_on_from_a_provider_at_its_limit(gateway, admin, upstream, state) -> None:
    add_provider(admin, upstream, "one-a-minute", rate_limits=[{"type": "requests", "unit": "rpm", "value": 1}])
    add_provider(admin, upstream, "spare-upstream")
    state.delay = 0
    config = {"strategy": {"mode": "fallback"},
              "targets": [{"provider": "@one-a-minute"}, {"provider": "@spare-upstream"}]}
    away_from_a_minute_boundary()
    headers = {"x-portkey-config": json.dumps(config)}
    seen = []
    for _ in range(3):
        answer = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, headers=gateway.headers(**headers))
        assert answer.status_code == 200, answer.text
        seen.append(answer.headers["x-portkey-last-used-option-index"])
    assert seen == ["config.targets[0]", "config.targets[1]", "config.targets[1]"]


def test_a_key_at_its_limit_is_refused_before_any_target_is_tried(gateway, admin, upstream, state) -> None:
    """The key's limit is counted in the first attempt's admission (with the provider's, one step), once per
    request however many targets it tries (invalid JSON here: the passthrough sends it, both targets answer
    400); a refusal there ends the request with no target tried, and over the limit a request hears 429
    rather than its own error."""
    add_provider(admin, upstream, "first-target", rate_limits=[{"type": "requests", "unit": "rpm", "value": 100}])
    add_provider(admin, upstream, "second-target")
    key, key_id = add_key(admin, "two-a-minute", rate_limits=[{"type": "requests", "unit": "rpm", "value": 2}])
    state.delay = 0
    config = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@first-target"}, {"provider": "@second-target"}]}
    headers = {"x-portkey-api-key": key, "x-portkey-config": json.dumps(config)}
    away_from_a_minute_boundary()
    invalid = httpx.post(gateway.v1 + "/chat/completions", content=b"{not json", headers=headers)
    assert invalid.status_code == 400, invalid.text
    admitted = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, headers=headers)
    assert admitted.status_code == 200 and admitted.headers["x-ratelimit-remaining-requests"] == "0"
    seen = state.count
    for body in (json.dumps(CHAT).encode(), b"{not json"):
        refused = httpx.post(gateway.v1 + "/chat/completions", content=body, headers=headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["limit"]["owner"] == f"key:{key_id}"
    assert state.count == seen  # neither target saw a refused request
    (usage,) = admin.get(f"/api-keys/{key_id}").json()["usage"]["rate_limits"]
    assert usage["used"] == 2
    (provider,) = admin.get("/virtual-keys/first-target").json()["usage"]["rate_limits"]
    assert provider["used"] == 2  # the refused requests took nothing from the provider's window
