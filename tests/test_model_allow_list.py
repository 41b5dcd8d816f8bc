"""A stored provider's allowed_models holds on every route: the proxy route (Replicate's model in the path,
``version`` in the body, deployments; a body's ``model`` elsewhere) as much as the unified one, under
every spelling of the path."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest

from modelport.store import open_sqlite_store
from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN
from tests.fakes.replicate_catalog import version_id

ECHO_VERSION = version_id("test/echo")
LLM_VERSION = version_id("test/llm")
ECHO_INPUT = {"input": {"text": "hi"}}


@pytest.fixture(scope="module")
def limited(gateway, fake_replicate, fake_openai) -> dict[str, str]:
    """@replicate-echo-only may run test/echo and the deployment test/llm-prod; @openai-mini-only gpt-4o-mini."""
    store = open_sqlite_store(gateway.data_dir)
    try:
        for slug, provider, secret, host, models in (
            ("replicate-echo-only", "replicate", REPLICATE_TOKEN, fake_replicate[0].url + "/v1",
             ["test/echo", "deployments/test/llm-prod"]),
            ("openai-mini-only", "openai", OPENAI_KEY, fake_openai[0].url + "/v1", ["gpt-4o-mini"]),
        ):
            if store.get_provider(slug) is None:
                store.create_provider(slug, provider=provider, secret=secret, custom_host=host, allowed_models=models)
    finally:
        store.close()
    return {"replicate": "@replicate-echo-only", "openai": "@openai-mini-only"}


def send(gateway, provider: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """``path`` exactly as written (httpx would resolve dot segments itself)."""
    origin = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=20)
    headers = gateway.headers(**{"x-portkey-provider": provider, "content-type": "application/json"})
    try:
        connection.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def refused(status: int, reply: dict, model: str) -> bool:
    return status == 403 and f"model '{model}' is not allowed" in reply["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/models/test/llm/predictions", "/v1/models/test/llm/predictions/",
                                  "/v1//models/test/llm/predictions", "/v1/models/test/%6clm/predictions"])
def test_a_model_in_replicates_path_must_be_allowed(gateway, limited, fake_replicate, path):
    seen = len(fake_replicate[1].requests)
    assert refused(*send(gateway, limited["replicate"], "POST", path, {"input": {"prompt": "x"}}), "test/llm")
    assert len(fake_replicate[1].requests) == seen
    status, reply = send(gateway, limited["replicate"], "POST", "/v1/models/test/echo/predictions", ECHO_INPUT)
    assert status == 201, reply


@pytest.mark.parametrize("version", ["test/llm", f"test/llm:{LLM_VERSION}", LLM_VERSION])
def test_the_version_in_a_replicate_body_must_be_allowed(gateway, limited, version):
    assert refused(*send(gateway, limited["replicate"], "POST", "/v1/predictions", {"version": version, **ECHO_INPUT}),
                   version)


@pytest.mark.parametrize("version", ["test/echo", f"test/echo:{ECHO_VERSION}"])
def test_an_allowed_models_version_may_be_named_in_the_body(gateway, limited, version):
    status, reply = send(gateway, limited["replicate"], "POST", "/v1/predictions", {"version": version, **ECHO_INPUT})
    assert status == 201, reply


def test_a_replicate_prediction_that_names_no_model_is_refused_under_an_allow_list(gateway, limited):
    status, reply = send(gateway, limited["replicate"], "POST", "/v1/predictions", ECHO_INPUT)
    assert status == 403 and "does not say which model" in reply["error"]["message"]


def test_a_deployment_runs_only_when_the_allow_list_names_it(gateway, limited, fake_replicate):
    status, reply = send(gateway, limited["replicate"], "POST", "/v1/deployments/test/llm-prod/predictions",
                         {"input": {"prompt": "x"}})
    assert status == 201, reply
    assert refused(*send(gateway, limited["replicate"], "POST", "/v1/deployments/test/other/predictions",
                         {"input": {"prompt": "x"}}), "deployments/test/other")
    assert refused(*send(gateway, limited["replicate"], "POST", "/v1/deployments",
                         {"name": "x", "model": "test/llm", "version": LLM_VERSION, "hardware": "cpu",
                          "min_instances": 0, "max_instances": 1}), "test/llm")


def test_reading_is_not_running_a_model(gateway, limited):
    status, reply = send(gateway, limited["replicate"], "GET", "/v1/models/test/llm")
    assert status == 200, reply


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1//chat/completions", "/v1/chat/completions/",
                                  "/v1/responses"])
def test_a_body_model_must_be_allowed_on_unified_and_proxy_routes(gateway, limited, fake_openai, path):
    seen = fake_openai[1].count
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}
    assert refused(*send(gateway, limited["openai"], "POST", path, body), "gpt-4o")
    assert fake_openai[1].count == seen


def test_a_config_cannot_override_the_model_past_the_allow_list(gateway, limited):
    config = json.dumps({"provider": limited["openai"], "override_params": {"model": "gpt-4o"}})
    response = httpx.post(gateway.v1 + "/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                          headers=gateway.headers(**{"x-portkey-config": config}), timeout=20)
    assert response.status_code == 403 and "'gpt-4o' is not allowed" in response.text, response.text
