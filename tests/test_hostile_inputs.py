"""Hostile or careless inputs get a clear 4xx (a 502 when the upstream is at fault), never a 500:
timeouts that are not numbers a timer can hold, configs nested hundreds of levels deep, an upstream's
redirect to a URL that is not Latin-1. (Invalid ``$regex`` patterns: test_conditions_regex.py.)"""

from __future__ import annotations

import json

import httpx
import pytest
from aiohttp import web

from tests.conftest import REPLICATE_TOKEN
from tests.fakes.server import FakeServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
OPENAI = {"x-portkey-provider": "@openai-test"}


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    return response.json()["error"]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e309", "1e300", "86400001", "0", "-5"])
def test_a_request_timeout_no_timer_can_hold_is_a_400(gateway, value):
    response = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                          headers=gateway.headers(**OPENAI, **{"x-portkey-request-timeout": value}))
    error = error_of(response, 400)
    assert error["code"] == "invalid_header"
    assert "x-portkey-request-timeout must be a positive number of milliseconds, at most 86,400,000" in error["message"]


def test_a_request_timeout_of_a_day_is_accepted(gateway):
    response = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                          headers=gateway.headers(**OPENAI, **{"x-portkey-request-timeout": "86400000"}))
    assert response.status_code == 200, response.text


def test_a_trace_id_longer_than_256_characters_is_a_400_and_not_repeated(gateway):
    response = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                          headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": "t" * 257}))
    assert error_of(response, 400)["message"] == "x-portkey-trace-id must be at most 256 printable characters"
    assert response.headers["x-portkey-trace-id"] != "t" * 257 and len(response.headers["x-portkey-trace-id"]) < 64
    fits = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                      headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": "t" * 256}))
    assert fits.status_code == 200 and fits.headers["x-portkey-trace-id"] == "t" * 256


def nested_targets(levels: int) -> dict:
    config: dict = {"provider": "@openai-test"}
    for _ in range(levels):
        config = {"strategy": {"mode": "fallback"}, "targets": [config]}
    return config


def deep_value(levels: int) -> dict:
    value: dict = {"x": 1}
    for _ in range(levels):
        value = {"x": value}
    return value


def and_nest(levels: int) -> dict:
    query: dict = {"metadata.plan": "pro"}
    for _ in range(levels):
        query = {"$and": [query]}
    return query


def targets_text(levels: int) -> str:
    """Targets nested ``levels`` deep, as JSON text: Python's json module cannot encode that deep."""
    return '{"strategy": {"mode": "fallback"}, "targets": [' * levels + '{"provider": "@openai-test"}' + "]}" * levels


DEEP = {
    "targets 500 levels deep": targets_text(500),
    "override_params 300 levels deep": json.dumps({"provider": "@openai-test", "override_params": deep_value(300)}),
    "$and 400 levels deep": json.dumps({"strategy": {"mode": "conditional", "conditions": [{"query": and_nest(400), "then": "a"}]},
                                        "targets": [{"provider": "@openai-test", "name": "a"}]}),
}


@pytest.mark.parametrize("config", DEEP.values(), ids=DEEP.keys())
def test_a_deep_config_is_a_400_inline_and_when_saved(gateway, config):
    inline = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                        headers=gateway.headers(**{"x-portkey-config": config}))
    assert "config nests deeper than 32 levels" in error_of(inline, 400)["message"]
    saved = httpx.post(gateway.v1 + "/configs", content='{"name": "deep", "config": ' + config + "}", timeout=20,
                       headers=gateway.headers(**{"content-type": "application/json"}))
    assert "config nests deeper than 32 levels" in error_of(saved, 400)["message"]


def test_a_config_within_the_depth_limit_routes(gateway):
    response = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                          headers=gateway.headers(**{"x-portkey-config": json.dumps(nested_targets(15))}))
    assert response.status_code == 200, response.text


def test_a_configs_request_timeout_no_timer_can_hold_is_a_400(gateway):
    config = {"provider": "@openai-test", "request_timeout": 1e300}
    response = httpx.post(gateway.v1 + "/chat/completions", json=BODY, timeout=20,
                          headers=gateway.headers(**{"x-portkey-config": json.dumps(config)}))
    assert "config.request_timeout must be a positive number of milliseconds, at most 86,400,000" in error_of(response, 400)["message"]


@pytest.fixture(scope="module")
def redirecting_replicate():
    """A Replicate-like upstream whose Location, which the gateway rewrites, is not Latin-1."""
    async def create(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}"
        location = f"http://{request.host}/v1/predictions/日本"
        return web.json_response({"id": "p1", "status": "starting"}, status=201, headers={"Location": location})

    app = web.Application()
    app.router.add_post("/v1/predictions", create)
    with FakeServer(app) as server:
        yield server


def test_an_upstream_location_that_is_not_latin_1_is_a_502(open_gateway, redirecting_replicate):
    response = httpx.post(open_gateway.v1 + "/predictions", json={"version": "v", "input": {}}, timeout=20, headers={
        "x-portkey-provider": "replicate", "x-portkey-custom-host": redirecting_replicate.url + "/v1",
        "authorization": f"Bearer {REPLICATE_TOKEN}"})
    error = error_of(response, 502)
    assert error["code"] == "upstream_invalid_response" and "location header" in error["message"]
