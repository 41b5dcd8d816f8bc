"""The Cohere adapter, driven against a fake Cohere v2 API over a real socket.

Each test builds the upstream request with the adapter, sends it with aiohttp (Bearer auth added the
way the pipeline adds it), and translates the answer, as bytes arrive for streams.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import orjson
import pytest

from modelport.providers.base import BEARER, Target, UnsupportedParameter
from modelport.providers.cohere import ADAPTER
from modelport.sse import SSEParser
from tests.fakes.cohere import COHERE, CohereState, make_cohere_app
from tests.adapter_driver import AdapterDriver
from tests.fakes.server import FakeServer

KEY = "test-cohere-key"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def server():
    with FakeServer(make_cohere_app(api_key=KEY)) as running:
        yield running


@pytest.fixture
def fake(server: FakeServer) -> CohereState:
    state = server.app[COHERE]
    state.reset()
    return state


@pytest.fixture
def target(server: FakeServer, fake: CohereState) -> Target:
    # The spec's base URL is the v1 root, as for the proxy route.
    return Target("cohere", f"{server.url}/v1", api_key=KEY)


DRIVER = AdapterDriver(ADAPTER, BEARER, piece=7)
send, call, stream = DRIVER.send, DRIVER.call, DRIVER.stream


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "command-r-plus", "messages": list(messages), **params}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# ------------------------------------------------------------------------------------------- chat


async def test_chat_goes_to_v2_with_system_prompt(target: Target, fake: CohereState) -> None:
    status, reply = await call("chat", chat({"role": "system", "content": "Be terse."}, user("Hello there")), target)

    assert status == 200
    sent = fake.requests[-1]
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {"model": "command-r-plus", "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello there"}]}
    assert reply["object"] == "chat.completion" and reply["id"].startswith("fake-chat-")
    assert reply["model"] == "command-r-plus"
    assert reply["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "You said: Hello there"},
                                 "logprobs": None, "finish_reason": "stop"}]


async def test_usage_counts_billed_units(target: Target, fake: CohereState) -> None:
    status, reply = await call("chat", chat(user("one two three")), target)

    # The fake's tokens.input_tokens adds 60 for Cohere's own preamble; that is not billed.
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_v2_root_keeps_a_custom_host_prefix() -> None:
    for base, url in [
        ("https://api.cohere.com/v1", "https://api.cohere.com/v2/chat"),
        ("https://api.cohere.com/v2/", "https://api.cohere.com/v2/chat"),
        ("https://proxy.internal/cohere/v1", "https://proxy.internal/cohere/v2/chat"),
        ("https://api.cohere.com", "https://api.cohere.com/v2/chat"),
    ]:
        assert ADAPTER.build_request("chat", chat(user("hi")), Target("cohere", base), False).url == url


async def test_multi_turn_conversation_keeps_roles(target: Target, fake: CohereState) -> None:
    messages = [user("One"), {"role": "assistant", "content": [{"type": "text", "text": "Two"}]}, user("Three")]
    status, reply = await call("chat", chat(*messages), target)

    assert status == 200
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three"}]
    assert reply["choices"][0]["message"]["content"] == "You said: Three"


async def test_sampling_parameters_use_cohere_names(target: Target, fake: CohereState) -> None:
    body = chat(user("hi"), temperature=0.3, top_p=0.9, top_k=40, seed=7, frequency_penalty=0.1,
                presence_penalty=0.2, max_tokens=99, max_completion_tokens=50, stop=["END", "STOP"])
    status, _ = await call("chat", body, target)

    assert status == 200
    sent = fake.requests[-1].body
    assert {k: v for k, v in sent.items() if k not in ("model", "messages")} == {
        "temperature": 0.3, "p": 0.9, "k": 40, "seed": 7, "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "max_tokens": 50, "stop_sequences": ["END", "STOP"],
    }


async def test_tool_call_round_trip(target: Target, fake: CohereState) -> None:
    question = user("Weather in Paris?")
    status, first = await call("chat", chat(question, tools=[WEATHER_TOOL]), target)

    assert status == 200
    assert fake.requests[-1].body["tools"] == [WEATHER_TOOL]
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["id"].startswith("fake_call_") and tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "sample"}

    result = {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp": 21}'}
    status, second = await call("chat", chat(question, choice["message"], result, tools=[WEATHER_TOOL]), target)

    assert status == 200
    sent = fake.requests[-1].body["messages"]
    assert sent[1] == {"role": "assistant", "tool_calls": [tool_call]}
    assert sent[2] == {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp": 21}'}
    assert second["choices"][0]["message"]["content"] == 'Results: {"temp": 21}'
    assert second["choices"][0]["finish_reason"] == "stop"


async def test_tool_choice_maps_to_cohere(target: Target, fake: CohereState) -> None:
    await call("chat", chat(user("hi"), tools=[WEATHER_TOOL], tool_choice="required"), target)
    assert fake.requests[-1].body["tool_choice"] == "REQUIRED"

    status, reply = await call("chat", chat(user("hi"), tools=[WEATHER_TOOL], tool_choice="none"), target)
    assert fake.requests[-1].body["tool_choice"] == "NONE"
    assert reply["choices"][0]["message"]["content"] == "You said: hi"

    await call("chat", chat(user("hi"), tools=[WEATHER_TOOL], tool_choice="auto"), target)
    assert "tool_choice" not in fake.requests[-1].body


async def test_named_tool_choice_offers_only_that_tool(target: Target, fake: CohereState) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    status, reply = await call("chat", chat(user("time?"), tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=named), target)

    assert status == 200
    assert fake.requests[-1].body["tools"] == [TIME_TOOL] and fake.requests[-1].body["tool_choice"] == "REQUIRED"
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"


async def test_images_pass_as_image_url(target: Target, fake: CohereState) -> None:
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    status, reply = await call("chat", {**chat(user(content)), "model": "command-a-vision"}, target)

    assert status == 200
    assert fake.requests[-1].body["messages"][0]["content"] == content
    assert reply["choices"][0]["message"]["content"] == "You said: Describe (+1 images)"


async def test_json_modes_map_to_response_format(target: Target, fake: CohereState) -> None:
    status, reply = await call("chat", chat(user("list"), response_format={"type": "json_object"}), target)
    assert fake.requests[-1].body["response_format"] == {"type": "json_object"}
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"echo": "list"}

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    status, reply = await call("chat", chat(user("who"), response_format=response_format), target)
    assert fake.requests[-1].body["response_format"] == {"type": "json_object", "json_schema": schema}
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"name": "sample"}


async def test_finish_reasons_map_to_openai(target: Target, fake: CohereState) -> None:
    _, reply = await call("chat", chat(user("one two three four"), max_tokens=2), target)
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["choices"][0]["message"]["content"] == "You said:"

    _, reply = await call("chat", chat(user("alpha beta gamma"), stop="beta"), target)
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"]["content"] == "You said: alpha "


# -------------------------------------------------------------------------------------- streaming


async def test_stream_translates_events_as_they_arrive_with_usage(target: Target, fake: CohereState) -> None:
    body = chat(user("the quick brown fox jumps"), stream_options={"include_usage": True})
    chunks, usage = await stream(body, target)

    assert fake.requests[-1].body["stream"] is True
    assert chunks[-1] == "[DONE]"
    data = chunks[:-1]
    assert data[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert not any("role" in c["choices"][0]["delta"] for c in data[1:] if c["choices"])
    assert data[0]["id"].startswith("fake-chat-") and all(c["id"] == data[0]["id"] for c in data)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data if c["choices"])
    assert text == "You said: the quick brown fox jumps"
    assert data[-2]["choices"][0]["finish_reason"] == "stop"
    assert data[-1]["choices"] == [] and data[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert all(c["usage"] is None for c in data[:-1])
    assert usage == data[-1]["usage"]


async def test_stream_without_include_usage_sends_no_usage_chunk(target: Target, fake: CohereState) -> None:
    chunks, usage = await stream(chat(user("hi")), target)

    assert all(c == "[DONE]" or (c["choices"] and "usage" not in c) for c in chunks)
    assert usage == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_stream_assembles_tool_calls(target: Target, fake: CohereState) -> None:
    chunks, _ = await stream(chat(user("Weather?"), tools=[WEATHER_TOOL]), target)

    calls = [tc for c in chunks[:-1] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("fake_call_")
    assert calls[0]["function"]["name"] == "get_weather"
    assert len(calls) > 2 and all(c["index"] == 0 and "id" not in c for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "sample"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_survives_a_malformed_event() -> None:
    translator = ADAPTER.stream_translator("chat", chat(user("hi")))
    delta = {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "ok"}}}}
    end = {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {}}}
    raw = b"data: {oops\n\n" + b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in (delta, end))
    out = translator.feed(raw) + translator.finish()

    chunks = [json.loads(e.data) for e in SSEParser().feed(out) if e.data != "[DONE]"]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["ok", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------------------------- embeddings


async def test_single_embedding_defaults_to_search_document(target: Target, fake: CohereState) -> None:
    status, reply = await call("embeddings", {"model": "embed-english-v3.0", "input": "hello world"}, target)

    assert status == 200
    sent = fake.requests[-1]
    assert sent.path == "/v2/embed"
    assert sent.body == {"model": "embed-english-v3.0", "texts": ["hello world"], "input_type": "search_document",
                         "embedding_types": ["float"]}
    assert reply["object"] == "list" and reply["model"] == "embed-english-v3.0"
    assert [(d["object"], d["index"], len(d["embedding"])) for d in reply["data"]] == [("embedding", 0, 8)]
    assert reply["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


async def test_batch_embedding_with_input_type_and_dimensions(target: Target, fake: CohereState) -> None:
    body = {"model": "embed-v4.0", "input": ["a", "b", "c"], "input_type": "search_query", "dimensions": 256}
    status, reply = await call("embeddings", body, target)

    assert status == 200
    sent = fake.requests[-1].body
    assert sent["input_type"] == "search_query" and sent["output_dimension"] == 256
    assert [(d["index"], len(d["embedding"])) for d in reply["data"]] == [(0, 256), (1, 256), (2, 256)]


async def test_base64_embeddings_decode_to_the_same_floats(target: Target, fake: CohereState) -> None:
    _, floats = await call("embeddings", {"model": "embed-english-v3.0", "input": ["x"]}, target)
    _, encoded = await call("embeddings", {"model": "embed-english-v3.0", "input": ["x"], "encoding_format": "base64"}, target)

    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats["data"][0]["embedding"]


# ------------------------------------------------------------------------------ strict vs lenient


async def test_strict_compliance_refuses_what_cohere_cannot_honour(target: Target) -> None:
    for extra in ({"n": 2}, {"logit_bias": {"1": 5}}, {"logprobs": True}, {"parallel_tool_calls": False}):
        with pytest.raises(UnsupportedParameter) as refused:
            ADAPTER.build_request("chat", chat(user("hi"), **extra), target, True)
        assert refused.value.parameter == next(iter(extra)) and refused.value.provider == "cohere"


async def test_strict_compliance_accepts_harmless_values(target: Target, fake: CohereState) -> None:
    status, _ = await call("chat", chat(user("hi"), n=1, logprobs=False, user="u-1"), target, strict=True)
    assert status == 200


async def test_lenient_compliance_drops_what_cohere_cannot_honour(target: Target, fake: CohereState) -> None:
    status, reply = await call("chat", chat(user("hi"), n=3, logit_bias={"1": 2}, store=True), target)

    assert status == 200
    assert set(fake.requests[-1].body) == {"model", "messages"}
    assert reply["choices"][0]["message"]["content"] == "You said: hi"


# ----------------------------------------------------------------------------------------- errors


async def test_wrong_or_missing_key_is_an_authentication_error(target: Target, fake: CohereState) -> None:
    status, error = await call("chat", chat(user("hi")), Target("cohere", target.base_url, api_key="nope"))
    assert status == 401
    assert error == {"error": {"message": "invalid api token", "type": "authentication_error", "param": None, "code": None}}

    status, error = await call("chat", chat(user("hi")), Target("cohere", target.base_url))
    assert status == 401 and error["error"]["message"] == "no api key supplied"


async def test_upstream_errors_are_normalised(target: Target, fake: CohereState) -> None:
    fake.fail_next(429, "You are using a Trial key, which is limited to 10 API calls / minute.")
    status, error = await call("chat", chat(user("hi")), target)
    assert status == 429
    assert error["error"] == {"message": "You are using a Trial key, which is limited to 10 API calls / minute.",
                              "type": "rate_limit_error", "param": None, "code": None}

    status, error = await call("chat", chat(user("hi"), top_p=1.0), target)
    assert status == 400 and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] == "invalid request: p must be between 0.01 and 0.99 inclusive."

    fake.fail_next(500)
    status, error = await call("embeddings", {"model": "embed-english-v3.0", "input": "x"}, target)
    assert status == 500 and error["error"]["type"] == "server_error"


def test_v2_data_error_bodies_are_understood() -> None:
    assert ADAPTER.error_body(422, b'{"data": "unprocessable"}')["error"]["message"] == "unprocessable"
    assert ADAPTER.error_body(503, b"upstream unavailable")["error"] == {
        "message": "upstream unavailable", "type": "server_error", "param": None, "code": None}
