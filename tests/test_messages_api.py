"""Anthropic's Messages API (``/v1/messages``) on every chat provider: the real anthropic SDK,
pointed at the gateway, reaches OpenAI, Gemini and any other chat model, streaming and tools included."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from aiohttp import web

from modelport.providers.registry import PROVIDERS as REGISTRY
from tests.conftest import OPENAI_KEY
from tests.fakes.openai import UpstreamState, chat_completions, json_body
from tests.fakes.server import FakeServer
from tests.test_logging import one_log, trace

MODELS = {"@openai-test": "gpt-4o-mini", "@gemini-test": "gemini-2.0-flash", "@cohere-test": "command-r-plus"}
PROVIDERS = list(MODELS)
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gateway, provider: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0,
                               default_headers={"x-portkey-provider": provider, **headers})


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_gemini, fake_cohere):
    for _, state in (fake_openai, fake_gemini, fake_cohere):
        state.reset()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_message_from_any_chat_provider(gateway, provider):
    trace_id = trace()
    message = client(gateway, provider, **{"x-portkey-trace-id": trace_id}).messages.create(
        model=MODELS[provider], max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hello there"}])
    assert message.type == "message" and message.role == "assistant"
    assert "hello there" in message.content[0].text and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    row = one_log(gateway, trace_id)
    assert row["endpoint"] == "messages" and row["model"] == MODELS[provider]
    assert (row["input_tokens"], row["output_tokens"]) == (message.usage.input_tokens, message.usage.output_tokens)
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0


@pytest.mark.parametrize("streamed", [False, True])
def test_cached_prompt_tokens_are_cache_reads_and_priced_as_such(gateway, fake_openai, streamed):
    _, state = fake_openai
    state.cached_tokens = 2
    trace_id = trace()
    ask = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there my friend"}]}
    sdk = client(gateway, "@openai-test", **{"x-portkey-trace-id": trace_id})
    if streamed:
        with sdk.messages.stream(**ask) as stream:
            usage = stream.get_final_message().usage
    else:
        usage = sdk.messages.create(**ask).usage
    assert usage.cache_read_input_tokens == 2 and usage.input_tokens > 0
    row = one_log(gateway, trace_id)
    assert row["input_tokens"] == usage.input_tokens + 2  # every prompt token, as OpenAI counts them
    assert row["usage"]["cached_input_tokens"] == 2 and "2 cached input tokens" in row["cost_reason"]


def test_the_request_reaches_openai_translated(gateway, fake_openai):
    _, state = fake_openai
    client(gateway, "@openai-test").messages.create(
        # anthropic 2.x dropped temperature and top_p from its signature; the API still takes them.
        model="gpt-4o-mini", max_tokens=50, extra_body={"temperature": 0.2, "top_p": 0.9}, stop_sequences=["END"],
        metadata={"user_id": "user-7"}, system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    sent = state.last.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"], sent["user"]) == (50, 0.2, 0.9, ["END"], "user-7")
    assert sent["model"] == "gpt-4o-mini"
    assert "x-api-key" not in state.last.headers  # the gateway key stays with the gateway
    assert state.last.headers["authorization"] != f"Bearer {gateway.admin_key}"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_events_in_anthropics_sequence(gateway, provider):
    trace_id = trace()
    with client(gateway, provider, **{"x-portkey-trace-id": trace_id}).messages.stream(
            model=MODELS[provider], max_tokens=100, messages=[{"role": "user", "content": "streamed words"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[1] == "content_block_start" and "content_block_delta" in kinds and "content_block_stop" in kinds
    assert kinds.index("message_delta") > kinds.index("content_block_stop")
    assert "streamed words" in final.content[0].text and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    row = one_log(gateway, trace_id)
    assert (row["input_tokens"], row["output_tokens"]) == (final.usage.input_tokens, final.usage.output_tokens)
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True])
def test_tool_use_round_trip(gateway, provider, streamed):
    sdk = client(gateway, provider)
    asked = [{"role": "user", "content": "use get_weather for Paris"}]
    if streamed:
        with sdk.messages.stream(model=MODELS[provider], max_tokens=100, tools=[WEATHER], messages=asked) as stream:
            deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
            first = stream.get_final_message()
        assert "input_json_delta" in deltas
    else:
        first = sdk.messages.create(model=MODELS[provider], max_tokens=100, tools=[WEATHER], messages=asked)
    use = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.name == "get_weather" and isinstance(use.input, dict)
    follow = asked + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    second = sdk.messages.create(model=MODELS[provider], max_tokens=100, tools=[WEATHER], messages=follow)
    assert "sunny" in second.content[0].text and second.stop_reason == "end_turn"


def test_tool_choice_forces_the_named_tool(gateway, fake_openai):
    _, state = fake_openai
    message = client(gateway, "@openai-test").messages.create(
        model="gpt-4o-mini", max_tokens=100, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "hi"}])
    assert message.content[-1].type == "tool_use"
    assert state.last.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert state.last.body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]


def test_features_without_a_counterpart_are_dropped_or_refused_by_name(gateway, fake_openai):
    _, state = fake_openai
    body = {"model": "gpt-4o-mini", "max_tokens": 2000, "messages": [{"role": "user", "content": "hello"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024}}
    lenient = client(gateway, "@openai-test").messages.create(**body)
    assert lenient.content[0].text and "thinking" not in state.last.body
    strict = client(gateway, "@openai-test", **{"x-portkey-strict-open-ai-compliance": "true"})
    with pytest.raises(anthropic.BadRequestError) as refused:
        strict.messages.create(**body)
    assert "Parameter 'thinking' is not supported by provider 'openai'" in str(refused.value)
    assert refused.value.response.headers["x-portkey-gateway-exception"] == "true"


def test_a_refusal_names_the_messages_parameter_the_caller_sent(gateway):
    strict = client(gateway, "@cohere-test", **{"x-portkey-strict-open-ai-compliance": "true"})
    with pytest.raises(anthropic.BadRequestError, match="'tool_choice.disable_parallel_tool_use' is not supported by provider 'cohere'"):
        strict.messages.create(model="command-r-plus", max_tokens=100, tools=[WEATHER],
                               tool_choice={"type": "auto", "disable_parallel_tool_use": True},
                               messages=[{"role": "user", "content": "hi"}])


def test_thinking_blocks_in_the_history_are_dropped_or_refused_by_name(gateway, fake_openai):
    _, state = fake_openai
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                                                 {"type": "text", "text": "hello"}]},
               {"role": "user", "content": "again"}]
    lenient = client(gateway, "@openai-test").messages.create(model="gpt-4o-mini", max_tokens=100, messages=history)
    assert lenient.content[0].text and state.last.body["messages"][1] == {"role": "assistant", "content": "hello"}
    strict = client(gateway, "@openai-test", **{"x-portkey-strict-open-ai-compliance": "true"})
    with pytest.raises(anthropic.BadRequestError, match=r"Parameter 'messages\[1\]\.content\[0\] \(thinking block\)'"):
        strict.messages.create(model="gpt-4o-mini", max_tokens=100, messages=history)


def test_structured_output_becomes_a_json_schema_response_format(gateway, fake_openai):
    _, state = fake_openai
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    message = client(gateway, "@openai-test").messages.create(
        model="gpt-4o-mini", max_tokens=100, output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "a city as JSON"}])
    assert state.last.body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert "city" in json.loads(message.content[0].text)


def test_provider_errors_come_back_in_anthropics_shape(gateway, fake_openai):
    response = httpx.post(gateway.url + "/v1/messages", headers=gateway.headers(**{"x-portkey-provider": "@openai-test"}),
                          json={"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "assistant", "content": [
                              {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]},
                              {"role": "user", "content": "no tool result"}]})
    assert response.status_code == 400 and "x-portkey-gateway-exception" not in response.headers
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "tool_call" in body["error"]["message"]  # the provider's own words


@pytest.mark.parametrize("provider", sorted(p for p, spec in REGISTRY.items() if spec.adapter is None and "chat" in spec.unified))
def test_every_openai_compatible_table_entry_answers_messages(open_gateway, fake_openai, provider):
    server, state = fake_openai
    sdk = anthropic.Anthropic(auth_token=OPENAI_KEY, base_url=open_gateway.url, max_retries=0, default_headers={
        "x-portkey-provider": provider, "x-portkey-custom-host": server.url + "/v1"})
    ask = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}
    if REGISTRY[provider].auth.kind == "none":  # a local Ollama takes no key, so none is sent; the fake wants one
        with pytest.raises(anthropic.AuthenticationError):
            sdk.messages.create(**ask)
        assert "authorization" not in state.last.headers
        return
    message = sdk.messages.create(**ask)
    assert "hello there" in message.content[0].text and message.usage.output_tokens > 0
    assert state.last.path == "/v1/chat/completions" and state.last.headers["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.fixture(scope="module")
def fake_azure():
    """Azure OpenAI's chat: OpenAI's body at a deployment's URL, an ``api-key`` and an api-version."""
    state, seen = UpstreamState(), []

    async def deployment_chat(request: web.Request) -> web.StreamResponse:
        seen.append((request.match_info["deployment"], dict(request.query), await json_body(request)))
        if request.headers.get("api-key") != "azure-key" or "authorization" in request.headers:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}, status=401)
        if not request.query.get("api-version"):
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        return await chat_completions(request, state)

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", deployment_chat)
    with FakeServer(app) as server:
        yield server, seen


def test_azure_openai_answers_messages_at_its_deployment(open_gateway, fake_azure):
    server, seen = fake_azure
    sdk = anthropic.Anthropic(auth_token="azure-key", base_url=open_gateway.url, max_retries=0, default_headers={
        "x-portkey-provider": "azure-openai", "x-portkey-custom-host": server.url + "/openai"})
    message = sdk.messages.create(model="gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "hello there"}])
    assert "hello there" in message.content[0].text and message.usage.input_tokens > 0
    with sdk.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "streamed"}]) as stream:
        assert "streamed" in "".join(stream.text_stream)
        assert stream.get_final_message().usage.output_tokens > 0
    deployment, query, body = seen[-1]
    assert deployment == "gpt-4o-mini" and query["api-version"] and body["stream_options"] == {"include_usage": True}


def test_an_anthropic_client_falls_back_from_claude_to_another_provider(gateway, fake_anthropic, fake_openai):
    fake_anthropic[1].reset()
    fake_anthropic[1].fail_next(1, 529)
    config = {"strategy": {"mode": "fallback"}, "targets": [
        {"provider": "@anthropic-test"}, {"provider": "@openai-test", "override_params": {"model": "gpt-4o-mini"}}]}
    sdk = anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0,
                              default_headers={"x-portkey-config": json.dumps(config)})
    raw = sdk.messages.with_raw_response.create(model="claude-3-5-haiku-20241022", max_tokens=100,
                                                messages=[{"role": "user", "content": "hello there"}])
    assert raw.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert "hello there" in raw.parse().content[0].text
    assert fake_openai[1].last.body["model"] == "gpt-4o-mini"


def test_an_error_inside_a_stream_reaches_the_client_as_anthropics_error_event(gateway, fake_gemini):
    fake_gemini[1].stream_error_after = 1
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        with client(gateway, "@gemini-test").messages.stream(
                model="gemini-2.0-flash", max_tokens=100, messages=[{"role": "user", "content": "many words here"}]) as stream:
            seen.extend(event.type for event in stream)
    assert failed.value.body["type"] == "error" and failed.value.body["error"]["type"] == "api_error"
    assert "content_block_delta" in seen and "message_stop" not in seen  # the text so far, then the error


def test_a_provider_error_before_the_stream_keeps_its_status(gateway, fake_gemini):
    fake_gemini[1].fail_next(503, "The model is overloaded.", "UNAVAILABLE")
    with pytest.raises(anthropic.InternalServerError) as failed:
        client(gateway, "@gemini-test").messages.create(
            model="gemini-2.0-flash", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 503 and "The model is overloaded." in failed.value.body["error"]["message"]
    assert failed.value.body["error"]["type"] == "api_error"


def test_the_model_names_the_stored_provider_with_no_portkey_header(gateway, fake_openai):
    sdk = anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0)  # nothing else set
    message = sdk.messages.create(model="@openai-test/gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "hello there"}])
    assert "hello there" in message.content[0].text and fake_openai[1].last.body["model"] == "gpt-4o-mini"


def test_a_model_replicate_cannot_name_is_a_clear_gateway_400(gateway):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(gateway, "@replicate-test").messages.create(model="x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.response.headers["x-portkey-gateway-exception"] == "true"
    assert "is not a Replicate model" in str(refused.value)  # Replicate's chat is there; the model is not one
