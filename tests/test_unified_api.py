"""The unified (OpenAI-format) API through the gateway, for OpenAI-compatible and translated providers."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from openai import AsyncOpenAI, BadRequestError, OpenAI, PermissionDeniedError

from modelport import ModelPort, create_headers
from modelport.store import open_sqlite_store
from tests.conftest import OPENAI_KEY

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
CHAT_MODEL = {"@openai-test": "gpt-4o-mini", "@anthropic-test": "claude-3-5-haiku-20241022",
              "@gemini-test": "gemini-2.0-flash", "@cohere-test": "command-r-plus"}
EMBED_MODEL = {"@openai-test": "text-embedding-3-small", "@gemini-test": "gemini-embedding-001",
               "@cohere-test": "embed-english-v3.0"}
CLAUDE = CHAT_MODEL["@anthropic-test"]


def openai_client(gateway, provider: str) -> OpenAI:
    return OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0,
                  default_headers=create_headers(api_key=gateway.admin_key, provider=provider))


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_openai_backup, fake_anthropic, fake_gemini, fake_cohere):
    for _, state in (fake_openai, fake_openai_backup, fake_anthropic, fake_gemini, fake_cohere):
        state.reset()


@pytest.mark.parametrize("provider", ["@openai-test", "@anthropic-test", "@gemini-test", "@cohere-test"])
def test_chat_completion_on_every_provider(gateway, provider):
    raw = openai_client(gateway, provider).chat.completions.with_raw_response.create(model=CHAT_MODEL[provider], messages=MESSAGES)
    completion = raw.parse()
    assert "hello there" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert raw.headers["x-portkey-provider"] == provider.removeprefix("@").replace("-test", "").replace("gemini", "google")
    assert "x-portkey-gateway-exception" not in raw.headers


@pytest.mark.parametrize("provider", ["@openai-test", "@anthropic-test", "@gemini-test", "@cohere-test"])
def test_streaming_ends_with_usage_when_asked(gateway, provider):
    stream = openai_client(gateway, provider).chat.completions.create(
        model=CHAT_MODEL[provider], messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "hello there" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("provider", ["@openai-test", "@anthropic-test", "@gemini-test", "@cohere-test"])
def test_tool_calls_round_trip(gateway, provider):
    client = openai_client(gateway, provider)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    asked = [{"role": "user", "content": "use get_weather for Paris"}]
    first = client.chat.completions.create(model=CHAT_MODEL[provider], messages=asked, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and first.choices[0].finish_reason == "tool_calls"
    follow = asked + [first.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model=CHAT_MODEL[provider], messages=follow, tools=tools)
    assert "sunny" in second.choices[0].message.content


async def test_async_openai_sdk(gateway):
    client = AsyncOpenAI(api_key="unused", base_url=gateway.v1, max_retries=0,
                         default_headers=create_headers(api_key=gateway.admin_key, provider="@anthropic-test"))
    completion = await client.chat.completions.create(model=CLAUDE, messages=MESSAGES)
    assert "hello there" in completion.choices[0].message.content
    stream = await client.chat.completions.create(model=CLAUDE, messages=MESSAGES, stream=True)
    assert "hello there" in "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.mark.parametrize("provider", ["@openai-test", "@gemini-test", "@cohere-test"])
def test_embeddings(gateway, provider):
    result = openai_client(gateway, provider).embeddings.create(model=EMBED_MODEL[provider], input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0


def test_completions_and_models_for_openai(gateway):
    client = openai_client(gateway, "@openai-test")
    assert client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi").choices[0].text
    assert any(m.id for m in client.models.list())


def test_json_mode_and_images_reach_anthropic_translated(gateway, fake_anthropic):
    _, state = fake_anthropic
    image = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    openai_client(gateway, "@anthropic-test").chat.completions.create(
        model=CLAUDE, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": image}}]}])
    sent = state.requests[-1].body
    assert sent["messages"][0]["content"][1]["type"] == "image"
    assert "JSON" in str(sent.get("system", ""))


def test_anthropic_sdk_uses_native_messages(gateway, fake_anthropic):
    _, state = fake_anthropic
    client = anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0,
                                 default_headers={"x-portkey-provider": "@anthropic-test"})
    message = client.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "native hi"}])
    assert "native hi" in message.content[0].text and message.usage.input_tokens > 0
    with client.messages.stream(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "streamed"}]) as stream:
        assert "streamed" in "".join(stream.text_stream)
    headers = state.requests[-1].headers
    assert headers.get("x-api-key") == "sk-ant-test-key"
    assert not str(headers.get("authorization", "")).endswith(gateway.admin_key)


def test_provider_errors_are_openai_shaped_and_not_gateway_exceptions(gateway, fake_anthropic):
    _, state = fake_anthropic
    state.fail_next(1, 529)
    response = httpx.post(gateway.v1 + "/chat/completions", headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}),
                          json={"model": CLAUDE, "messages": MESSAGES})
    assert response.status_code == 529
    assert set(response.json()["error"]) >= {"message", "type"}
    assert "x-portkey-gateway-exception" not in response.headers


def test_strict_compliance_rejects_unsupported_parameters_by_name(gateway):
    client = openai_client(gateway, "@anthropic-test")
    body = {"model": CLAUDE, "messages": MESSAGES, "logit_bias": {"50256": -100}}
    lenient = client.chat.completions.create(**body)
    assert lenient.choices[0].message.content
    strict = OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0, default_headers=create_headers(
        api_key=gateway.admin_key, provider="@anthropic-test", strict_open_ai_compliance=True))
    with pytest.raises(BadRequestError) as refused:
        strict.chat.completions.create(**body)
    assert "logit_bias" in str(refused.value)


def test_unsupported_unified_endpoint_is_a_clear_400(gateway):
    response = httpx.post(gateway.v1 + "/embeddings", headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}),
                          json={"model": "x", "input": "y"})
    assert response.status_code == 400 and response.headers["x-portkey-gateway-exception"] == "true"
    assert "does not serve /v1/embeddings" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/completions", "/embeddings"])
def test_a_unified_endpoint_replicate_does_not_serve_points_to_the_proxy_route(gateway, path):
    from tests.test_logging import one_log, trace

    trace_id = trace()
    headers = gateway.headers(**{"x-portkey-provider": "@replicate-test", "x-portkey-trace-id": trace_id})
    response = httpx.post(gateway.v1 + path, headers=headers, json={"model": "x", "messages": MESSAGES, "input": "y"})
    assert response.status_code == 400 and response.headers["x-portkey-gateway-exception"] == "true", response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_endpoint"
    assert f"provider 'replicate' does not serve /v1{path} through the unified API" in error["message"]
    assert "proxy route" in error["message"] and "https://api.replicate.com/v1/<path>" in error["message"]
    row = one_log(gateway, trace_id)
    assert row["status"] == 400 and row["gateway_exception"] is True and "does not serve" in row["error"]


def test_a_providers_own_model_list_is_still_proxied(gateway):
    response = httpx.get(gateway.v1 + "/models", headers=gateway.headers(**{"x-portkey-provider": "@replicate-test"}))
    assert response.status_code == 200 and "x-portkey-gateway-exception" not in response.headers


def test_model_allow_list_of_a_stored_provider(gateway, fake_openai):
    store = open_sqlite_store(gateway.data_dir)
    try:
        if store.get_provider("openai-limited") is None:
            store.create_provider("openai-limited", provider="openai", secret=OPENAI_KEY,
                                  custom_host=fake_openai[0].url + "/v1", allowed_models=["gpt-4o-mini"])
    finally:
        store.close()
    client = openai_client(gateway, "@openai-limited")
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    with pytest.raises(PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert "gpt-4o" in str(refused.value)


def test_modelport_sdk_chat(gateway):
    client = ModelPort(api_key=gateway.admin_key, base_url=gateway.v1, provider="@gemini-test")
    completion = client.chat.completions.create(model="gemini-2.0-flash", messages=MESSAGES)
    assert "hello there" in completion.choices[0].message.content
    chunks = list(client.chat.completions.create(model="gemini-2.0-flash", messages=MESSAGES, stream=True))
    assert "hello there" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- Portkey 2.x calling style: the gateway key as the Bearer token, the provider in the model name ----
@pytest.mark.parametrize("provider", ["@openai-test", "@anthropic-test"])
def test_model_at_slug_routes_with_no_portkey_header(gateway, fake_openai, fake_anthropic, provider):
    client = OpenAI(api_key=gateway.admin_key, base_url=gateway.v1, max_retries=0)  # nothing else set
    raw = client.chat.completions.with_raw_response.create(model=f"{provider}/{CHAT_MODEL[provider]}", messages=MESSAGES)
    assert "hello there" in raw.parse().choices[0].message.content
    assert raw.headers["x-portkey-provider"] == provider.removeprefix("@").removesuffix("-test")
    assert "x-portkey-last-used-option-index" not in raw.headers  # no config routed it
    _, state = fake_openai if provider == "@openai-test" else fake_anthropic
    assert state.last.body["model"] == CHAT_MODEL[provider]  # the upstream sees the bare model name
    assert "authorization" not in state.last.headers or gateway.admin_key not in state.last.headers["authorization"]


def test_model_at_slug_embeddings_and_headers_win(gateway, fake_openai, fake_openai_backup):
    client = OpenAI(api_key=gateway.admin_key, base_url=gateway.v1, max_retries=0)
    vectors = client.embeddings.create(model="@openai-test/text-embedding-3-small", input="hi")
    assert len(vectors.data) == 1 and fake_openai[1].last.body["model"] == "text-embedding-3-small"
    chosen = openai_client(gateway, "@openai-backup")  # a provider header wins: the model goes as sent
    chosen.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_openai_backup[1].last.body["model"] == "gpt-4o-mini"


def test_model_at_slug_errors_are_clear(gateway):
    client = OpenAI(api_key=gateway.admin_key, base_url=gateway.v1, max_retries=0)
    with pytest.raises(BadRequestError, match="no stored provider '@nowhere'"):
        client.chat.completions.create(model="@nowhere/gpt-4o", messages=MESSAGES)
    with pytest.raises(BadRequestError, match="'@provider-slug/model-name'"):
        client.chat.completions.create(model="@openai-test/", messages=MESSAGES)
    with pytest.raises(BadRequestError, match="name the model '@slug/model'"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
