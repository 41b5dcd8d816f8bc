"""The fake OpenAI upstream speaks what the real ``openai`` SDK expects, and is as strict as the real API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai import UpstreamState, make_openai_app
from tests.fakes.server import FakeServer

KEY = "sk-test-openai"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(make_openai_app(KEY)) as server:
        yield server


@pytest.fixture
def state(fake: FakeServer) -> UpstreamState:
    state = fake.app["openai"]
    state.reset()
    return state


@pytest.fixture
def client(fake: FakeServer, state: UpstreamState) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=0)


def test_chat_completion_echoes_the_last_user_message(client: openai.OpenAI, state: UpstreamState) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 3
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert state.last.headers["authorization"] == f"Bearer {KEY}"
    assert state.last.body["messages"][1]["content"] == "hello there"


def test_cached_tokens_knob_shows_in_usage(client: openai.OpenAI, state: UpstreamState) -> None:
    state.cached_tokens = 2
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b c"}])
    assert completion.usage.prompt_tokens_details.cached_tokens == 2


async def test_async_client_and_request_id_header(fake: FakeServer, state: UpstreamState) -> None:
    async with openai.AsyncOpenAI(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "async hi"}]
        )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content == "Echo: async hi"


def test_stream_with_usage_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)


def test_tools_requested_by_name_come_back_as_tool_calls(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Use get_weather for Paris"}],
        tools=[WEATHER_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "unit": "celsius"}

    follow_up = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "Use get_weather for Paris"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content == "Tool said: 18C and sunny"


def test_streamed_tool_call_arguments_reassemble(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL],
        tool_choice="required", stream=True,
    )
    deltas = [c.choices[0].delta.tool_calls[0] for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments for d in deltas))["city"] == "example"


def test_tool_message_without_preceding_tool_calls_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding message"):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "tool", "tool_call_id": "call_1", "content": "x"}])


def test_json_mode_needs_json_in_the_prompt(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_object"})
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "answer in JSON"}],
        response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content) == {"echo": "answer in JSON"}


def test_image_parts_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}])
    assert completion.choices[0].message.content == "Echo: what is this? [image]"


def test_max_tokens_and_stop_shape_the_reply(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "alpha beta gamma delta"}]
    cut = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Echo: alpha", "length")
    stopped = client.chat.completions.create(model="gpt-4o", messages=messages, stop=["gamma"])
    assert stopped.choices[0].message.content == "Echo: alpha beta "


def test_legacy_completions_default_to_sixteen_tokens(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert completion.choices[0].text == "Echo: say this"
    long = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=" ".join(["w"] * 30))
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 16


def test_embeddings_are_deterministic_in_both_encodings(client: openai.OpenAI, state: UpstreamState) -> None:
    single = client.embeddings.create(model="text-embedding-3-small", input="cat", encoding_format="float")
    batch = client.embeddings.create(model="text-embedding-3-small", input=["dog", "cat"], dimensions=1536)
    assert state.last.body.get("encoding_format", "base64") == "base64"  # the SDK asks for base64 by default
    assert len(single.data[0].embedding) == 1536
    assert batch.data[1].embedding == pytest.approx(single.data[0].embedding, abs=1e-6)
    assert batch.data[0].embedding != batch.data[1].embedding
    assert batch.usage.prompt_tokens == 2
    small = client.embeddings.create(model="text-embedding-3-large", input="cat", dimensions=8)
    assert len(small.data[0].embedding) == 8


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o" in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve("gpt-4o").owned_by == "system"


def test_bad_key_raises_authentication_error(fake: FakeServer) -> None:
    client = openai.OpenAI(api_key="sk-wrong-key", base_url=f"{fake.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.body["type"] == "invalid_request_error"


def test_unknown_model_and_missing_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=None)  # type: ignore[arg-type]
    assert caught.value.code == "missing_required_parameter"


def test_scripted_failures_carry_retry_after_then_recover(fake: FakeServer, state: UpstreamState) -> None:
    state.fail_next(3, 429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=0).models.list()
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert caught.value.code == "rate_limit_exceeded"
    client = openai.OpenAI(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=2)
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    assert completion.choices[0].message.content == "Echo: again"
    assert state.count == 4


def test_scripted_server_error_surfaces_without_retries(client: openai.OpenAI, state: UpstreamState) -> None:
    state.fail_next(1, 503, path="/v1/embeddings")
    client.models.list()  # a different path is not affected
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert [r.path for r in state.requests] == ["/v1/models", "/v1/embeddings"]
