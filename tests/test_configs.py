"""Routing configs (x-portkey-config): fallback, load balancing, retries, timeouts, cache, nesting."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from modelport.store import open_sqlite_store

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PRIMARY, BACKUP = {"provider": "@openai-test"}, {"provider": "@openai-backup"}


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_openai_backup, fake_replicate):
    for _, state in (fake_openai, fake_openai_backup):
        state.reset()


@pytest.fixture
def call(gateway):
    with httpx.Client(base_url=gateway.v1, timeout=20) as http:
        def send(config, body=BODY, path="/chat/completions", **headers):
            hdrs = gateway.headers(**{"x-portkey-config": json.dumps(config) if isinstance(config, dict) else config}, **headers)
            return http.post(path, json=body, headers=hdrs)
        yield send


def test_fallback_moves_to_the_next_target_on_failure(call, fake_openai, fake_openai_backup):
    fake_openai[1].fail_next(1, 500)
    response = call({"strategy": {"mode": "fallback"}, "targets": [PRIMARY, BACKUP]})
    assert response.status_code == 200
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert fake_openai[1].count == 1 and fake_openai_backup[1].count == 1


def test_fallback_respects_on_status_codes(call, fake_openai, fake_openai_backup):
    fake_openai[1].fail_next(1, 500)
    response = call({"strategy": {"mode": "fallback", "on_status_codes": [429]}, "targets": [PRIMARY, BACKUP]})
    assert response.status_code == 500
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[0]"
    assert fake_openai_backup[1].count == 0


def test_loadbalance_follows_weights_over_1000_requests(call, fake_openai, fake_openai_backup):
    config = {"strategy": {"mode": "loadbalance"}, "targets": [{**PRIMARY, "weight": 0.7}, {**BACKUP, "weight": 0.3}]}
    for _ in range(1000):
        assert call(config).status_code == 200
    primary = fake_openai[1].count
    assert primary + fake_openai_backup[1].count == 1000
    assert 640 <= primary <= 760  # 0.7 ± ~4 standard deviations


def test_sticky_loadbalance_keeps_each_user_on_one_target_and_splits_users_by_weight(call, fake_openai, fake_openai_backup):
    sticky = {"enabled": True, "hash_fields": ["metadata.user", "headers.x-team"], "ttl": 3600}
    config = {"strategy": {"mode": "loadbalance", "sticky": sticky},
              "targets": [{**PRIMARY, "weight": 0.7}, {**BACKUP, "weight": 0.3}]}
    chosen: dict[str, set[str]] = {}
    for user in range(200):
        for _ in range(3):  # the same user, again and again: the same target
            answer = call(config, **{"x-portkey-metadata": json.dumps({"user": f"u{user}"}), "x-team": "a"})
            chosen.setdefault(f"u{user}", set()).add(answer.headers["x-portkey-last-used-option-index"])
    assert all(len(targets) == 1 for targets in chosen.values())
    primary = sum(targets == {"config.targets[0]"} for targets in chosen.values())
    assert 110 <= primary <= 170  # 0.7 of 200 users, ± ~4.5 standard deviations
    assert fake_openai[1].count == 3 * primary


@pytest.mark.parametrize(("sticky", "mentions"), [
    ({"hash_fields": []}, "hash_fields"),
    ({"hash_fields": ["user"]}, "metadata.<key>"),
    ({"hash_fields": ["metadata.user"], "ttl": 0}, "ttl"),
    ({"hash_fields": ["metadata.user"], "sessions": 1}, "must be an object"),
])  # fmt: skip
def test_invalid_sticky_is_a_clear_400(call, sticky, mentions):
    answer = call({"strategy": {"mode": "loadbalance", "sticky": sticky}, "targets": [PRIMARY, BACKUP]})
    assert answer.status_code == 400 and mentions in answer.json()["error"]["message"]
    answer = call({"strategy": {"mode": "fallback", "sticky": {"hash_fields": ["metadata.user"]}}, "targets": [PRIMARY]})
    assert answer.status_code == 400 and "loadbalance mode only" in answer.json()["error"]["message"]


@pytest.mark.parametrize("flag", [{}, {"use_retry_after_header": True}])
def test_retry_honours_retry_after_by_default(call, fake_openai, flag):
    fake_openai[1].fail_next(2, 429, retry_after=0.3)
    started = time.monotonic()
    response = call({**PRIMARY, "retry": {"attempts": 3, **flag}})
    assert response.status_code == 200
    assert response.headers["x-portkey-retry-attempt-count"] == "2"
    assert time.monotonic() - started >= 0.6
    assert fake_openai[1].count == 3


def test_retry_after_can_be_turned_off_and_is_bounded(call, fake_openai):
    fake_openai[1].fail_next(1, 429, retry_after=5)
    started = time.monotonic()
    response = call({**PRIMARY, "retry": {"attempts": 1, "use_retry_after_header": False}})
    assert response.status_code == 200 and time.monotonic() - started < 2  # our own short backoff
    fake_openai[1].fail_next(1, 429, retry_after=3600)  # longer than the 60 s bound: not waited for
    started = time.monotonic()
    response = call({**PRIMARY, "retry": {"attempts": 1}})
    assert response.status_code == 429 and time.monotonic() - started < 2
    assert response.headers["x-portkey-retry-attempt-count"] == "-1"


def test_retries_used_up_report_minus_one(call, fake_openai):
    fake_openai[1].fail_next(5, 503)
    response = call({**PRIMARY, "retry": {"attempts": 2}})
    assert response.status_code == 503
    assert response.headers["x-portkey-retry-attempt-count"] == "-1"
    assert fake_openai[1].count == 3


def test_timeout_then_fallback(call, fake_openai, fake_openai_backup):
    fake_openai[1].delay = 3
    started = time.monotonic()
    response = call({"strategy": {"mode": "fallback"}, "request_timeout": 300, "targets": [PRIMARY, BACKUP]})
    assert response.status_code == 200
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert time.monotonic() - started < 2


def test_cache_hit_refresh_and_isolation_between_keys(call, gateway, fake_openai):
    config = {**PRIMARY, "cache": {"mode": "simple", "max_age": 60}}
    body = {**BODY, "messages": [{"role": "user", "content": f"cache me {time.time()}"}]}
    first = call(config, body)
    assert first.headers["x-portkey-cache-status"] == "MISS"
    second = call(config, body)
    assert second.headers["x-portkey-cache-status"] == "HIT"
    assert second.json() == first.json() and fake_openai[1].count == 1
    refreshed = call(config, body, **{"x-portkey-cache-force-refresh": "true"})
    assert refreshed.headers["x-portkey-cache-status"] == "REFRESH" and fake_openai[1].count == 2
    other_key = _inference_key(gateway)
    isolated = httpx.post(gateway.v1 + "/chat/completions", json=body,
                          headers={"x-portkey-api-key": other_key, "x-portkey-config": json.dumps(config)})
    assert isolated.headers["x-portkey-cache-status"] == "MISS"
    plain = call(PRIMARY, body)
    assert plain.headers["x-portkey-cache-status"] == "DISABLED"


def test_cache_ttl_and_namespace_headers(call, fake_openai):
    body = {**BODY, "messages": [{"role": "user", "content": f"ttl {time.time()}"}]}
    ttl = {"x-portkey-cache-ttl": "1"}
    assert call(PRIMARY, body, **ttl).headers["x-portkey-cache-status"] == "MISS"  # the header alone turns it on
    assert call(PRIMARY, body, **ttl).headers["x-portkey-cache-status"] == "HIT"
    spaced = {**ttl, "x-portkey-cache-namespace": "tenant-b"}
    assert call(PRIMARY, body, **spaced).headers["x-portkey-cache-status"] == "MISS"  # another namespace
    assert call(PRIMARY, body, **spaced).headers["x-portkey-cache-status"] == "HIT"
    time.sleep(1.1)
    assert call(PRIMARY, body, **ttl).headers["x-portkey-cache-status"] == "MISS"  # its ttl has passed
    long_lived = {**PRIMARY, "cache": {"mode": "simple", "max_age": 3600}}
    assert call(long_lived, body, **ttl).headers["x-portkey-cache-status"] == "HIT"  # stored 0 s ago
    time.sleep(1.1)
    assert call(long_lived, body, **ttl).headers["x-portkey-cache-status"] == "MISS"  # the header's ttl wins
    assert fake_openai[1].count == 4
    for bad in ("0", "nan", "inf", "soon"):
        answer = call(PRIMARY, body, **{"x-portkey-cache-ttl": bad})
        assert answer.status_code == 400 and "x-portkey-cache-ttl" in answer.json()["error"]["message"]


def test_nested_targets_report_their_path(call, fake_openai, fake_openai_backup):
    fake_openai[1].fail_next(1, 502)
    config = {"strategy": {"mode": "fallback"}, "targets": [
        {"strategy": {"mode": "loadbalance"}, "targets": [{**BACKUP, "weight": 0}, {**PRIMARY, "weight": 1}]},
        BACKUP,
    ]}
    response = call(config)
    assert response.status_code == 200
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    fake_openai[1].reset()
    again = call(config)
    assert again.headers["x-portkey-last-used-option-index"] == "config.targets[0].targets[1]"


def test_conditional_routing_on_metadata(call):
    config = {"strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.plan": {"$eq": "pro"}}, "then": "pro"}],
                           "default": "free"},
              "targets": [{**PRIMARY, "name": "pro"}, {**BACKUP, "name": "free"}]}
    pro = call(config, **{"x-portkey-metadata": json.dumps({"plan": "pro"})})
    free = call(config, **{"x-portkey-metadata": json.dumps({"plan": "free"})})
    assert pro.headers["x-portkey-last-used-option-index"] == "config.targets[0]"
    assert free.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


def test_override_params_pin_the_model(call, fake_openai):
    call({**PRIMARY, "override_params": {"model": "gpt-4.1-mini"}}, {**BODY, "model": "gpt-4o"})
    assert fake_openai[1].requests[-1].body["model"] == "gpt-4.1-mini"


def test_saved_config_by_id(call, gateway):
    store = open_sqlite_store(gateway.data_dir)
    try:
        saved = store.create_config(f"fallback-{time.time_ns()}", {"strategy": {"mode": "fallback"}, "targets": [PRIMARY, BACKUP]})
    finally:
        store.close()
    assert call(saved.id).status_code == 200


@pytest.mark.parametrize("config, message", [
    ({"strategy": {"mode": "fallback"}, "targets": [PRIMARY], "retries": 3}, "config has unknown key(s) 'retries'"),
    ({"strategy": {"mode": "loadbalance"}, "targets": [{**PRIMARY, "weight": 0}]}, "all have weight 0"),
    ({**PRIMARY, "retry": {"attempts": "3"}}, "config.retry.attempts must be an integer"),
    ({"strategy": {"mode": "sometimes"}, "targets": [PRIMARY]}, "config.strategy.mode must be one of"),
    ({"strategy": {"mode": "fallback"}, "targets": [{**PRIMARY, "cache": {"mode": "semantic"}}]}, "config.targets[0].cache.mode"),
    ({"strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.x": 1}, "then": "nobody"}]},
      "targets": [PRIMARY]}, "names no target"),
    ({**PRIMARY, "request_timeout": -5}, "config.request_timeout must be a positive number"),
])
def test_invalid_configs_are_precise_400s(call, config, message):
    response = call(config)
    assert response.status_code == 400
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert message in response.json()["error"]["message"]


def test_replicate_429_on_create_is_retried_after_retry_after(call, fake_replicate):
    _, replicate = fake_replicate
    replicate.fail_next(429, path="/v1/models/test/echo/predictions", retry_after=0)
    before = len(replicate.requests_to("/v1/models/test/echo/predictions"))
    config = {"provider": "@replicate-test", "retry": {"attempts": 2, "use_retry_after_header": True}}
    response = call(config, {"input": {"text": "retried"}}, path="/models/test/echo/predictions")
    assert response.status_code == 201
    assert response.headers["x-portkey-retry-attempt-count"] == "1"
    assert len(replicate.requests_to("/v1/models/test/echo/predictions")) == before + 2


def test_replicate_create_that_may_have_succeeded_is_not_retried(call, fake_replicate):
    _, replicate = fake_replicate
    replicate.fail_next(500, path="/v1/models/test/echo/predictions")
    before = len(replicate.requests_to("/v1/models/test/echo/predictions"))
    config = {"provider": "@replicate-test", "retry": {"attempts": 3}}
    response = call(config, {"input": {"text": "once"}}, path="/models/test/echo/predictions")
    assert response.status_code == 500
    assert len(replicate.requests_to("/v1/models/test/echo/predictions")) == before + 1


def _inference_key(gateway) -> str:
    store = open_sqlite_store(gateway.data_dir)
    try:
        _, token = store.create_api_key(f"inference-{time.time_ns()}", scopes=("inference",))
    finally:
        store.close()
    return token
