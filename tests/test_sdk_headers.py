"""The SDK's headers: ``create_headers`` speaks Portkey's header dialect; clients send only what was asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.client import GATEWAY_URL, AsyncModelPort, ModelPort, create_headers, createHeaders

SRC = str(Path(__file__).resolve().parents[1] / "src")


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_options_become_x_portkey_headers():
    headers = create_headers(
        api_key="mp-test",
        provider="@replicate-prod",
        virtual_key="vk-test",
        trace_id="run-7",
        custom_host="http://127.0.0.1:9000/v1",
        request_timeout=30000,
    )
    assert headers == {
        "x-portkey-api-key": "mp-test",
        "x-portkey-provider": "@replicate-prod",
        "x-portkey-virtual-key": "vk-test",
        "x-portkey-trace-id": "run-7",
        "x-portkey-custom-host": "http://127.0.0.1:9000/v1",
        "x-portkey-request-timeout": "30000",
    }


def test_booleans_are_sent_as_strings_even_when_false():
    headers = create_headers(strict_open_ai_compliance=False, cache_force_refresh=True)
    assert headers == {
        "x-portkey-strict-open-ai-compliance": "false",
        "x-portkey-cache-force-refresh": "true",
    }


def test_mappings_are_sent_as_json_and_config_ids_as_is():
    config = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@a"}, {"provider": "@b"}]}
    headers = create_headers(config=config, metadata={"_user": "ada"})
    assert json.loads(headers["x-portkey-config"]) == config
    assert json.loads(headers["x-portkey-metadata"]) == {"_user": "ada"}
    assert create_headers(config="pc-fallback-1") == {"x-portkey-config": "pc-fallback-1"}


def test_lists_are_sent_as_json_arrays():
    headers = create_headers(default_input_guardrails=["pg-pii-1", "pg-len-2"])
    assert json.loads(headers["x-portkey-default-input-guardrails"]) == ["pg-pii-1", "pg-len-2"]


def test_falsy_values_are_dropped():
    assert create_headers(api_key=None, provider="", request_timeout=0, metadata={}, trace_id="t") == {
        "x-portkey-trace-id": "t"
    }


@pytest.mark.parametrize("given", ["sk-test-openai", "Bearer sk-test-openai"])
def test_authorization_is_a_bearer_header_once(given):
    assert create_headers(authorization=given) == {"Authorization": "Bearer sk-test-openai"}
    assert create_headers(Authorization=given) == {"Authorization": "Bearer sk-test-openai"}


def test_forwarded_headers_are_written_raw_and_listed():
    headers = create_headers(X_Tenant="acme", baggage="k=v", forward_headers=["X_Tenant", "baggage"], trace_id="t")
    assert headers == {
        "X-Tenant": "acme",
        "baggage": "k=v",
        "x-portkey-trace-id": "t",
        # Hyphenated: the gateway looks the names up among the request's real headers.
        "x-portkey-forward-headers": "X-Tenant,baggage",
    }


def test_unlisted_custom_options_get_the_portkey_prefix():
    assert create_headers(anthropic_version="2023-06-01") == {"x-portkey-anthropic-version": "2023-06-01"}


def test_camel_case_names_work_like_the_node_sdk():
    headers = create_headers(apiKey="mp-test", traceID="run-7", cacheForceRefresh=True, forwardHeaders=["xTenant"])
    assert headers == {
        "x-portkey-api-key": "mp-test",
        "x-portkey-trace-id": "run-7",
        "x-portkey-cache-force-refresh": "true",
        "x-portkey-forward-headers": "xTenant",
    }


def test_createHeaders_is_create_headers():
    assert createHeaders is create_headers


PORTKEY_CASES = [
    dict(api_key="mp-test", provider="@replicate-prod"),
    dict(api_key="mp-test", provider="openai", authorization="sk-test-openai", trace_id="t-1"),
    dict(config={"retry": {"attempts": 3}}, metadata={"env": "prod"}, cache_force_refresh=True),
    dict(config="pc-saved-config", strict_open_ai_compliance=False, request_timeout=5000),
    dict(virtual_key="vk-test", custom_host="http://127.0.0.1:9000", debug=False, provider=None),
    dict(Authorization="Bearer sk-test-openai", aws_region="us-east-1", X_Tenant="acme", forward_headers=["X-Tenant"]),
]


@pytest.mark.parametrize("options", PORTKEY_CASES)
def test_headers_match_portkeys_own_createHeaders(options):
    portkey_ai = pytest.importorskip("portkey_ai")
    assert lower_keys(create_headers(**options)) == lower_keys(portkey_ai.createHeaders(**options))


def test_client_sends_its_options_as_headers():
    client = ModelPort(
        api_key="mp-test",
        provider="@replicate-prod",
        config={"cache": {"mode": "simple"}},
        trace_id="run-7",
        metadata={"team": "search"},
        authorization="r8_test_token",
        anthropic_version="2023-06-01",
        default_headers={"X-Extra": "1"},
    )
    sent = {name: value for name, value in client.headers.items() if name != "user-agent"}
    assert sent == {
        "x-portkey-api-key": "mp-test",
        "x-portkey-provider": "@replicate-prod",
        "x-portkey-config": '{"cache": {"mode": "simple"}}',
        "x-portkey-trace-id": "run-7",
        "x-portkey-metadata": '{"team": "search"}',
        "authorization": "Bearer r8_test_token",
        "x-portkey-anthropic-version": "2023-06-01",
        "x-extra": "1",
    }
    assert client.headers["user-agent"].startswith("modelport-python/")


def test_strict_compliance_is_sent_only_when_given():
    assert "x-portkey-strict-open-ai-compliance" not in ModelPort(api_key="mp-test").headers
    client = ModelPort(api_key="mp-test", strict_open_ai_compliance=False)
    assert client.headers["x-portkey-strict-open-ai-compliance"] == "false"


def test_cache_force_refresh_false_sends_nothing():
    # Portkey's gateway forces a refresh when the header is present at all, even as "false".
    assert "x-portkey-cache-force-refresh" not in ModelPort(cache_force_refresh=False).headers
    assert ModelPort(cache_force_refresh=True).headers["x-portkey-cache-force-refresh"] == "true"


def test_api_key_and_base_url_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MODELPORT_API_KEY", "mp-from-env")
    monkeypatch.setenv("MODELPORT_BASE_URL", "http://gateway.internal:9000/v1/")
    client = ModelPort()
    assert client.headers["x-portkey-api-key"] == "mp-from-env"
    assert client.base_url == "http://gateway.internal:9000/v1"
    assert ModelPort(base_url="http://127.0.0.1:1/v1").base_url == "http://127.0.0.1:1/v1"


def test_base_url_defaults_to_a_local_gateway(monkeypatch):
    monkeypatch.delenv("MODELPORT_BASE_URL", raising=False)
    assert ModelPort().base_url == "http://localhost:8787/v1"
    assert AsyncModelPort().base_url == "http://localhost:8787/v1"


def test_gateway_url_honours_the_environment():
    assert GATEWAY_URL == (os.environ.get("MODELPORT_BASE_URL") or "http://localhost:8787/v1")
    env = {**os.environ, "MODELPORT_BASE_URL": "http://gw.example:8787/v1", "PYTHONPATH": SRC}
    printed = subprocess.run(
        [sys.executable, "-c", "from modelport.client import GATEWAY_URL; print(GATEWAY_URL)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert printed == "http://gw.example:8787/v1"


def test_with_options_changes_headers_and_keeps_the_rest():
    client = ModelPort(api_key="mp-test", provider="@replicate-prod", max_retries=5)
    traced = client.with_options(trace_id="run-8", provider="@replicate-dev")
    assert traced.headers["x-portkey-trace-id"] == "run-8"
    assert traced.headers["x-portkey-provider"] == "@replicate-dev"
    assert traced.headers["x-portkey-api-key"] == "mp-test"
    assert traced.max_retries == 5
    assert "x-portkey-trace-id" not in client.headers
