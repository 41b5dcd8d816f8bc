"""The Anthropic adapter, driven against the fake Anthropic API over a real socket.

Each test translates a unified (OpenAI-format) request with the adapter, sends it with aiohttp the way
the pipeline does (auth injected from the spec's scheme), and translates the answer back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from modelport.providers.anthropic import ADAPTER, DEFAULT_MAX_TOKENS
from modelport.providers.base import AuthScheme, Target, UnsupportedParameter, UpstreamRequest
from modelport.sse import SSEParser
from tests.fakes.anthropic import AnthropicState, make_anthropic_app
from tests.fakes.server import FakeServer

KEY = "sk-ant-test"
MODEL = "claude-3-5-haiku-20241022"
AUTH = AuthScheme("header", "x-api-key")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(make_anthropic_app(KEY)) as server:
        yield server


@pytest.fixture
def state(fake: FakeServer) -> AnthropicState:
    state = fake.app["anthropic"]
    state.reset()
    return state


@pytest.fixture
def target(fake: FakeServer, state: AnthropicState) -> Target:
    return Target("anthropic", f"{fake.url}/v1", KEY)


async def send(request: UpstreamRequest, target: Target) -> tuple[int, bytes]:
    headers = {**request.headers, **AUTH.headers_for(target.api_key)}
    async with aiohttp.ClientSession() as session, session.request(
        request.method, request.url, headers=headers, data=request.body
    ) as response:
        return response.status, await response.read()


async def chat(target: Target, body: dict[str, Any], strict: bool = False) -> dict[str, Any]:
    status, raw = await send(ADAPTER.build_request("chat", body, target, strict), target)
    assert status == 200, raw
    return orjson.loads(ADAPTER.parse_response("chat", status, raw, body))


async def stream(target: Target, body: dict[str, Any], endpoint: str = "chat", slice_size: int = 0) -> tuple[bytes, Any]:
    """Stream through the translator as bytes arrive (optionally re-split into tiny slices)."""
    request = ADAPTER.build_request(endpoint, body, target, False)
    assert request.stream
    translator = ADAPTER.stream_translator(endpoint, body)
    out = b""
    async with aiohttp.ClientSession() as session:
        headers = {**request.headers, **AUTH.headers_for(target.api_key)}
        async with session.post(request.url, headers=headers, data=request.body) as response:
            assert response.status == 200
            async for piece in response.content.iter_any():
                pieces = [piece[i : i + slice_size] for i in range(0, len(piece), slice_size)] if slice_size else [piece]
                for part in pieces:
                    out += translator.feed(part)
    return out + translator.finish(), translator


def chunks_of(sse: bytes) -> list[Any]:
    events = SSEParser().feed(sse)
    assert events[-1].data == "[DONE]"
    return [json.loads(e.data) for e in events[:-1]]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- requests ------------------------------------------------------------------------------------


async def test_every_system_message_goes_to_the_system_prompt(target: Target, state: AnthropicState) -> None:
    completion = await chat(target, {"model": MODEL, "messages": [
        {"role": "system", "content": "Be brief."},
        user("hello there"),
        {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
    ]})
    sent = state.last.body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    assert ChatCompletion.model_validate(completion).choices[0].message.role == "assistant"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hello there", "refusal": None}
    assert completion["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_defaults_when_absent_and_max_completion_tokens_wins(target: Target, state: AnthropicState) -> None:
    await chat(target, {"model": MODEL, "messages": [user("hi")]})
    assert state.last.body["max_tokens"] == DEFAULT_MAX_TOKENS
    await chat(target, {"model": MODEL, "messages": [user("hi")], "max_tokens": 50, "max_completion_tokens": 70})
    assert state.last.body["max_tokens"] == 70


async def test_stop_becomes_stop_sequences(target: Target, state: AnthropicState) -> None:
    completion = await chat(target, {"model": MODEL, "messages": [user("alpha beta gamma")], "stop": "gamma"})
    assert state.last.body["stop_sequences"] == ["gamma"]
    assert completion["choices"][0]["message"]["content"] == "Echo: alpha beta "
    assert completion["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_stop_reason_is_length(target: Target) -> None:
    completion = await chat(target, {"model": MODEL, "messages": [user("one two three four")], "max_tokens": 2})
    assert completion["choices"][0]["message"]["content"] == "Echo: one"
    assert completion["choices"][0]["finish_reason"] == "length"


async def test_sampling_parameters_and_user_are_carried(target: Target, state: AnthropicState) -> None:
    await chat(target, {"model": MODEL, "messages": [user("hi")], "temperature": 0.2, "top_p": 0.9,
                        "top_k": 5, "user": "user-42"})
    sent = state.last.body
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.2, 0.9, 5)
    assert sent["metadata"] == {"user_id": "user-42"}


async def test_tool_call_round_trip(target: Target, state: AnthropicState) -> None:
    ask = [user("Please call get_weather for Paris")]
    first = await chat(target, {"model": MODEL, "messages": ask, "tools": [WEATHER]})
    assert state.last.body["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                                         "input_schema": WEATHER["function"]["parameters"]}]
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll use get_weather."
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("toolu_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "example"}

    second = await chat(target, {"model": MODEL, "tools": [WEATHER], "messages": [
        *ask, choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}]})
    turns = state.last.body["messages"]
    assert turns[1]["content"][1] == {"type": "tool_use", "id": call["id"], "name": "get_weather",
                                      "input": {"city": "example"}}
    assert turns[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"}]}
    assert second["choices"][0]["message"]["content"] == "Tool result: 18C and sunny"
    assert second["choices"][0]["finish_reason"] == "stop"


async def test_parallel_tool_results_and_a_follow_up_merge_into_one_user_turn(target: Target, state: AnthropicState) -> None:
    calls = [{"id": f"toolu_{n}", "type": "function", "function": {"name": "get_weather", "arguments": f'{{"city": "{c}"}}'}}
             for n, c in (("a", "Paris"), ("b", "Oslo"))]
    completion = await chat(target, {"model": MODEL, "tools": [WEATHER], "messages": [
        user("weather in Paris and Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "warm"},
        user("and so?"),  # out of OpenAI order: Anthropic still needs every tool_result first
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "cold"}]},
    ]})
    turns = state.last.body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result", "text"]
    assert turns[2]["content"][1]["content"] == [{"type": "text", "text": "cold"}]
    assert completion["choices"][0]["message"]["content"] == "Tool result: warm cold"


async def test_tool_choice_maps_to_anthropic_vocabulary(target: Target, state: AnthropicState) -> None:
    base = {"model": MODEL, "messages": [user("what now?")], "tools": [WEATHER]}
    forced = await chat(target, {**base, "tool_choice": "required"})
    assert state.last.body["tool_choice"] == {"type": "any"}
    assert forced["choices"][0]["message"]["content"] is None  # no preamble when the tool is forced
    await chat(target, {**base, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert state.last.body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    quiet = await chat(target, {**base, "messages": [user("get_weather maybe")], "tool_choice": "none"})
    assert state.last.body["tool_choice"] == {"type": "none"}
    assert quiet["choices"][0]["finish_reason"] == "stop"
    await chat(target, {**base, "parallel_tool_calls": False})
    assert state.last.body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_images_from_data_urls_and_web_urls(target: Target, state: AnthropicState) -> None:
    completion = await chat(target, {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]})
    blocks = state.last.body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert completion["choices"][0]["message"]["content"] == (
        "Echo: compare [image base64 image/png] [image url https://example.com/cat.jpg]")


def test_content_anthropic_cannot_take_is_refused_before_sending(target: Target) -> None:
    for content in ([{"type": "image_url", "image_url": {"url": "ftp://host/x.png"}}],
                    [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]):
        with pytest.raises(ValueError):
            ADAPTER.build_request("chat", {"model": MODEL, "messages": [{"role": "user", "content": content}]},
                                  target, False)


async def test_usage_counts_cache_reads_and_writes_in_prompt_tokens(target: Target) -> None:
    body = {"model": MODEL, "messages": [
        {"role": "system", "content": [{"type": "text", "text": "a long shared preamble here",
                                        "cache_control": {"type": "ephemeral"}}]},
        user("question one")]}
    first = (await chat(target, body))["usage"]
    second = (await chat(target, body))["usage"]
    assert first["cache_creation_input_tokens"] == 5 and first["cache_read_input_tokens"] == 0
    assert second["prompt_tokens_details"] == {"cached_tokens": 5}
    assert first["prompt_tokens"] == second["prompt_tokens"] == 5 + 3  # preamble + "question one" + 1
    assert second["completion_tokens"] == 3
    assert second["total_tokens"] == second["prompt_tokens"] + 3


async def test_json_mode_is_an_instruction_when_lenient_and_refused_when_strict(target: Target, state: AnthropicState) -> None:
    body = {"model": MODEL, "messages": [user("list fruit")], "response_format": {"type": "json_object"}}
    completion = await chat(target, body)
    assert "JSON" in state.last.body["system"][-1]["text"]
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"echo": "list fruit"}
    with pytest.raises(UnsupportedParameter) as caught:
        ADAPTER.build_request("chat", body, target, True)
    assert caught.value.parameter == "response_format"


async def test_unknown_parameters_are_dropped_when_lenient_and_refused_when_strict(target: Target, state: AnthropicState) -> None:
    body = {"model": MODEL, "messages": [user("hi")], "seed": 7, "n": 2, "logit_bias": {"50256": -100}}
    completion = await chat(target, body)  # the fake refuses extra fields, so they were dropped
    assert len(completion["choices"]) == 1
    assert not {"seed", "n", "logit_bias"} & set(state.last.body)
    with pytest.raises(UnsupportedParameter) as caught:
        ADAPTER.build_request("chat", body, target, True)
    assert caught.value.parameter == "seed" and caught.value.provider == "anthropic"
    neutral = {"model": MODEL, "messages": [user("hi")], "n": 1, "presence_penalty": 0, "frequency_penalty": None}
    assert (await chat(target, neutral, strict=True))["choices"][0]["message"]["content"] == "Echo: hi"


def test_version_header_defaults_and_follows_target_settings(target: Target) -> None:
    body = {"model": MODEL, "messages": [user("hi")]}
    assert ADAPTER.build_request("chat", body, target, False).headers["anthropic-version"] == "2023-06-01"
    tuned = Target("anthropic", target.base_url, KEY, {"anthropic_version": "2024-01-01", "anthropic_beta": "x-1"})
    headers = ADAPTER.build_request("chat", body, tuned, False).headers
    assert (headers["anthropic-version"], headers["anthropic-beta"]) == ("2024-01-01", "x-1")


# --- streams -------------------------------------------------------------------------------------


async def test_streamed_text_becomes_openai_chunks_with_usage(target: Target) -> None:
    body = {"model": MODEL, "messages": [user("one two three")], "stream": True,
            "stream_options": {"include_usage": True}}
    sse, translator = await stream(target, body, slice_size=7)
    chunks = chunks_of(sse)
    assert all(ChatCompletionChunk.model_validate(c).id.startswith("msg_") for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Echo: one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])
    assert translator.usage == chunks[-1]["usage"]


async def test_stream_without_include_usage_still_reports_usage_to_the_gateway(target: Target) -> None:
    sse, translator = await stream(target, {"model": MODEL, "messages": [user("hi")], "stream": True})
    assert all(c["choices"] and "usage" not in c for c in chunks_of(sse))
    assert translator.usage["completion_tokens"] == 2


async def test_streamed_tool_call_has_id_and_name_then_argument_fragments(target: Target) -> None:
    body = {"model": MODEL, "messages": [user("use get_weather")], "tools": [WEATHER], "stream": True}
    chunks = chunks_of((await stream(target, body))[0])
    assert all(ChatCompletionChunk.model_validate(c) for c in chunks)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("toolu_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(calls) > 2 and all(set(c) == {"index", "function"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "example"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "I'll use get_weather."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_stream_error_event_becomes_an_openai_error_chunk(target: Target, state: AnthropicState) -> None:
    state.stream_error = "overloaded_error"
    sse, _ = await stream(target, {"model": MODEL, "messages": [user("hi")], "stream": True})
    error = next(c for c in chunks_of(sse) if "error" in c)["error"]
    assert error == {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded_error"}


async def test_native_messages_stream_passes_bytes_through_and_reads_usage(target: Target, state: AnthropicState) -> None:
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "messages": [user("native call")]}
    sse, translator = await stream(target, body, endpoint="messages", slice_size=11)
    assert state.last.body == body
    names = [e.event for e in SSEParser().feed(sse)]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    assert translator.usage["completion_tokens"] == 3 and translator.usage["prompt_tokens"] == 3


async def test_native_messages_body_is_forwarded_unchanged(target: Target, state: AnthropicState) -> None:
    body = {"model": MODEL, "max_tokens": 10, "system": "terse", "messages": [user("native")]}
    request = ADAPTER.build_request("messages", body, target, True)
    assert request.url == f"{target.base_url}/messages" and orjson.loads(request.body) == body
    status, raw = await send(request, target)
    assert status == 200 and ADAPTER.parse_response("messages", status, raw, body) == raw
    assert orjson.loads(raw)["content"] == [{"type": "text", "text": "Echo: native"}]


# --- errors --------------------------------------------------------------------------------------


async def test_upstream_errors_are_normalised_keeping_the_message(target: Target, state: AnthropicState) -> None:
    request = ADAPTER.build_request("chat", {"model": "claude-nope", "messages": [user("x")]}, target, False)
    status, raw = await send(request, target)
    assert status == 404
    assert ADAPTER.error_body(status, raw) == {"error": {
        "message": "model: claude-nope", "type": "not_found_error", "param": None, "code": "not_found_error"}}

    wrong_key = Target("anthropic", target.base_url, "sk-ant-wrong")
    status, raw = await send(ADAPTER.build_request("chat", {"model": MODEL, "messages": [user("x")]}, wrong_key, False), wrong_key)
    assert status == 401 and ADAPTER.error_body(status, raw)["error"]["type"] == "authentication_error"

    state.fail_next(1, 529)
    status, raw = await send(ADAPTER.build_request("chat", {"model": MODEL, "messages": [user("x")]}, target, False), target)
    assert status == 529
    assert ADAPTER.error_body(status, raw)["error"] | {"message": ""} == {
        "message": "", "type": "server_error", "param": None, "code": "overloaded_error"}


def test_a_non_json_error_body_still_gives_an_openai_error() -> None:
    error = ADAPTER.error_body(413, b"<html>Request Entity Too Large</html>")["error"]
    assert error == {"message": "<html>Request Entity Too Large</html>", "type": "invalid_request_error",
                     "param": None, "code": "request_too_large"}
