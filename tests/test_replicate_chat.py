"""OpenAI chat completions over Replicate models: a prediction per call, its inputs as the model's schema
declares them, streamed or polled, its cost logged once and its ownership the calling key's."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import anthropic
import httpx
import openai
import pytest

from tests.harness import GatewayProcess
from tests.test_clients_replicate import NODE_DIR
from tests.test_logging import one_log, trace
from tests.test_replicate_cost import start_gateway

SLUG = {"x-portkey-provider": "@replicate-test"}
PER_MILLION_IN, PER_MILLION_OUT = 10, 20  # test/llm, priced per token as an official model
A40_LARGE = 0.000725  # test/chat runs on gpu-a40-large (model map)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    prices = {"official": {"test/llm": {"input": PER_MILLION_IN, "output": PER_MILLION_OUT}},
              "models": {"test/chat": "gpu-a40-large"}}
    process = start_gateway(tmp_path_factory.mktemp("replicate-chat"), fake_replicate, fake_openai, prices)
    yield process
    process.stop()


def new_key(gateway: GatewayProcess, name: str) -> str:
    answer = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(), json={"name": name, "scopes": ["inference"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["key"]


def chat_client(gateway: GatewayProcess, key: str | None = None, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0, timeout=30,
                         default_headers={"x-portkey-api-key": key or gateway.admin_key, **SLUG, **headers})


@pytest.fixture
def client(gateway):
    return chat_client(gateway)


def created_inputs(state, model: str) -> dict:
    """The input of the last prediction of ``model`` the fake created."""
    return state.predictions[-1].input if state.predictions[-1].model == model else pytest.fail("no prediction of " + model)


def test_a_prompt_model_gets_the_conversation_as_its_declared_inputs(client, fake_replicate):
    _, state = fake_replicate
    reply = client.chat.completions.create(
        model="test/llm", max_tokens=50, temperature=0.2,  # test/llm declares no temperature: dropped
        messages=[{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "No emoji."},
                  {"role": "user", "content": "hello there world"}])
    assert reply.object == "chat.completion" and reply.model == "test/llm"
    assert reply.choices[0].message.content == "hello there world" and reply.choices[0].finish_reason == "stop"
    sent = created_inputs(state, "test/llm")
    assert sent == {"prompt": "hello there world", "system_prompt": "Be brief.\n\nNo emoji.", "max_new_tokens": 50}
    assert reply.usage.prompt_tokens == 7 and reply.usage.completion_tokens == 3 and reply.usage.total_tokens == 10
    assert reply.id == f"chatcmpl-{state.predictions[-1].id}"


def test_a_longer_conversation_is_rendered_by_the_documented_template(client, fake_replicate):
    _, state = fake_replicate
    client.chat.completions.create(model="test/llm", messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "now?"}]}])
    assert created_inputs(state, "test/llm")["prompt"] == "User: hi\n\nAssistant: hello\n\nUser: and now?\n\nAssistant:"


def test_a_messages_model_gets_the_messages_and_what_it_declares(client, fake_replicate):
    _, state = fake_replicate
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say two words"}]
    reply = client.chat.completions.create(model="test/chat", messages=messages, max_completion_tokens=2,
                                           temperature=0.5, top_p=0.9, stop=["\n", "END"], seed=7)
    assert reply.choices[0].message.content == "say two"
    assert created_inputs(state, "test/chat") == {"messages": messages, "max_tokens": 2, "temperature": 0.5, "top_p": 0.9,
                                                  "stop_sequences": "\n,END"}  # no seed: test/chat declares none


def test_a_version_reference_creates_by_version_with_that_versions_schema(client, fake_replicate):
    _, state = fake_replicate
    version = state.models["test/llm"].versions[-1].id
    reply = client.chat.completions.create(model=f"test/llm:{version}", messages=[{"role": "user", "content": "x y"}])
    assert reply.choices[0].message.content == "x y"
    assert state.requests_to(f"/v1/models/test/llm/versions/{version}", "GET")
    create = state.requests_to("/v1/predictions", "POST")[-1]
    assert create.json() == {"input": {"prompt": "x y"}, "version": version}
    assert create.headers["Prefer"].startswith("wait=")


def test_the_schema_is_read_once_and_cached(client, fake_replicate):
    _, state = fake_replicate
    client.chat.completions.create(model="test/chat", messages=[{"role": "user", "content": "warm"}])
    before = len(state.requests_to("/v1/models/test/chat", "GET"))
    client.chat.completions.create(model="test/chat", messages=[{"role": "user", "content": "again"}])
    assert len(state.requests_to("/v1/models/test/chat", "GET")) == before


def test_streaming_relays_each_output_event_as_it_arrives_then_stop_then_usage(client, fake_replicate):
    _, state = fake_replicate
    state.stream_event_delay = 0.3
    try:
        started = time.monotonic()
        stream = client.chat.completions.create(model="test/llm", stream=True, stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "one two three four"}])
        chunks, arrivals = [], []
        for chunk in stream:
            chunks.append(chunk)
            arrivals.append(time.monotonic() - started)
    finally:
        state.stream_event_delay = 0.0
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["one", " two", " three", " four"]  # one chunk per output event
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert arrivals[-1] - arrivals[first_text] > 0.6  # not buffered: the first token came well before the last
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 4 and chunks[-1].usage.completion_tokens == 4
    assert all(c.object == "chat.completion.chunk" and c.id == f"chatcmpl-{state.predictions[-1].id}" for c in chunks)
    create = state.requests_to("/v1/models/test/llm/predictions", "POST")[-1]
    assert create.json()["stream"] is True and "Prefer" not in create.headers


def test_a_stream_without_include_usage_has_no_usage_chunk(gateway):
    with httpx.stream("POST", gateway.v1 + "/chat/completions", headers=gateway.headers(**SLUG), timeout=30,
                      json={"model": "test/chat", "stream": True, "messages": [{"role": "user", "content": "a b"}]}) as reply:
        body = reply.read().decode()
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in body.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and '"finish_reason":"stop"' in events[-2] and '"usage"' not in body


def test_polls_a_prediction_the_create_did_not_finish(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", sync_status="starting", polls=2)
    reply = client.chat.completions.create(model="test/llm", messages=[{"role": "user", "content": "slow one"}])
    assert reply.choices[0].message.content == "slow one" and reply.usage.completion_tokens == 2
    assert len(state.requests_to(f"/v1/predictions/{state.predictions[-1].id}", "GET")) == 2


def test_polling_stops_at_the_request_timeout_with_where_to_poll(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", sync_status="starting", polls=1000)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="test/llm", messages=[{"role": "user", "content": "never"}],
                                       extra_headers={"x-portkey-request-timeout": "1500"})
    error = raised.value
    assert error.status_code == 504 and error.response.headers["x-portkey-gateway-exception"] == "true"
    prediction_id = state.predictions[-1].id
    assert error.code == "prediction_timeout" and f"/v1/predictions/{prediction_id}" in error.message


def test_strict_compliance_refuses_an_undeclared_input_by_name(gateway, fake_replicate):
    _, state = fake_replicate
    strict = chat_client(gateway, **{"x-portkey-strict-open-ai-compliance": "true"})
    before = len(state.predictions)
    with pytest.raises(openai.BadRequestError) as raised:
        strict.chat.completions.create(model="test/llm", temperature=0.2, messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "unsupported_parameter"
    assert "'temperature'" in raised.value.message and "test/llm" in raised.value.message
    assert len(state.predictions) == before  # nothing ran
    ok = strict.chat.completions.create(model="test/llm", max_tokens=3, n=1, messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content == "x"


def test_a_model_with_neither_messages_nor_prompt_is_a_400_naming_it(client, fake_replicate):
    _, state = fake_replicate
    before = len(state.predictions)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "x"}])
    assert "test/echo" in raised.value.message and "neither 'messages' nor 'prompt'" in raised.value.message
    assert raised.value.response.headers["x-portkey-gateway-exception"] == "true"
    assert len(state.predictions) == before


def test_a_failed_prediction_is_a_502_with_replicates_error(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", outcome="failed", error="CUDA out of memory")
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="test/llm", messages=[{"role": "user", "content": "x"}])
    error = raised.value
    assert error.status_code == 502 and error.code == "prediction_failed"
    assert "CUDA out of memory" in error.message and state.predictions[-1].id in error.message
    assert "x-portkey-gateway-exception" not in error.response.headers  # Replicate's failure, not the gateway's


def test_a_prediction_failing_mid_stream_ends_the_stream_with_its_error(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", outcome="failed", error="the GPU fell over")
    stream = client.chat.completions.create(model="test/llm", stream=True, messages=[{"role": "user", "content": "a b c d"}])
    seen = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert "the GPU fell over" in raised.value.message and seen[:2] == ["a", " b"]


def test_a_replicate_422_keeps_its_status_and_detail(client):
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="test/llm", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 422
    assert "input.max_new_tokens: Must be greater than or equal to 1" in raised.value.message
    assert "x-portkey-gateway-exception" not in raised.value.response.headers


def test_an_unknown_model_is_replicates_404(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="test/nope", messages=[{"role": "user", "content": "x"}])
    assert "Not found" in raised.value.message


def test_the_anthropic_sdk_reaches_a_replicate_model_through_messages(gateway, fake_replicate):
    _, state = fake_replicate
    sdk = anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0, default_headers=SLUG)
    message = sdk.messages.create(model="test/llm", max_tokens=20, system="Be brief.",
                                  messages=[{"role": "user", "content": "hi from claude"}])
    assert message.content[0].text == "hi from claude" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 5 and message.usage.output_tokens == 3
    assert state.predictions[-1].input == {"prompt": "hi from claude", "system_prompt": "Be brief.", "max_new_tokens": 20}
    with sdk.messages.stream(model="test/chat", max_tokens=20, messages=[{"role": "user", "content": "a b c"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["a", " b", " c"] and final.usage.output_tokens == 3
    state.script_next(model="test/llm", outcome="failed", error="no GPU left")
    with pytest.raises(anthropic.APIStatusError) as raised:
        sdk.messages.create(model="test/llm", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 502 and "no GPU left" in str(raised.value)


def test_cost_is_logged_once_on_the_chat_record_and_the_prediction_links_it(gateway, client, fake_replicate):
    _, state = fake_replicate
    trace_id = trace()
    reply = client.chat.completions.create(model="test/llm", messages=[{"role": "user", "content": "a b c"}],
                                           extra_headers={"x-portkey-trace-id": trace_id})
    prediction_id = state.predictions[-1].id
    row = one_log(gateway, trace_id)
    expected = (3 * PER_MILLION_IN + 3 * PER_MILLION_OUT) / 1e6
    assert row["endpoint"] == "chat" and row["prediction_id"] == prediction_id
    assert row["cost_usd"] == pytest.approx(expected) and row["cost_status"] == "priced"
    assert row["input_tokens"] == 3 and row["output_tokens"] == reply.usage.completion_tokens == 3
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(**SLUG), timeout=20) as admin:
        poll_trace = trace()
        assert admin.get(f"/predictions/{prediction_id}", headers={"x-portkey-trace-id": poll_trace}).status_code == 200
        poll = one_log(gateway, poll_trace)
        assert poll["cost_usd"] == 0 and "priced on log" in poll["cost_reason"]  # once: not again on a later poll
        view = admin.get(f"/logs/predictions/{prediction_id}").json()
    assert view["cost_usd"] == pytest.approx(expected) and view["model"] == "test/llm" and view["status"] == "succeeded"
    assert view["first_log_id"] == row["id"] == view["ended_on_log_id"]
    assert [step["step"] for step in view["lifecycle"]][:1] == ["chat"]


def test_a_streamed_call_is_priced_by_time_from_the_finished_prediction(gateway, client, fake_replicate):
    _, state = fake_replicate
    trace_id = trace()
    for _ in client.chat.completions.create(model="test/chat", stream=True, extra_headers={"x-portkey-trace-id": trace_id},
                                            messages=[{"role": "user", "content": "p q"}]):
        pass
    row = one_log(gateway, trace_id)
    assert row["stream"] is True and row["prediction_id"] == state.predictions[-1].id
    assert row["cost_usd"] == pytest.approx(2.0 * A40_LARGE) and row["cost_status"] == "priced"


def test_the_prediction_belongs_to_the_calling_key(gateway, fake_replicate):
    _, state = fake_replicate
    alice, bob = new_key(gateway, "chat-alice"), new_key(gateway, "chat-bob")
    chat_client(gateway, alice).chat.completions.create(model="test/llm", messages=[{"role": "user", "content": "mine"}])
    prediction_id = state.predictions[-1].id
    def get(key: str, path: str) -> httpx.Response:
        return httpx.get(gateway.v1 + path, headers={"x-portkey-api-key": key, **SLUG}, timeout=20)
    assert get(alice, f"/predictions/{prediction_id}").json()["status"] == "succeeded"
    assert get(bob, f"/predictions/{prediction_id}").status_code == 404
    assert prediction_id in [p["id"] for p in get(alice, "/predictions").json()["results"]]
    assert prediction_id not in [p["id"] for p in get(bob, "/predictions").json()["results"]]
    mine = get(gateway.admin_key, "/logs/predictions?key_id=" + one_key_id(gateway, "chat-alice")).json()["data"]
    assert [p["id"] for p in mine] == [prediction_id]


def one_key_id(gateway: GatewayProcess, name: str) -> str:
    keys = httpx.get(gateway.v1 + "/api-keys", headers=gateway.headers(), timeout=20).json()["data"]
    return next(k["id"] for k in keys if k["name"] == name)


def test_a_client_that_closes_its_stream_has_the_prediction_canceled(gateway, fake_replicate):
    _, state = fake_replicate
    state.stream_event_delay = 0.5
    trace_id = trace()
    try:
        with httpx.stream("POST", gateway.v1 + "/chat/completions", timeout=30,
                          headers=gateway.headers(**SLUG, **{"x-portkey-trace-id": trace_id}),
                          json={"model": "test/llm", "stream": True, "messages": [{"role": "user", "content": "w " * 40}]}) as reply:
            for line in reply.iter_lines():
                if '"content":"w"' in line:
                    break  # the first token: the client has seen enough and hangs up
        prediction = state.predictions[-1]
        deadline = time.monotonic() + 10
        while prediction.status != "canceled" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        state.stream_event_delay = 0.0
    assert prediction.status == "canceled"
    assert state.requests_to(f"/v1/predictions/{prediction.id}/cancel", "POST")
    row = one_log(gateway, trace_id)
    assert row["status"] == 499 and row["prediction_id"] == prediction.id


def test_a_client_that_gives_up_on_a_poll_has_the_prediction_canceled(gateway, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", sync_status="starting", polls=1000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.v1 + "/chat/completions", headers=gateway.headers(**SLUG), timeout=1.5,
                   json={"model": "test/llm", "messages": [{"role": "user", "content": "slow"}]})
    prediction = state.predictions[-1]
    deadline = time.monotonic() + 10
    while prediction.status != "canceled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert prediction.status == "canceled"


def test_a_prediction_failing_mid_stream_is_still_priced_for_the_time_it_ran(gateway, client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/chat", outcome="failed", error="out of memory")
    trace_id = trace()
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="test/chat", stream=True, extra_headers={"x-portkey-trace-id": trace_id},
                                                messages=[{"role": "user", "content": "a b c d"}]):
            pass
    row = one_log(gateway, trace_id)
    assert row["prediction_id"] == state.predictions[-1].id and "out of memory" in (row["error"] or "")
    assert row["cost_usd"] == pytest.approx(2.0 * A40_LARGE) and row["cost_status"] == "priced"


# -- the portkey-ai SDKs (issue 13: real clients, chat and images over Replicate) ---------------------
def test_the_portkey_python_sdk_chats_and_draws_over_replicate_models(gateway, fake_replicate):
    from portkey_ai import Portkey

    _, state = fake_replicate
    portkey = Portkey(api_key=gateway.admin_key, base_url=gateway.v1, provider="@replicate-test")
    reply = portkey.chat.completions.create(model="test/chat", messages=[{"role": "user", "content": "portkey says hi"}],
                                            max_tokens=2)
    assert reply.choices[0].message.content == "portkey says"
    assert created_inputs(state, "test/chat")["messages"] == [{"role": "user", "content": "portkey says hi"}]
    drawn = portkey.images.generate(model="test/image", prompt="a blue circle", n=2)
    assert len(drawn.data) == 2 and all(image.url.startswith(fake_replicate[0].url) for image in drawn.data)
    assert state.predictions[-1].model == "test/image" and state.predictions[-1].input["prompt"] == "a blue circle"


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "portkey-ai").exists(),
                    reason="node and tests/node/node_modules (npm ci in tests/node) are required")
def test_the_portkey_node_sdk_chats_over_a_replicate_model(gateway, fake_replicate):
    script = f"""
    const {{ Portkey }} = require('portkey-ai');
    const portkey = new Portkey({{ apiKey: {json.dumps(gateway.admin_key)}, baseURL: {json.dumps(gateway.v1)},
                                   provider: '@replicate-test' }});
    portkey.chat.completions.create({{ model: 'test/chat', max_tokens: 3,
                                      messages: [{{ role: 'user', content: 'node says hello there' }}] }})
      .then(r => console.log(JSON.stringify(r)))
      .catch(e => {{ console.error(String(e)); process.exit(1); }});
    """
    result = subprocess.run(["node", "-e", script], cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["content"] == "node says hello"
    assert reply["usage"]["completion_tokens"] == 3
