"""Property-based requests against a real gateway process: every x-portkey-* header, configs, bodies
(invalid JSON and UTF-8, huge numbers, deep nesting), paths and methods, in any mix. Whatever arrives is
answered without a gateway 500 — a clear 4xx when the caller is at fault, the error in the JSON shape with
a message — and the process keeps serving with nothing logged at error level."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OPENAI_KEY, stored
from tests.harness import GatewayProcess

pytestmark = pytest.mark.slow

HEADERS = ("provider", "config", "virtual-key", "metadata", "trace-id", "custom-host", "forward-headers",
           "request-timeout", "cache-force-refresh", "cache-ttl", "cache-namespace", "strict-open-ai-compliance",
           "span-id", "parent-span-id", "span-name", "azure-resource-name", "azure-api-version", "retry-count")
# Weighted by repetition: most requests should be plausible enough to reach deep into the pipeline.
PATHS = ("/chat/completions",) * 6 + ("/completions", "/embeddings", "/messages", "/models", "/files", "/predictions",
         "/models/test/echo/predictions", "/v1/../x", "/%2e%2e/x", "//chat//completions", "/a/b/c")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, fake_openai) -> Iterator[GatewayProcess]:
    providers = [stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    process = GatewayProcess(tmp_path_factory.mktemp("request-fuzz") / "data", providers=providers,
                             env={"TEST_OPENAI_KEY": OPENAI_KEY})  # fmt: skip
    with process:
        yield process
        assert httpx.get(process.url + "/health").status_code == 200
        log = process.log_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=120)
configs = st.builds(json.dumps, json_values) | st.builds(
    lambda targets, mode: json.dumps({"strategy": {"mode": mode}, "targets": targets}),
    st.lists(st.fixed_dictionaries({"provider": st.sampled_from(["@openai-test", "openai", "@nowhere", ""])},
                                   optional={"weight": json_values, "retry": json_values, "cache": json_values,
                                             "override_params": json_values, "request_timeout": json_values}),
             max_size=3),
    st.sampled_from(["single", "fallback", "loadbalance", "conditional", "other"]),
)
edge_values = st.sampled_from(["nan", "inf", "-inf", "1e309", "-1", "0", "1e-300", "[1,2]", "{}", "true", "null",
                               "@", "@/", "http://169.254.169.254/", "x" * 5000, '{"a":' * 300])
portkey_headers = st.dictionaries(st.sampled_from(HEADERS), edge_values | edge_values | header_text | configs, max_size=3)
deep = st.integers(min_value=50, max_value=400).map(lambda depth: "[" * depth + "]" * depth)
plausible = st.builds(lambda extra: json.dumps({**CHAT, **extra}).encode(),
                      st.dictionaries(st.sampled_from(["max_tokens", "stream", "n", "temperature", "tools"]), json_values,
                                      max_size=2))
bodies = (plausible | plausible | plausible | st.builds(lambda v: json.dumps(v).encode(), json_values)
          | st.builds(lambda m, v: json.dumps({"model": m, "messages": v}).encode(), st.text(max_size=20), json_values)
          | st.binary(max_size=200) | deep.map(str.encode)
          | st.just(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}'))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                     HealthCheck.data_too_large])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=st.sampled_from(PATHS),
       options=portkey_headers, body=bodies, chosen=st.booleans())
def test_any_request_is_answered_without_a_gateway_failure(fuzzed: GatewayProcess, method: str, path: str,
                                                           options: dict[str, str], body: bytes, chosen: bool) -> None:  # fmt: skip
    headers: dict[str, Any] = {f"x-portkey-{name}": value.strip().encode("latin-1") for name, value in options.items()}
    if chosen:
        headers.setdefault("x-portkey-provider", "@openai-test")
    headers.update({"x-portkey-api-key": fuzzed.admin_key, "content-type": "application/json"})
    answer = httpx.request(method, fuzzed.v1 + path, headers=headers, content=body if method != "GET" else None,
                           timeout=30)  # fmt: skip
    assert answer.status_code != 500, answer.text
    if answer.headers.get("x-portkey-gateway-exception") == "true":
        error = answer.json()["error"]
        assert error["message"] and error["type"], answer.text
        assert answer.status_code < 500 or answer.status_code in (502, 503, 504), answer.text


@pytest.mark.parametrize("name", HEADERS)
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                    HealthCheck.function_scoped_fixture])
@given(value=edge_values | header_text | configs)
def test_every_header_alone_on_a_plausible_request(fuzzed: GatewayProcess, name: str, value: str) -> None:
    """One header at a time on a request that is otherwise fine, so each header's parser is reached."""
    headers = {"x-portkey-provider": "@openai-test", "x-portkey-api-key": fuzzed.admin_key,
               f"x-portkey-{name}": value.strip().encode("latin-1")}
    answer = httpx.post(fuzzed.v1 + "/chat/completions", headers=headers, json=CHAT, timeout=30)
    assert answer.status_code != 500, answer.text
    if answer.status_code >= 400 and answer.headers.get("x-portkey-gateway-exception") == "true":
        assert answer.json()["error"]["message"], answer.text
