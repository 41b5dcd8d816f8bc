"""Caches keyed by what callers send stay bounded: distinct rejected keys, unknown config ids and
inline configs, each as large as a request head may be, do not grow a worker."""

from __future__ import annotations

import orjson
import httpx
import pytest

from tests.conftest import OPENAI_KEY
from tests.harness import GatewayProcess

BIG = 1024 * 1024
CALLS = 100


@pytest.fixture(scope="module")
def roomy_gateway(tmp_path_factory):
    """Heads of up to 2 MB (the default is 32 KB), so each distinct value is 1 MB, as in issue 14."""
    process = GatewayProcess(tmp_path_factory.mktemp("caches") / "data",
                             settings={"max_header_bytes": 2 * BIG, "allow_private_hosts": True})
    with process:
        yield process


def grown_mb(gateway: GatewayProcess, headers_of) -> float:
    """How much the worker's resident memory grew over CALLS requests with distinct 1 MB headers."""
    with httpx.Client(timeout=30) as client:
        client.get(gateway.v1 + "/models", headers=headers_of(-1))  # warm every path once
        before = gateway.worker_memory_kb()
        for i in range(CALLS):
            client.get(gateway.v1 + "/models", headers=headers_of(i))
    return (gateway.worker_memory_kb() - before) / 1024


def test_distinct_rejected_keys_do_not_grow_the_worker(roomy_gateway):
    def headers(i: int) -> dict[str, str]:
        return {"x-portkey-api-key": f"mp-{i:08d}" + "k" * BIG}

    assert grown_mb(roomy_gateway, headers) < 20


def test_distinct_unknown_config_ids_do_not_grow_the_worker(roomy_gateway):
    def headers(i: int) -> dict[str, str]:
        return {**roomy_gateway.headers(), "x-portkey-config": f"cfg-{i:08d}" + "c" * BIG}

    assert grown_mb(roomy_gateway, headers) < 20
    # ...and the error repeats only the start of the value, to the caller and in the log record.
    response = httpx.get(roomy_gateway.v1 + "/models", headers=headers(0), timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("x-portkey-config names no saved config 'cfg-00000000ccc")
    assert "(1,048,588 characters)" in response.json()["error"]["message"] and len(response.text) < 400


def test_distinct_inline_configs_do_not_grow_the_worker(roomy_gateway, fake_openai):
    """Served by the fake: a failed upstream call keeps its request's state in a reference cycle until
    the garbage collector's next pass, which would blur what the cache holds."""
    def headers(i: int) -> dict[str, str]:
        config = {"provider": "openai", "custom_host": fake_openai[0].url + "/v1", "api_key": OPENAI_KEY,
                  "override_params": {"user": f"{i:08d}" + "u" * BIG}}
        return {**roomy_gateway.headers(), "x-portkey-config": orjson.dumps(config).decode()}

    assert grown_mb(roomy_gateway, headers) < 20


def test_a_custom_host_longer_than_any_url_is_refused(roomy_gateway):
    """The base URL is compiled into the pattern that rewrites the upstream's URLs, which the re module
    caches (512 patterns): distinct long hosts would fill it."""
    long_host = "https://api.example.com/" + "v" * 3000
    response = httpx.get(roomy_gateway.v1 + "/models", timeout=30, headers={
        **roomy_gateway.headers(), "x-portkey-provider": "replicate", "x-portkey-custom-host": long_host,
        "authorization": "Bearer r8_test"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "custom host is 3,024 characters long; at most 2,048 are accepted"
