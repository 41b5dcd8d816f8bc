"""Token and cost budgets (Portkey's usage_limits) on keys and providers: reserved at admission, settled to
the upstream-reported usage, never exceeded when every request states its maximum."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import httpx
import pytest

from modelport.usage.limits import Budget, budget_from
from tests.conftest import OPENAI_KEY
from tests.harness import GatewayProcess, free_port
from tests.limits_support import add_key, add_provider, admin, gateway, upstream  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "count these words please"}]
IN_RATE, OUT_RATE = 0.15 / 1e6, 0.6 / 1e6  # gpt-4o-mini, USD per token, from the shipped price table


@pytest.fixture(autouse=True)
def state(upstream):
    _, state = upstream
    state.reset()
    yield state


def chat(key: str, slug: str, **body: Any) -> dict:
    return {"url": "/chat/completions", "headers": {"x-portkey-api-key": key, "x-portkey-provider": f"@{slug}"},
            "json": {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 16, **body}}


async def _batch(gateway: GatewayProcess, request: dict, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gateway.v1, timeout=30) as client:
        return await asyncio.gather(*(client.post(**request) for _ in range(count)))


def usage_of(admin: httpx.Client, path: str) -> dict:
    return admin.get(path).json()["usage"]["budget"]


def settled(admin: httpx.Client, path: str, expected: float, timeout: float = 15) -> dict:
    """The budget's usage once the log service has settled every reservation to ``expected``."""
    deadline = time.monotonic() + timeout
    while (usage := usage_of(admin, path))["used"] != pytest.approx(expected, abs=1e-9):
        assert time.monotonic() < deadline, f"budget shows {usage['used']}, expected {expected} once settled"
        time.sleep(0.1)
    return usage


def spend_until_refused(gateway, admin, request: dict, path: str, spent_by) -> tuple[float, list[httpx.Response]]:
    """Batches of 8 concurrent requests, each batch settled before the next, until one is refused."""
    total, refused = 0.0, []
    for _ in range(100):
        answers = asyncio.run(_batch(gateway, request, 8))
        total += sum(spent_by(a.json()["usage"]) for a in answers if a.status_code == 200)
        refused = [a for a in answers if a.status_code != 200]
        settled(admin, path, total)
        if refused:
            return total, refused
    raise AssertionError("the budget never ran out")


def test_a_token_budget_on_a_key_stops_at_its_limit(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "tokens-upstream")
    key, key_id = add_key(admin, "token-budget", usage_limits={"type": "tokens", "credit_limit": 2000})
    total, refused = spend_until_refused(gateway, admin, chat(key, "tokens-upstream"), f"/api-keys/{key_id}",
                                         lambda usage: usage["total_tokens"])
    assert 0 < total <= 2000  # what the upstream reported, summed: never above the budget
    assert {a.status_code for a in refused} == {412}
    error = refused[0].json()["error"]
    assert refused[0].headers["x-portkey-gateway-exception"] == "true"
    assert error["code"] == "budget_exhausted" and error["message"].startswith("budget exhausted: gateway API key")
    assert error["budget"]["type"] == "tokens" and error["budget"]["credit_limit"] == 2000


def test_a_cost_budget_on_a_provider_stops_at_its_limit(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "cost-upstream", usage_limits={"credit_limit": 0.0003, "periodic_reset": "monthly"})
    key, _ = add_key(admin, "no-budget")
    cost = lambda usage: usage["prompt_tokens"] * IN_RATE + usage["completion_tokens"] * OUT_RATE  # noqa: E731
    total, refused = spend_until_refused(gateway, admin, chat(key, "cost-upstream"), "/virtual-keys/cost-upstream", cost)
    assert 0 < total <= 0.0003
    assert "provider @cost-upstream" in refused[0].json()["error"]["message"]
    usage = usage_of(admin, "/virtual-keys/cost-upstream")
    assert usage["period_ends_at"].endswith("-01T00:00:00Z")  # the calendar month, UTC

    # reset_usage re-admits, and resets nothing else
    assert admin.put("/virtual-keys/cost-upstream", json={"reset_usage": True}).status_code == 200
    assert httpx.post(gateway.v1 + "/chat/completions", **{k: v for k, v in chat(key, "cost-upstream").items() if k != "url"}).status_code == 200


def test_failed_calls_give_their_reservation_back(gateway, admin, upstream, state) -> None:
    add_provider(admin, upstream, "failing-upstream")
    key, key_id = add_key(admin, "releases", usage_limits={"type": "tokens", "credit_limit": 10_000})
    state.fail_next(3, 500)
    request = chat(key, "failing-upstream")
    answers = [httpx.post(gateway.v1 + request["url"], headers=request["headers"], json=request["json"]) for _ in range(3)]
    assert [a.status_code for a in answers] == [500] * 3
    settled(admin, f"/api-keys/{key_id}", 0)
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: the attempt never reaches an upstream
    assert admin.post("/virtual-keys", json={"name": "down", "slug": "down-upstream", "provider": "openai",
                                             "key": OPENAI_KEY, "custom_host": down}).status_code == 200
    request = chat(key, "down-upstream")
    assert httpx.post(gateway.v1 + request["url"], headers=request["headers"], json=request["json"]).status_code == 502
    assert usage_of(admin, f"/api-keys/{key_id}")["used"] == 0


def test_a_streamed_call_settles_from_its_usage_chunk(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "stream-upstream")
    key, key_id = add_key(admin, "streams", usage_limits={"type": "tokens", "credit_limit": 10_000})
    request = chat(key, "stream-upstream", stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", gateway.v1 + request["url"], headers=request["headers"], json=request["json"]) as answer:
        events = [line for line in answer.iter_lines() if line.startswith("data: {")]
    import json

    total = json.loads(events[-1][6:])["usage"]["total_tokens"]
    assert total > 0
    settled(admin, f"/api-keys/{key_id}", total)


def test_a_model_without_a_price_is_refused_under_a_cost_budget(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "unpriced-upstream")
    key, _ = add_key(admin, "unpriced", usage_limits={"credit_limit": 5})
    request = chat(key, "unpriced-upstream", model="no-such-model-anywhere")
    answer = httpx.post(gateway.v1 + request["url"], headers=request["headers"], json=request["json"])
    assert answer.status_code == 412 and answer.json()["error"]["code"] == "budget_unpriced"
    assert "MODELPORT_BUDGET_ADMIT_UNPRICED" in answer.json()["error"]["message"]


def test_invalid_budgets_are_refused(admin) -> None:
    for body, mentions in [({"credit_limit": "ten"}, "credit_limit"), ({"type": "euros", "credit_limit": 1}, "type"),
                           ({"credit_limit": 1, "periodic_reset": "monthly", "periodic_reset_days": 7}, "not both"),
                           ({"credit_limit": 1, "alert_threshold": 2}, "alert_threshold")]:  # fmt: skip
        answer = admin.post("/api-keys", json={"name": "bad", "usage_limits": body})
        assert answer.status_code == 400 and mentions in answer.json()["error"]["message"], answer.text


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("stored", "now", "start", "end"), [
    ({"credit_limit": 1, "periodic_reset": "monthly"}, "2026-12-15 10:00", "2026-12-01 00:00", "2027-01-01 00:00"),
    ({"credit_limit": 1, "periodic_reset": "weekly"}, "2026-12-03 10:00", "2026-11-30 00:00", "2026-12-07 00:00"),
    ({"credit_limit": 1, "periodic_reset_days": 10}, "2026-12-25 10:00", "2026-12-21 09:00", "2026-12-31 09:00"),
    ({"credit_limit": 1}, "2030-06-01 00:00", "2026-12-01 09:00", "2126-11-07 09:00"),
])  # fmt: skip
def test_budget_periods(stored, now, start, end) -> None:
    budget = budget_from("key:k", "k", stored, epoch("2026-12-01 09:00"))  # anchored when made (or last reset)
    assert isinstance(budget, Budget)
    assert budget.period(epoch(now)) == (epoch(start), epoch(end))


def test_a_replicate_prediction_is_charged_to_the_key_that_created_it(gateway, admin, fake_replicate) -> None:
    from tests.conftest import REPLICATE_TOKEN

    server, _ = fake_replicate
    assert admin.post("/virtual-keys", json={"name": "r", "slug": "replicate-budget", "provider": "replicate",
                                             "key": REPLICATE_TOKEN, "custom_host": server.url + "/v1"}).status_code == 200
    creator, creator_id = add_key(admin, "creator", usage_limits={"credit_limit": 1})
    headers = {"x-portkey-provider": "@replicate-budget"}
    with httpx.Client(base_url=gateway.v1, timeout=30) as http:
        prediction = http.post("/models/test/echo/predictions", json={"input": {"text": "hi"}},
                               headers={**headers, "x-portkey-api-key": creator}).json()
        while prediction["status"] not in ("succeeded", "failed", "canceled"):  # an admin key watches it end
            prediction = http.get(f"/predictions/{prediction['id']}", headers={**headers, **gateway.headers()}).json()
    deadline = time.monotonic() + 15
    while not (charged := [r for r in admin.get("/logs", params={"prediction_id": prediction["id"]}).json()["data"]
                           if r["cost_usd"]]):  # fmt: skip
        assert time.monotonic() < deadline, "the prediction's cost was never recorded"
        time.sleep(0.1)
    cost = charged[0]["cost_usd"]
    settled(admin, f"/api-keys/{creator_id}", cost)  # the creator never saw the end, and still pays for it


def test_crossing_the_alert_threshold_is_recorded_once_per_period(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "alert-upstream")
    key, key_id = add_key(admin, "alerting", usage_limits={"type": "tokens", "credit_limit": 100_000,
                                                           "alert_threshold": 300})
    assert usage_of(admin, f"/api-keys/{key_id}")["alerted"] is False
    asyncio.run(_batch(gateway, chat(key, "alert-upstream"), 8))  # each reserves ~120 tokens: past 300
    assert usage_of(admin, f"/api-keys/{key_id}")["alerted"] is True
    assert gateway.log_text().count(f"budget alert: gateway API key {key_id}") == 1  # by one worker, once
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f'modelport_budget_alerted{{owner="key:{key_id}",type="tokens"}} 1\n' in metrics
    assert f'modelport_budget_limit{{owner="key:{key_id}",type="tokens"}} 100000\n' in metrics


# -- token rate limits: reserved and settled like a budget, over a rate window, answered with 429 ------------
def rate_limit_usage(admin: httpx.Client, path: str) -> dict:
    return next(r for r in admin.get(path).json()["usage"]["rate_limits"] if r["type"] == "tokens")


def test_a_token_rate_limit_stops_at_its_value_with_a_429(gateway, admin, upstream) -> None:
    add_provider(admin, upstream, "token-rate-upstream", rate_limits=[{"type": "tokens", "unit": "rph", "value": 1500}])
    key, _ = add_key(admin, "token-rate")
    path, request, total = "/virtual-keys/token-rate-upstream", chat(key, "token-rate-upstream"), 0
    for _ in range(100):  # batches, each settled before the next, until one is refused
        answers = asyncio.run(_batch(gateway, request, 8))
        admitted = [a for a in answers if a.status_code == 200]
        total += sum(a.json()["usage"]["total_tokens"] for a in admitted)
        deadline = time.monotonic() + 15
        while rate_limit_usage(admin, path)["used"] != total:
            assert time.monotonic() < deadline, "the token limit never settled to the reported usage"
            time.sleep(0.1)
        if len(admitted) < len(answers):
            break
    assert 0 < total <= 1500
    assert all(int(a.headers["x-ratelimit-limit-tokens"]) == 1500 for a in admitted)
    refused = next(a for a in answers if a.status_code != 200)
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 3600
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "allows 1500 tokens per hour (rph)" in error["message"]
    assert error["limit"] == {**error["limit"], "type": "tokens", "unit": "rph", "value": 1500}


def test_with_logging_off_budgets_still_settle_to_the_real_usage(tmp_path, upstream) -> None:
    """Nothing is stored, yet the log service still reads each response's usage to settle its reservation."""
    with GatewayProcess(tmp_path / "data", env={"MODELPORT_LOGGING": "false"}) as quiet, \
            httpx.Client(base_url=quiet.v1, headers=quiet.headers(), timeout=30) as quiet_admin:
        add_provider(quiet_admin, upstream, "unlogged-upstream")
        key, key_id = add_key(quiet_admin, "unlogged", usage_limits={"type": "tokens", "credit_limit": 10_000})
        request = chat(key, "unlogged-upstream")
        answers = asyncio.run(_batch(quiet, request, 4))
        assert [a.status_code for a in answers] == [200] * 4
        streamed = chat(key, "unlogged-upstream", stream=True, stream_options={"include_usage": True})
        with httpx.stream("POST", quiet.v1 + streamed["url"], headers=streamed["headers"], json=streamed["json"]) as answer:
            events = [line for line in answer.iter_lines() if line.startswith("data: {")]
        import json

        total = sum(a.json()["usage"]["total_tokens"] for a in answers) + json.loads(events[-1][6:])["usage"]["total_tokens"]
        settled(quiet_admin, f"/api-keys/{key_id}", total)
        assert quiet_admin.get("/logs").json()["data"] == []  # and nothing was logged
