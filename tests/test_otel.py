"""OpenTelemetry traces: with MODELPORT_OTEL_ENDPOINT set, every request reaches the collector as a SERVER
span with a CLIENT span per upstream attempt (GenAI semantic conventions), under the caller's Portkey
trace and span ids, exported off the request path; a collector that is down costs requests nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN, SECRETS, stored
from tests.fakes.otlp import OTLP, CollectorState, attributes, make_collector_app
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess, free_port

import modelport

SERVER, CLIENT, ERROR = 2, 3, 2
SRC = str(Path(modelport.__file__).resolve().parents[1])  # this checkout, for `python -m modelport`
COLLECTOR_TOKEN = "otel-collector-token-for-tests"
PROMPT_MARKER = "a prompt no span may carry"
METADATA_MARKER = "metadata no span may carry"


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[FakeServer, CollectorState]]:
    app = make_collector_app()
    with FakeServer(app) as server:
        yield server, app[OTLP]


def _providers(fake_openai, fake_openai_backup) -> list[dict]:
    return [stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1"),
            stored("openai-backup", "openai", "TEST_OPENAI_KEY", fake_openai_backup[0].url + "/v1")]


@pytest.fixture(scope="module")
def traced_gateway(tmp_path_factory, collector, fake_openai, fake_openai_backup, fake_replicate) -> Iterator[GatewayProcess]:
    providers = [*_providers(fake_openai, fake_openai_backup),
                 stored("replicate-test", "replicate", "TEST_REPLICATE_TOKEN", fake_replicate[0].url + "/v1")]
    env = {"TEST_OPENAI_KEY": OPENAI_KEY, "TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "MODELPORT_OTEL_ENDPOINT": collector[0].url,
           "MODELPORT_OTEL_HEADERS": f"authorization=Bearer%20{COLLECTOR_TOKEN}",
           "MODELPORT_OTEL_SERVICE_NAME": "gateway-under-test"}
    process = GatewayProcess(tmp_path_factory.mktemp("otel") / "data", providers=providers, env=env)
    with process:
        yield process


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_openai_backup):
    for _, state in (fake_openai, fake_openai_backup):
        state.reset()


def client(gateway: GatewayProcess, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0,
                         default_headers=gateway.headers(**{"x-portkey-provider": "@openai-test", **headers}))


def chat(gateway: GatewayProcess, text: str = "hello there", **headers: str):
    return client(gateway, **headers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def spans_of_trace(state: CollectorState, trace_id: str, count: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [span for span in state.spans if span["traceId"] == trace_id]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} spans of trace {trace_id} arrived"
        time.sleep(0.05)


def split(spans: list[dict]) -> tuple[dict, list[dict]]:
    (server,) = [span for span in spans if span["kind"] == SERVER]
    attempts = sorted((span for span in spans if span["kind"] == CLIENT), key=lambda span: int(span["startTimeUnixNano"]))
    return server, attempts


def test_a_chat_request_is_a_server_span_with_a_genai_client_span(traced_gateway, collector, fake_openai):
    server_state = collector[1]
    trace_id, span_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "53995c3f42cd8ad8"
    answer = chat(traced_gateway, **{"x-portkey-trace-id": trace_id, "x-portkey-span-id": span_id,
                                     "x-portkey-parent-span-id": parent_id, "x-portkey-span-name": "plan step"})
    server, attempts = split(spans_of_trace(server_state, trace_id, 2))
    assert (server["spanId"], server["parentSpanId"], server["name"]) == (span_id, parent_id, "plan step")
    assert len(attempts) == 1 and attempts[0]["parentSpanId"] == span_id
    assert attempts[0]["name"] == "chat gpt-4o-mini"
    assert int(server["startTimeUnixNano"]) <= int(attempts[0]["startTimeUnixNano"])
    assert int(attempts[0]["endTimeUnixNano"]) <= int(server["endTimeUnixNano"])
    genai = attributes(attempts[0]["attributes"])
    assert genai["gen_ai.operation.name"] == "chat"
    assert genai["gen_ai.provider.name"] == "openai"
    assert genai["gen_ai.request.model"] == "gpt-4o-mini"
    assert genai["gen_ai.response.model"] == answer.model
    assert genai["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert genai["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert (genai["server.address"], genai["server.port"]) == ("127.0.0.1", fake_openai[0].port)
    assert genai["http.response.status_code"] == 200 and "status" not in attempts[0]
    http = attributes(server["attributes"])
    assert http["http.request.method"] == "POST" and http["url.path"] == "/v1/chat/completions"
    assert http["http.response.status_code"] == 200 and "status" not in server
    assert server["resource"]["service.name"] == "gateway-under-test"
    assert server["scope"]["name"] == "modelport"
    headers = server_state.headers[-1]
    assert headers["authorization"] == f"Bearer {COLLECTOR_TOKEN}" and headers["content-type"] == "application/json"


def test_a_proxied_replicate_prediction_is_a_server_span_with_a_client_span_to_replicate(traced_gateway, collector,
                                                                                         fake_replicate):
    trace_id = "1c8efff798038103d269b633813fc612"
    answer = httpx.post(traced_gateway.v1 + "/models/test/echo/predictions", timeout=20, json={"input": {"text": "hi"}},
                        headers=traced_gateway.headers(**{"x-portkey-provider": "@replicate-test", "Prefer": "wait",
                                                          "x-portkey-trace-id": trace_id}))
    assert answer.status_code < 300, answer.text
    server, (attempt,) = split(spans_of_trace(collector[1], trace_id, 2))
    assert server["name"] == "POST replicate" and attempt["name"] == "POST replicate"  # a proxied path may hold ids
    http = attributes(server["attributes"])
    assert http["url.path"] == "/v1/models/test/echo/predictions" and http["modelport.provider"] == "replicate"
    assert http["http.request.method"] == "POST" and http["http.response.status_code"] == answer.status_code
    assert http["modelport.log_id"].startswith("log_") and "status" not in server
    client_side = attributes(attempt["attributes"])
    assert client_side["gen_ai.provider.name"] == "replicate" and "gen_ai.operation.name" not in client_side
    assert (client_side["server.address"], client_side["server.port"]) == ("127.0.0.1", fake_replicate[0].port)
    assert client_side["http.response.status_code"] == answer.status_code and "status" not in attempt
    assert attempt["parentSpanId"] == server["spanId"] and "parentSpanId" not in server


def test_a_w3c_traceparent_names_the_trace_and_the_parent_unless_portkey_headers_do(traced_gateway, collector):
    state = collector[1]
    trace_id, parent_id = "7af7651916cd43dd8448eb211c80319d", "b7ad6b7169203331"
    chat(traced_gateway, traceparent=f"00-{trace_id}-{parent_id}-01")
    server, _ = split(spans_of_trace(state, trace_id, 2))
    assert server["parentSpanId"] == parent_id

    own_trace, own_parent = "5bf92f3577b34da6a3ce929d0e0e4737", "63995c3f42cd8ad9"
    chat(traced_gateway, traceparent=f"00-{trace_id}-{parent_id}-01",
         **{"x-portkey-trace-id": own_trace, "x-portkey-parent-span-id": own_parent})
    server, _ = split(spans_of_trace(state, own_trace, 2))
    assert server["parentSpanId"] == own_parent

    malformed = "00-" + "0" * 32 + f"-{parent_id}-01"  # an all-zero trace id is invalid: ignored, not refused
    answer = httpx.post(traced_gateway.v1 + "/chat/completions", timeout=20,
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                        headers=traced_gateway.headers(**{"x-portkey-provider": "@openai-test", "traceparent": malformed}))
    assert answer.status_code == 200
    server, _ = split(spans_of_trace(state, answer.headers["x-portkey-trace-id"], 2))
    assert "parentSpanId" not in server


def test_a_trace_id_that_is_not_hex_is_derived_the_same_way_every_time(traced_gateway, collector):
    state = collector[1]
    first = httpx.post(traced_gateway.v1 + "/chat/completions", timeout=20,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "step one"}]},
                       headers=traced_gateway.headers(**{"x-portkey-provider": "@openai-test",
                                                         "x-portkey-trace-id": "agent-run-42", "x-portkey-span-id": "step-1"}))
    assert first.status_code == 200 and first.headers["x-portkey-trace-id"] == "agent-run-42"
    chat(traced_gateway, **{"x-portkey-trace-id": "agent-run-42", "x-portkey-span-id": "step-2",
                            "x-portkey-parent-span-id": "step-1"})
    deadline = time.monotonic() + 10
    while len(servers := [s for s in state.spans if s["kind"] == SERVER
                          and attributes(s["attributes"]).get("portkey.trace_id") == "agent-run-42"]) < 2:
        assert time.monotonic() < deadline, "the two server spans of agent-run-42 did not arrive"
        time.sleep(0.05)
    one, two = sorted(servers, key=lambda span: int(span["startTimeUnixNano"]))
    assert one["traceId"] == two["traceId"] and len(one["traceId"]) == 32  # the collector checked it is hex
    assert two["parentSpanId"] == one["spanId"] and "parentSpanId" not in one


def test_a_fallback_gives_a_span_per_attempt_the_failed_one_in_error(traced_gateway, collector, fake_openai, fake_openai_backup):
    fake_openai[1].fail_next(1, 503)
    config = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@openai-test"}, {"provider": "@openai-backup"}]}
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    answer = chat(traced_gateway, **{"x-portkey-config": json.dumps(config), "x-portkey-trace-id": trace_id})
    server, (failed, answered) = split(spans_of_trace(collector[1], trace_id, 3))
    assert failed["parentSpanId"] == answered["parentSpanId"] == server["spanId"]
    assert failed["spanId"] != answered["spanId"]
    failure = attributes(failed["attributes"])
    assert failed["status"]["code"] == ERROR and failure["error.type"] == "503"
    assert failure["http.response.status_code"] == 503 and "gen_ai.usage.input_tokens" not in failure
    success = attributes(answered["attributes"])
    assert "status" not in answered and success["server.port"] == fake_openai_backup[0].port
    assert success["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert (failure["modelport.target"], success["modelport.target"]) == ("config.targets[0]", "config.targets[1]")
    assert "status" not in server


def test_a_retry_counts_its_resends(traced_gateway, collector, fake_openai):
    fake_openai[1].fail_next(1, 429, retry_after=0)
    trace_id = "b7ad6b7169203331b7ad6b7169203331"
    chat(traced_gateway, **{"x-portkey-config": json.dumps({"provider": "@openai-test", "retry": {"attempts": 2}}),
                            "x-portkey-trace-id": trace_id})
    server, (first, second) = split(spans_of_trace(collector[1], trace_id, 3))
    assert first["status"]["code"] == ERROR and attributes(first["attributes"])["error.type"] == "429"
    assert attributes(second["attributes"])["http.request.resend_count"] == 1
    assert attributes(server["attributes"])["modelport.retry_count"] == 1


def test_a_failed_request_is_an_error_span(traced_gateway, collector, fake_openai):
    fake_openai[1].fail_next(1, 500)
    trace_id = "5b8efff798038103d269b633813fc60c"
    with pytest.raises(openai.InternalServerError):
        chat(traced_gateway, **{"x-portkey-trace-id": trace_id})
    server, (attempt,) = split(spans_of_trace(collector[1], trace_id, 2))
    assert server["status"]["code"] == ERROR and attributes(server["attributes"])["error.type"] == "500"
    assert attempt["status"]["code"] == ERROR and attributes(attempt["attributes"])["http.response.status_code"] == 500


def test_a_refused_request_is_a_server_span_alone(traced_gateway, collector):
    trace_id = "6c8efff798038103d269b633813fc60d"
    response = httpx.post(traced_gateway.v1 + "/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                          headers={"x-portkey-api-key": "mp-not-a-key", "x-portkey-trace-id": trace_id,
                                   "x-portkey-provider": "@openai-test"})
    assert response.status_code == 401
    (server,) = spans_of_trace(collector[1], trace_id, 1)
    time.sleep(1.2)  # one export interval: nothing else of this trace follows
    assert [s["spanId"] for s in collector[1].spans if s["traceId"] == trace_id] == [server["spanId"]]
    assert "status" not in server and attributes(server["attributes"])["http.response.status_code"] == 401


def test_no_secret_header_body_or_metadata_is_exported(traced_gateway, collector):
    trace_id = "7d8efff798038103d269b633813fc60e"
    chat(traced_gateway, PROMPT_MARKER, **{"x-portkey-trace-id": trace_id,
                                           "x-portkey-metadata": json.dumps({"_user": METADATA_MARKER})})
    spans_of_trace(collector[1], trace_id, 2)
    exported = b"".join(collector[1].bodies)
    leaks = [name for name, secret in {**SECRETS, "prompt": PROMPT_MARKER, "metadata": METADATA_MARKER,
                                       "the collector's token": COLLECTOR_TOKEN}.items() if secret.encode() in exported]
    assert not leaks, f"exported spans carry: {leaks}"
    assert b"Echo:" not in exported  # the fake's answer text
    assert COLLECTOR_TOKEN not in traced_gateway.log_text()


def metric(gateway: GatewayProcess, name: str) -> float:
    families = text_string_to_metric_families(httpx.get(gateway.url + "/metrics", timeout=5).text)
    return sum(s.value for family in families for s in family.samples if s.name == name)


def test_a_batch_the_collector_refuses_is_dropped_and_counted(traced_gateway, collector):
    state = collector[1]
    before = metric(traced_gateway, "modelport_otel_spans_dropped_total")
    state.status = 400  # refused as malformed: sending it again would be refused again
    try:
        chat(traced_gateway, **{"x-portkey-trace-id": "9f8efff798038103d269b633813fc610"})
        deadline = time.monotonic() + 10
        while metric(traced_gateway, "modelport_otel_spans_dropped_total") < before + 2:
            assert time.monotonic() < deadline, "the refused spans were not counted as dropped"
            time.sleep(0.1)
    finally:
        state.status = 200
    chat(traced_gateway, **{"x-portkey-trace-id": "af8efff798038103d269b633813fc611"})
    spans_of_trace(state, "af8efff798038103d269b633813fc611", 2)  # the next batch is sent, not stuck behind it
    assert not [span for span in state.spans if span["traceId"] == "9f8efff798038103d269b633813fc610"]


def test_a_collector_that_is_down_costs_requests_nothing_and_drops_the_oldest(tmp_path, fake_openai, fake_openai_backup):
    port = free_port()  # nothing listens here until the collector starts below
    env = {"TEST_OPENAI_KEY": OPENAI_KEY, "MODELPORT_OTEL_ENDPOINT": f"http://127.0.0.1:{port}",
           "MODELPORT_OTEL_QUEUE_SIZE": "64"}
    requests = 50
    with GatewayProcess(tmp_path / "data", providers=_providers(fake_openai, fake_openai_backup), env=env) as gateway:
        slowest = 0.0
        for number in range(requests):
            started = time.monotonic()
            chat(gateway, **{"x-portkey-trace-id": f"{number + 1:032x}"})
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0  # no request waited for the collector
        deadline = time.monotonic() + 10
        while metric(gateway, "modelport_otel_spans_dropped_total") < 2 * requests - 64:
            assert time.monotonic() < deadline, "the spans beyond the queue were not counted as dropped"
            time.sleep(0.1)
        app = make_collector_app()
        with FakeServer(app, port=port):  # the collector comes back: what was kept arrives
            state = app[OTLP]
            deadline = time.monotonic() + 20  # retries back off 1, 2, 4 … s
            while metric(gateway, "modelport_otel_spans_exported_total") < 64:
                assert time.monotonic() < deadline, "the queued spans never reached the collector once it was back"
                time.sleep(0.2)
            assert metric(gateway, "modelport_otel_spans_dropped_total") == 2 * requests - 64
            traces = {span["traceId"] for span in state.spans}
            assert f"{requests:032x}" in traces and f"{1:032x}" not in traces  # the oldest went first
            assert len(state.spans) == 64


def test_with_logging_off_spans_still_go_without_what_enrichment_reads(tmp_path, collector, fake_openai, fake_openai_backup):
    env = {"TEST_OPENAI_KEY": OPENAI_KEY, "MODELPORT_OTEL_ENDPOINT": collector[0].url, "MODELPORT_LOGGING": "false"}
    trace_id = "8e8efff798038103d269b633813fc60f"
    with GatewayProcess(tmp_path / "data", providers=_providers(fake_openai, fake_openai_backup), env=env) as gateway:
        chat(gateway, **{"x-portkey-trace-id": trace_id})
        server, (attempt,) = split(spans_of_trace(collector[1], trace_id, 2))
    found = attributes(attempt["attributes"])
    assert found["gen_ai.provider.name"] == "openai" and found["gen_ai.operation.name"] == "chat"
    # Nothing is enriched: no usage, and the path and messages only enrichment scrubs are left out.
    assert "gen_ai.usage.input_tokens" not in found and "url.path" not in attributes(server["attributes"])


@pytest.mark.parametrize("env, named", [
    ({"MODELPORT_OTEL_HEADERS": "authorization=Bearer%20x"}, "MODELPORT_OTEL_HEADERS"),
    ({"MODELPORT_OTEL_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "MODELPORT_OTEL_ENDPOINT"),
    ({"MODELPORT_OTEL_ENDPOINT": "http://127.0.0.1:4318", "MODELPORT_OTEL_HEADERS": "no-equals-sign-secret"},
     "MODELPORT_OTEL_HEADERS"),
])
def test_otel_settings_that_cannot_work_are_refused(tmp_path, env, named):
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path)],
                            env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr
    assert "no-equals-sign-secret" not in result.stderr  # a header entry is usually a credential
