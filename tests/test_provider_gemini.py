"""The Gemini adapter, driven against a fake Gemini API over a real socket.

Each test builds the upstream request with the adapter, sends it with aiohttp (auth added the way the
pipeline adds it, from the spec's scheme), and translates the answer, as bytes arrive for streams.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import orjson
import pytest

from modelport.providers.base import AuthScheme, Target, UnsupportedParameter
from modelport.providers.google import ADAPTER
from modelport.sse import SSEParser
from tests.fakes.gemini import GEMINI, GeminiState, make_gemini_app
from tests.adapter_driver import AdapterDriver
from tests.fakes.server import FakeServer

KEY = "test-gemini-key"
AUTH = AuthScheme("header", "x-goog-api-key")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


@pytest.fixture(scope="module")
def server():
    with FakeServer(make_gemini_app(api_key=KEY)) as running:
        yield running


@pytest.fixture
def fake(server: FakeServer) -> GeminiState:
    state = server.app[GEMINI]
    state.reset()
    return state


@pytest.fixture
def target(server: FakeServer, fake: GeminiState) -> Target:
    return Target("google", f"{server.url}/v1beta", api_key=KEY)


DRIVER = AdapterDriver(ADAPTER, AUTH, piece=5)
send, call, stream = DRIVER.send, DRIVER.call, DRIVER.stream


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gemini-1.5-pro", "messages": list(messages), **params}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# ------------------------------------------------------------------------------------------- chat


async def test_system_prompt_becomes_system_instruction(target: Target, fake: GeminiState) -> None:
    status, reply = await call("chat", chat({"role": "system", "content": "Be terse."}, user("Hello there")), target)

    assert status == 200
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-1.5-pro:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY and "key" not in sent.query
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Hello there"}]}]
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "You said: Hello there"}
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


async def test_model_may_be_named_with_models_prefix(target: Target, fake: GeminiState) -> None:
    status, _ = await call("chat", {**chat(user("hi")), "model": "models/gemini-1.5-pro"}, target)

    assert status == 200
    assert fake.requests[-1].path == "/v1beta/models/gemini-1.5-pro:generateContent"


async def test_model_name_cannot_leave_the_models_path(target: Target) -> None:
    for model in ("../files", "gemini-1.5-pro:streamGenerateContent?key=x", "a/b/c"):
        with pytest.raises(ValueError, match="Invalid model name"):
            ADAPTER.build_request("chat", {**chat(user("hi")), "model": model}, target, False)


async def test_multi_turn_conversation_alternates_user_and_model(target: Target, fake: GeminiState) -> None:
    messages = [user("One"), {"role": "assistant", "content": "Two"}, user([{"type": "text", "text": "Three"}])]
    status, reply = await call("chat", chat(*messages), target)

    assert status == 200
    assert [(c["role"], c["parts"]) for c in fake.requests[-1].body["contents"]] == [
        ("user", [{"text": "One"}]), ("model", [{"text": "Two"}]), ("user", [{"text": "Three"}]),
    ]
    assert reply["choices"][0]["message"]["content"] == "You said: Three"


async def test_openai_sampling_parameters_become_generation_config(target: Target, fake: GeminiState) -> None:
    body = chat(user("a b c"), temperature=0.2, top_p=0.9, top_k=40, max_tokens=99, max_completion_tokens=50,
                stop="END", n=2, seed=7, presence_penalty=0.5, frequency_penalty=0.25)
    status, reply = await call("chat", body, target)

    assert status == 200
    assert fake.requests[-1].body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 50, "stopSequences": ["END"],
        "candidateCount": 2, "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 0.25,
    }
    assert [c["index"] for c in reply["choices"]] == [0, 1]


async def test_tool_call_round_trip(target: Target, fake: GeminiState) -> None:
    question = user("Weather in Paris?")
    status, first = await call("chat", chat(question, tools=[WEATHER_TOOL], tool_choice="auto"), target)

    assert status == 200
    declaration = fake.requests[-1].body["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "unit": {"nullable": True, "type": "STRING", "enum": ["c", "f"]}},
        "required": ["city"],
    }
    assert fake.requests[-1].body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["id"].startswith("call_") and tool_call["type"] == "function"
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "sample", "unit": "c"}

    result = {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp": 21}'}
    status, second = await call("chat", chat(question, choice["message"], result, tools=[WEATHER_TOOL]), target)

    assert status == 200
    contents = fake.requests[-1].body["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "sample", "unit": "c"}}}]}
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}
    assert second["choices"][0]["message"]["content"] == 'Results: get_weather={"temp": 21}'


async def test_parallel_tool_results_share_one_turn(target: Target, fake: GeminiState) -> None:
    calls = [{"id": f"call_{n}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
             for n, city in enumerate(["Paris", "Oslo"])]
    messages = [
        user("Weather in Paris and Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "rainy"}]},
    ]
    status, reply = await call("chat", chat(*messages, tools=[WEATHER_TOOL]), target)

    assert status == 200
    last = fake.requests[-1].body["contents"][-1]
    assert [p["functionResponse"]["response"] for p in last["parts"]] == [{"result": "sunny"}, {"result": "rainy"}]
    assert reply["choices"][0]["message"]["content"].startswith("Results: get_weather=")


async def test_tool_choice_becomes_function_calling_mode(target: Target, fake: GeminiState) -> None:
    expected = {
        "none": {"mode": "NONE"},
        "required": {"mode": "ANY"},
        "auto": {"mode": "AUTO"},
    }
    for choice, config in expected.items():
        status, _ = await call("chat", chat(user("hi"), tools=[WEATHER_TOOL], tool_choice=choice), target)
        assert status == 200
        assert fake.requests[-1].body["toolConfig"]["functionCallingConfig"] == config
    named = {"type": "function", "function": {"name": "get_time"}}
    status, reply = await call("chat", chat(user("hi"), tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=named), target)
    assert status == 200
    assert fake.requests[-1].body["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    # Gemini refuses an OBJECT schema without properties: a function without arguments has no schema.
    assert fake.requests[-1].body["tools"][0]["functionDeclarations"][1] == {"name": "get_time"}
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}


async def test_images_go_inline_or_by_uri(target: Target, fake: GeminiState) -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=large", "detail": "low"}},
    ]
    status, reply = await call("chat", chat(user(content)), target)

    assert status == 200
    parts = fake.requests[-1].body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert parts[2] == {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"}}
    assert reply["choices"][0]["message"]["content"] == "You said: Compare (+2 media)"
    assert reply["usage"]["prompt_tokens"] == 1 + 2 * 258


async def test_json_mode_asks_for_json(target: Target, fake: GeminiState) -> None:
    status, reply = await call("chat", chat(user("list"), response_format={"type": "json_object"}), target)

    assert status == 200
    assert fake.requests[-1].body["generationConfig"] == {"responseMimeType": "application/json"}
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"echo": "list"}


async def test_json_schema_becomes_response_schema(target: Target, fake: GeminiState) -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
        "required": ["items"],
        "additionalProperties": False,
        "$defs": {"item": {"type": "object", "properties": {"name": {"type": "string", "format": "email"},
                                                             "kind": {"const": "fruit"}}}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "basket", "schema": schema, "strict": True}}
    status, reply = await call("chat", chat(user("fill"), response_format=response_format), target)

    assert status == 200
    assert fake.requests[-1].body["generationConfig"]["responseSchema"] == {
        "type": "OBJECT",
        "properties": {"items": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {
            "name": {"type": "STRING"}, "kind": {"enum": ["fruit"]}}}}},
        "required": ["items"],
    }
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"items": [{"name": "sample", "kind": "fruit"}]}


async def test_finish_reasons_map_to_openai(target: Target, fake: GeminiState) -> None:
    status, reply = await call("chat", chat(user("one two three four"), max_tokens=2), target)
    assert status == 200
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["choices"][0]["message"]["content"] == "You said:"

    for reason, expected in [("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("OTHER", "stop")]:
        fake.reply_next({"candidates": [{"finishReason": reason, "index": 0}], "usageMetadata": {"promptTokenCount": 3}})
        status, reply = await call("chat", chat(user("hi")), target)
        assert reply["choices"][0]["finish_reason"] == expected

    fake.reply_next({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})
    status, reply = await call("chat", chat(user("hi")), target)
    assert reply["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                                 "finish_reason": "content_filter"}]


async def test_usage_reports_cached_and_thinking_tokens(target: Target, fake: GeminiState) -> None:
    fake.reply_next({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking...", "thought": True}, {"text": "42"}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 2,
                          "thoughtsTokenCount": 30, "totalTokenCount": 132},
        "modelVersion": "gemini-2.5-pro",
    })
    status, reply = await call("chat", chat(user("answer?")), target)

    assert reply["model"] == "gemini-2.5-pro"
    assert reply["choices"][0]["message"]["content"] == "42"
    assert reply["usage"] == {
        "prompt_tokens": 100, "completion_tokens": 32, "total_tokens": 132,
        "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 30},
    }


async def test_thought_signature_travels_with_the_tool_call(target: Target, fake: GeminiState) -> None:
    fake.reply_next({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": "c2lnbmF0dXJl"}]},
        "finishReason": "STOP", "index": 0}]})
    _, first = await call("chat", chat(user("Rome?"), tools=[WEATHER_TOOL]), target)
    message = first["choices"][0]["message"]
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "c2lnbmF0dXJl"}}

    result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "hot"}
    status, _ = await call("chat", chat(user("Rome?"), message, result, tools=[WEATHER_TOOL]), target)

    assert status == 200
    assert fake.requests[-1].body["contents"][1]["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJl"


# -------------------------------------------------------------------------------------- streaming


async def test_stream_translates_chunks_as_they_arrive_with_usage(target: Target, fake: GeminiState) -> None:
    body = chat(user("the quick brown fox jumps"), stream_options={"include_usage": True})
    chunks, usage = await stream(body, target)

    assert fake.requests[-1].path.endswith(":streamGenerateContent") and fake.requests[-1].query == {"alt": "sse"}
    assert chunks[-1] == "[DONE]"
    data = chunks[:-1]
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert not any("role" in c["choices"][0]["delta"] for c in data[1:] if c["choices"])
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == data[0]["id"] for c in data)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data if c["choices"])
    assert text == "You said: the quick brown fox jumps"
    assert len([c for c in data if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    assert [c["choices"][0]["finish_reason"] for c in data if c["choices"]][-1] == "stop"
    assert data[-1]["choices"] == [] and data[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert all(c["usage"] is None for c in data[:-1])
    assert usage == data[-1]["usage"]


async def test_stream_without_include_usage_sends_no_usage_chunk(target: Target, fake: GeminiState) -> None:
    chunks, usage = await stream(chat(user("hi")), target)

    assert all(c == "[DONE]" or (c["choices"] and "usage" not in c) for c in chunks)
    assert usage == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_stream_carries_tool_calls(target: Target, fake: GeminiState) -> None:
    chunks, _ = await stream(chat(user("Weather?"), tools=[WEATHER_TOOL], tool_choice="required"), target)

    calls = [tc for c in chunks[:-1] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "sample", "unit": "c"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_stream_error_after_start_is_passed_on(target: Target, fake: GeminiState) -> None:
    fake.stream_error_after = 1
    chunks, _ = await stream(chat(user("a b c d e f")), target)

    assert chunks[-2] == {"error": {"message": "An internal error has occurred.", "type": "server_error",
                                    "param": None, "code": "INTERNAL"}}
    assert chunks[-1] == "[DONE]"


def test_stream_survives_a_malformed_event() -> None:
    translator = ADAPTER.stream_translator("chat", chat(user("hi")))
    good = {"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP", "index": 0}]}
    out = translator.feed(b"data: {not json\r\n\r\ndata: " + orjson.dumps(good) + b"\r\n\r\n") + translator.finish()

    chunks = [json.loads(e.data) for e in SSEParser().feed(out) if e.data != "[DONE]"]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["ok", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------------------------- embeddings


async def test_single_embedding_uses_embed_content(target: Target, fake: GeminiState) -> None:
    body = {"model": "text-embedding-004", "input": "hello world", "dimensions": 4, "encoding_format": "float"}
    status, reply = await call("embeddings", body, target)

    assert status == 200
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:embedContent"
    assert sent.body == {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4}
    assert reply["object"] == "list" and reply["model"] == "text-embedding-004"
    assert [(d["object"], d["index"], len(d["embedding"])) for d in reply["data"]] == [("embedding", 0, 4)]
    assert reply["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


async def test_batch_embedding_uses_batch_embed_contents(target: Target, fake: GeminiState) -> None:
    body = {"model": "models/text-embedding-004", "input": ["a", "b", "c"], "task_type": "RETRIEVAL_DOCUMENT"}
    status, reply = await call("embeddings", body, target)

    assert status == 200
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["model"] for r in sent.body["requests"]] == ["models/text-embedding-004"] * 3
    assert sent.body["requests"][0]["taskType"] == "RETRIEVAL_DOCUMENT"
    assert [d["index"] for d in reply["data"]] == [0, 1, 2]
    assert reply["data"][0]["embedding"] != reply["data"][1]["embedding"]


async def test_base64_embeddings_decode_to_the_same_floats(target: Target, fake: GeminiState) -> None:
    _, floats = await call("embeddings", {"model": "text-embedding-004", "input": ["x"]}, target)
    _, encoded = await call("embeddings", {"model": "text-embedding-004", "input": ["x"], "encoding_format": "base64"}, target)

    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats["data"][0]["embedding"]


async def test_token_inputs_cannot_be_embedded(target: Target) -> None:
    with pytest.raises(ValueError, match="strings only"):
        ADAPTER.build_request("embeddings", {"model": "text-embedding-004", "input": [[1, 2, 3]]}, target, False)


# ------------------------------------------------------------------------------ strict vs lenient


async def test_strict_compliance_refuses_what_gemini_cannot_honour(target: Target) -> None:
    for extra in ({"logit_bias": {"50256": -100}}, {"logprobs": True}, {"parallel_tool_calls": False}):
        with pytest.raises(UnsupportedParameter) as refused:
            ADAPTER.build_request("chat", chat(user("hi"), **extra), target, True)
        assert refused.value.parameter == next(iter(extra)) and refused.value.provider == "google"


async def test_strict_compliance_accepts_harmless_values(target: Target, fake: GeminiState) -> None:
    body = chat(user("hi"), logprobs=False, parallel_tool_calls=True, user="u-1", service_tier=None)
    status, _ = await call("chat", body, target, strict=True)
    assert status == 200


async def test_lenient_compliance_drops_what_gemini_cannot_honour(target: Target, fake: GeminiState) -> None:
    status, reply = await call("chat", chat(user("hi"), logit_bias={"1": 2}, logprobs=True, metadata={"a": "b"}), target)

    assert status == 200
    assert set(fake.requests[-1].body) == {"contents"}
    assert reply["choices"][0]["message"]["content"] == "You said: hi"


# ----------------------------------------------------------------------------------------- errors


async def test_wrong_key_is_an_authentication_error(target: Target, fake: GeminiState) -> None:
    wrong = Target("google", target.base_url, api_key="not-the-key")
    status, error = await call("chat", chat(user("hi")), wrong)

    assert status == 400  # Google answers a bad key with 400 INVALID_ARGUMENT
    assert error == {"error": {"message": "API key not valid. Please pass a valid API key.",
                               "type": "authentication_error", "param": None, "code": "invalid_api_key"}}


async def test_missing_key_is_a_permission_error(target: Target, fake: GeminiState) -> None:
    status, error = await call("chat", chat(user("hi")), Target("google", target.base_url))

    assert status == 403
    assert error["error"]["type"] == "permission_error" and error["error"]["code"] == "PERMISSION_DENIED"


async def test_upstream_errors_are_normalised(target: Target, fake: GeminiState) -> None:
    fake.fail_next(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED")
    status, error = await call("chat", chat(user("hi")), target)
    assert status == 429
    assert error == {"error": {"message": "Resource has been exhausted (e.g. check quota).",
                               "type": "rate_limit_error", "param": None, "code": "RESOURCE_EXHAUSTED"}}

    status, error = await call("chat", {**chat(user("hi")), "model": "gemini-nope"}, target)
    assert status == 404 and error["error"]["type"] == "not_found_error"

    status, error = await call("chat", chat(user("hi"), temperature=5), target)
    assert status == 400 and error["error"]["type"] == "invalid_request_error"
    assert "temperature" in error["error"]["message"]


def test_non_json_error_bodies_are_still_openai_shaped() -> None:
    assert ADAPTER.error_body(502, b"<html>Bad Gateway</html>") == {
        "error": {"message": "<html>Bad Gateway</html>", "type": "server_error", "param": None, "code": None}}
