"""The Bedrock Converse adapter and SigV4 hook, driven against the strict fake Bedrock over a real socket.

Each test builds the upstream request with the adapter, signs it with the provider's auth hook (the
way the pipeline does, last), sends it with aiohttp, and translates the answer (streams fed in small
reads, so events straddle them). The fake checks each signature with botocore.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from modelport.errors import BadRequest, Forbidden
from modelport.providers.base import StepAnswer, Target, UpstreamRequest
from modelport.providers.bedrock.auth import SigV4Auth
from modelport.providers.bedrock.converse import ADAPTER
from modelport.sse import SSEParser
from tests.conftest import BEDROCK_KEY_ID, BEDROCK_SECRET
from tests.fakes.bedrock import BEDROCK, BedrockState, make_bedrock_app
from tests.fakes.server import FakeServer

KEY_ID, SECRET = BEDROCK_KEY_ID, BEDROCK_SECRET
CLAUDE, LLAMA = "anthropic.claude-3-5-sonnet-20241022-v2:0", "us.meta.llama3-2-11b-instruct-v1:0"
ROLE = "arn:aws:iam::123456789012:role/bedrock-caller"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


class AiohttpTransport:
    """The hook's transport for STS: plain aiohttp here (the gateway lends its own)."""

    async def fetch(self, request: UpstreamRequest, limit: int) -> StepAnswer:
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, request.url, headers=request.headers, data=request.body) as r:
                return StepAnswer(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())


@pytest.fixture(scope="module")
def server():
    with FakeServer(make_bedrock_app(KEY_ID, SECRET)) as running:
        yield running


@pytest.fixture
def fake(server: FakeServer) -> BedrockState:
    state = server.app[BEDROCK]
    state.reset()
    state.roles = {ROLE: "ext-42"}
    return state


def target_for(server: FakeServer, **settings: Any) -> Target:
    base = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET, "aws_region": "us-east-1",
            "aws_sts_endpoint": server.url}
    return Target("bedrock", server.url, settings={**base, **settings})


@pytest.fixture
def target(server: FakeServer, fake: BedrockState) -> Target:
    return target_for(server)


async def send(request: UpstreamRequest, target: Target, auth: SigV4Auth | None = None) -> aiohttp.ClientResponse:
    """As the gateway sends it (gateway/forward.py send_to_provider): the hook sees the URL as yarl will
    send it (``%3A`` back to ``:``, ``%2F`` kept), and that URL goes out byte for byte."""
    url = URL(request.url, encoded=False)
    request.url = str(url)
    await (auth or SigV4Auth()).authorize(request, target, AiohttpTransport())
    session = aiohttp.ClientSession()
    response = await session.request(request.method, url, headers=request.headers, data=request.body)
    response._test_session = session  # closed by the caller via close()
    return response


async def call(body: dict[str, Any], target: Target, auth: SigV4Auth | None = None) -> tuple[int, dict[str, Any]]:
    response = await send(ADAPTER.build_request("chat", body, target, False), target, auth)
    try:
        raw = await response.read()
    finally:
        await response._test_session.close()
    if response.status >= 300:
        return response.status, ADAPTER.error_body(response.status, raw)
    return response.status, orjson.loads(ADAPTER.parse_response("chat", response.status, raw, body))


async def stream(body: dict[str, Any], target: Target) -> tuple[list[Any], Any]:
    body = {**body, "stream": True}
    translator = ADAPTER.stream_translator("chat", body)
    response = await send(ADAPTER.build_request("chat", body, target, False), target)
    out = b""
    try:
        assert response.status == 200, await response.text()
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        async for piece in response.content.iter_chunked(7):
            out += translator.feed(piece)
    finally:
        await response._test_session.close()
    out += translator.finish()
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in SSEParser().feed(out)], translator.usage


def chat(*messages: dict[str, Any], model: str = CLAUDE, **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": list(messages), **params}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def test_chat_is_a_signed_converse_call(target: Target, fake: BedrockState) -> None:
    body = chat({"role": "system", "content": "Be terse."}, user("Hello there"), max_tokens=50, temperature=0.5,
                top_p=0.9, stop=["NEVER"])
    status, reply = await call(body, target)

    assert status == 200, reply
    sent = fake.requests[-1]
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20241022-v2:0/converse"  # yarl sends %3A as ":"
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert sent.body == {"messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
                         "system": [{"text": "Be terse."}],
                         "inferenceConfig": {"temperature": 0.5, "topP": 0.9, "maxTokens": 50, "stopSequences": ["NEVER"]}}
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "You said: Hello there"}
    assert reply["choices"][0]["finish_reason"] == "stop" and reply["model"] == CLAUDE
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


async def test_limits_and_stop_sequences_become_finish_reasons(target: Target) -> None:
    _, cut = await call(chat(user("one two three four"), max_tokens=2), target)
    _, stopped = await call(chat(user("one two three four"), stop="three"), target)
    assert (cut["choices"][0]["message"]["content"], cut["choices"][0]["finish_reason"]) == ("You said:", "length")
    assert (stopped["choices"][0]["message"]["content"], stopped["choices"][0]["finish_reason"]) == \
        ("You said: one two", "stop")


async def test_tool_round_trip(target: Target, fake: BedrockState) -> None:
    status, first = await call(chat(user("Weather in Paris?"), tools=[WEATHER], tool_choice="required"), target)
    assert status == 200, first
    assert fake.requests[-1].body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                                "inputSchema": {"json": WEATHER["function"]["parameters"]}}}],
        "toolChoice": {"any": {}}}
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    [tool_call] = message["tool_calls"]
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}

    history = [user("Weather in Paris?"), message,
               {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp_c": 21}'},
               {"role": "tool", "tool_call_id": tool_call["id"], "content": "and sunny"}]
    status, second = await call(chat(*history, tools=[WEATHER]), target)

    assert status == 200, second
    turns = fake.requests[-1].body["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]  # the two results share one turn
    assert turns[2]["content"] == [
        {"toolResult": {"toolUseId": tool_call["id"], "content": [{"json": {"temp_c": 21}}]}},
        {"toolResult": {"toolUseId": tool_call["id"], "content": [{"text": "and sunny"}]}}]
    assert second["choices"][0]["message"]["content"].startswith(f'Results: {tool_call["id"]}=[{{"json":')


async def test_tool_choice_none_is_honoured_or_refused(target: Target, fake: BedrockState) -> None:
    status, reply = await call(chat(user("Weather?"), tools=[WEATHER], tool_choice="none"), target)
    assert status == 200 and "toolConfig" not in fake.requests[-1].body
    assert reply["choices"][0]["message"]["content"] == "You said: Weather?"
    history = [user("Weather?"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]
    with pytest.raises(ValueError, match="tool_choice 'none'"):
        ADAPTER.build_request("chat", chat(*history, tools=[WEATHER], tool_choice="none"), target, False)


async def test_models_without_forced_tools_get_bedrocks_own_refusal(target: Target) -> None:
    status, error = await call(chat(user("hi"), model=LLAMA, tools=[WEATHER], tool_choice="required"), target)
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["code"] == "ValidationException"
    assert "toolChoice.any" in error["error"]["message"]


async def test_images_go_inline(target: Target, fake: BedrockState) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]
    status, reply = await call(chat(user(content), model="amazon.nova-pro-v1:0"), target)
    assert status == 200, reply
    assert fake.requests[-1].body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": png}}}
    assert reply["choices"][0]["message"]["content"] == "You said: What is this? (+1 images)"
    with pytest.raises(ValueError, match="data: URLs or s3://"):
        ADAPTER.build_request("chat", chat(user([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])), target, False)


async def test_stream_text_and_usage(target: Target, fake: BedrockState) -> None:
    chunks, usage = await stream(chat(user("stream me please"), stream_options={"include_usage": True}), target)

    assert fake.requests[-1].path.endswith("/converse-stream")
    assert chunks[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text == "You said: stream me please"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]][-1] == "stop"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == usage == \
        {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert len({c["id"] for c in chunks[:-1]}) == 1


async def test_stream_tool_call(target: Target) -> None:
    chunks, _ = await stream(chat(user("Weather?"), tools=[WEATHER]), target)
    calls = [call for c in chunks[:-1] for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["id"].startswith("tooluse_") and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert {call["index"] for call in calls} == {0}
    assert json.loads("".join(call["function"]["arguments"] for call in calls)) == {"city": "Paris"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_an_exception_in_the_stream_ends_it_in_openai_shape(target: Target, fake: BedrockState) -> None:
    fake.stream_error_after = 3
    chunks, _ = await stream(chat(user("one two three four")), target)
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["error"]["code"] == "throttlingException" and chunks[-2]["error"]["type"] == "rate_limit_error"


async def test_wrong_secret_is_refused_as_aws_refuses_it(server: FakeServer, fake: BedrockState) -> None:
    status, error = await call(chat(user("hi")), target_for(server, aws_secret_access_key="wrong" + SECRET[5:]))
    assert status == 403 and error["error"]["type"] == "permission_error"
    assert error["error"]["message"].startswith("The request signature we calculated does not match")
    assert SECRET[5:] not in json.dumps(error)


async def test_a_stale_date_and_a_missing_session_token_are_refused(server: FakeServer, fake: BedrockState) -> None:
    fake.account.clock_offset = 600
    status, error = await call(chat(user("hi")), target_for(server))
    assert status == 403 and error["error"]["message"].startswith("Signature expired")
    fake.account.clock_offset = 0
    status, error = await call(chat(user("hi")), target_for(server, aws_session_token="not-issued"))
    assert status == 403 and error["error"]["message"] == "The security token included in the request is invalid."


async def test_assumed_role_keys_sign_and_are_reused(server: FakeServer, fake: BedrockState) -> None:
    auth, target = SigV4Auth(), target_for(server, aws_role_arn=ROLE, aws_external_id="ext-42")
    for _ in range(2):
        status, reply = await call(chat(user("hi")), target, auth)
        assert status == 200, reply
    assert len(fake.sts_calls) == 1
    assert fake.sts_calls[0]["RoleArn"] == ROLE and fake.sts_calls[0]["ExternalId"] == "ext-42"
    signed_with = fake.requests[-1].headers["authorization"].split("Credential=")[1].split("/")[0]
    assert signed_with.startswith("ASIA") and "x-amz-security-token" in fake.requests[-1].headers

    fake.sts_lifetime = 120  # inside the refresh margin: each request takes fresh keys
    fresh = SigV4Auth()
    await call(chat(user("hi")), target, fresh)
    await call(chat(user("hi")), target, fresh)
    assert len(fake.sts_calls) == 3


async def test_a_refused_role_is_a_clear_403(server: FakeServer, fake: BedrockState) -> None:
    request = ADAPTER.build_request("chat", chat(user("hi")), target_for(server), False)
    with pytest.raises(Forbidden, match="AccessDenied") as refused:
        await SigV4Auth().authorize(request, target_for(server, aws_role_arn=ROLE, aws_external_id="wrong"),
                                    AiohttpTransport())
    assert SECRET not in refused.value.message


async def test_missing_region_names_the_setting(server: FakeServer) -> None:
    target = target_for(server)
    target.settings.pop("aws_region")  # type: ignore[attr-defined]
    with pytest.raises(BadRequest, match="aws_region"):
        await SigV4Auth().authorize(ADAPTER.build_request("chat", chat(user("hi")), target, False), target, AiohttpTransport())


def test_model_id_stays_in_its_path_segment(target: Target) -> None:
    request = ADAPTER.build_request("chat", chat(user("hi"), model="arn:aws:bedrock:us-east-1:123456789012:"
                                                 "inference-profile/us.amazon.nova-pro-v1:0"), target, False)
    assert request.url.endswith("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
                                "%2Fus.amazon.nova-pro-v1%3A0/converse")
    for model in ("../x", "", None, "a b"):
        with pytest.raises(ValueError, match="Invalid model id"):
            ADAPTER.build_request("chat", chat(user("hi"), model=model), target, False)
