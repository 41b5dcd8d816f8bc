"""The SDK on the wire: what it sends, what it gives back, and when it sends a request again.

A recording HTTP server stands in for the gateway: it keeps every request and answers from a
script (per path; the last scripted answer repeats).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web

from modelport.client import (
    APIConnectionError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AsyncModelPort,
    AsyncStream,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    ModelPort,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    Response,
    ServerSentEvent,
    Stream,
    UnprocessableEntityError,
    create_headers,
)
from tests.fakes.server import FakeServer

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class RecordingUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: dict[str, list[Reply]] = {}
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    def on(self, path: str, *replies: Reply) -> None:
        self.script[path] = list(replies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                {name.lower(): value for name, value in request.headers.items()},
                await request.read(),
            )
        )
        replies = self.script.get(request.path) or [json_reply({"ok": True})]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return await reply(request)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


def json_reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return reply


def text_reply(text: str, status: int = 200, content_type: str = "text/plain", headers=None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, status=status, content_type=content_type, headers=headers)

    return reply


def bytes_reply(body: bytes, content_type: str) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return reply


def sse_reply(raw: str, headers: dict[str, str] | None = None) -> Reply:
    """Send an event stream in small pieces, so events arrive split across reads."""

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **(headers or {})})
        await response.prepare(request)
        data = raw.encode()
        for start in range(0, len(data), 7):
            await response.write(data[start : start + 7])
        await response.write_eof()
        return response

    return reply


async def drop_connection(request: web.Request) -> web.StreamResponse:
    request.transport.close()  # type: ignore[union-attr]
    return web.Response(text="never sent")


async def slow_reply(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(1.0)
    return web.json_response({"late": True})


REFUSED_BY_GATEWAY = {"x-portkey-gateway-exception": "true"}

REPLICATE_STREAM = (
    "event: output\nid: 1690212292:0\ndata: Once upon\n\n"
    "event: output\nid: 1690212292:1\ndata:  a time\n\n"
    ": keep-alive comment\n\n"
    "event: output\nid: 1690212292:2\ndata: line one\ndata: line two\n\n"
    "event: done\ndata: {}\n\n"
)


@pytest.fixture
def upstream():
    recording = RecordingUpstream()
    server = FakeServer(recording.app).start()
    recording.url = server.url  # type: ignore[attr-defined]
    yield recording
    server.stop()


@pytest.fixture
def client(upstream):
    with ModelPort(api_key="mp-test", provider="@replicate-prod", base_url=f"{upstream.url}/v1") as client:
        yield client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- what is sent ---------------------------------------------------------------------------


def test_client_options_arrive_as_portkey_headers(upstream):
    with ModelPort(
        api_key="mp-test",
        provider="@replicate-prod",
        config="pc-fallback-1",
        trace_id="run-7",
        metadata={"team": "search"},
        authorization="r8_test_token",
        base_url=f"{upstream.url}/v1",
    ) as client:
        client.post("/predictions", version="v1", input={})
    sent = upstream.requests[0].headers
    assert {name: value for name, value in sent.items() if name.startswith("x-portkey-")} == {
        "x-portkey-api-key": "mp-test",
        "x-portkey-provider": "@replicate-prod",
        "x-portkey-config": "pc-fallback-1",
        "x-portkey-trace-id": "run-7",
        "x-portkey-metadata": '{"team": "search"}',
    }
    assert sent["authorization"] == "Bearer r8_test_token"
    assert sent["content-type"] == "application/json"


def test_post_sends_keyword_arguments_as_the_json_body(client, upstream):
    client.post("/predictions", version="5c7d5dc6", input={"prompt": "a lighthouse"}, url="kept")
    recorded = upstream.requests[0]
    assert (recorded.method, recorded.path) == ("POST", "/v1/predictions")
    # `url` is positional-only, so a body may have a `url` field of its own.
    assert recorded.json() == {"version": "5c7d5dc6", "input": {"prompt": "a lighthouse"}, "url": "kept"}


def test_post_accepts_data_as_the_body(client, upstream):
    client.post("predictions", data={"version": "5c7d5dc6", "input": {"n": 1}})
    client.post("/predictions", data=[{"batch": 1}, {"batch": 2}])
    assert upstream.paths() == ["POST /v1/predictions", "POST /v1/predictions"]
    assert upstream.requests[0].json() == {"version": "5c7d5dc6", "input": {"n": 1}}
    assert upstream.requests[1].json() == [{"batch": 1}, {"batch": 2}]


def test_post_refuses_data_and_keywords_together(client, upstream):
    with pytest.raises(TypeError):
        client.post("/predictions", data={"a": 1}, b=2)
    assert upstream.requests == []


def test_stream_true_asks_the_server_for_a_stream(client, upstream):
    upstream.on("/v1/chat/completions", sse_reply("data: [DONE]\n\n"))
    client.post("/chat/completions", model="gpt-4o-mini", messages=[], stream=True)
    assert upstream.requests[0].json() == {"model": "gpt-4o-mini", "messages": [], "stream": True}


def test_per_call_headers_override_client_headers(client, upstream):
    client.post("/predictions", headers={"X-Portkey-Trace-Id": "per-call", "Prefer": "wait=5"}, input={})
    sent = upstream.requests[0].headers
    assert sent["x-portkey-trace-id"] == "per-call"
    assert sent["prefer"] == "wait=5"
    assert sent["x-portkey-api-key"] == "mp-test"


def test_with_options_sends_changed_headers_through_the_same_pool(client, upstream):
    traced = client.with_options(trace_id="run-9")
    traced.get("/predictions/abc")
    client.get("/predictions/abc")
    assert upstream.requests[0].headers["x-portkey-trace-id"] == "run-9"
    assert "x-portkey-trace-id" not in upstream.requests[1].headers
    traced.close()  # a copy does not own the pool: the original keeps working
    client.get("/predictions/abc")
    assert len(upstream.requests) == 3


def test_base_url_comes_from_the_environment(upstream, monkeypatch):
    monkeypatch.setenv("MODELPORT_BASE_URL", f"{upstream.url}/v1")
    with ModelPort(api_key="mp-test") as client:
        client.get("/models")
    assert upstream.paths() == ["GET /v1/models"]


def test_get_delete_and_put_reach_their_paths(client, upstream):
    client.get("/predictions", params={"cursor": "abc"})
    client.put("/deployments/acme/sd", {"min_instances": 1})
    client.delete("/files/f-1")
    client.request("QUERY", "/predictions", body={"status": "succeeded"})
    assert upstream.paths() == [
        "GET /v1/predictions",
        "PUT /v1/deployments/acme/sd",
        "DELETE /v1/files/f-1",
        "QUERY /v1/predictions",
    ]
    assert upstream.requests[0].query == {"cursor": "abc"}
    assert upstream.requests[1].json() == {"min_instances": 1}
    assert upstream.requests[3].json() == {"status": "succeeded"}


def test_credentials_are_not_sent_to_another_host(client, upstream):
    elsewhere = RecordingUpstream()
    with FakeServer(elsewhere.app) as other:
        client.get(f"{other.url}/file.png")
        client.get(f"{upstream.url}/v1/predictions/abc")  # an absolute URL on the gateway is fine
    assert "x-portkey-api-key" not in elsewhere.requests[0].headers
    assert upstream.requests[0].headers["x-portkey-api-key"] == "mp-test"


# --- what comes back ------------------------------------------------------------------------


def test_json_object_fields_are_readable_by_key_and_attribute(client, upstream):
    prediction = {
        "id": "ufawqhfynnddngldkgtslldrkq",
        "status": "starting",
        "urls": {"get": "http://gw/v1/predictions/u", "cancel": "http://gw/v1/predictions/u/cancel"},
    }
    upstream.on("/v1/predictions", json_reply(prediction, status=201))
    response = client.post("/predictions", version="v", input={})
    assert isinstance(response, Response)
    assert response.status_code == 201
    assert response.json() == prediction
    assert response["id"] == "ufawqhfynnddngldkgtslldrkq"
    assert response.get("missing", "default") == "default"
    assert "status" in response
    assert response.status == "starting"
    assert response.urls.get == "http://gw/v1/predictions/u"


def test_json_array_is_returned(client, upstream):
    upstream.on("/v1/items", json_reply([{"id": 1}, {"id": 2}]))
    response = client.get("/items")
    assert response.json() == [{"id": 1}, {"id": 2}]
    assert response[1] == {"id": 2}


def test_non_json_body_is_returned(client, upstream):
    upstream.on("/v1/health", text_reply("ok"))
    upstream.on("/v1/image.png", bytes_reply(b"\x89PNG\r\n\x1a\n", "image/png"))
    assert client.get("/health").text == "ok"
    image = client.get("/image.png")
    assert image.content == b"\x89PNG\r\n\x1a\n"
    assert image.headers["content-type"] == "image/png"
    with pytest.raises(ValueError):
        image.json()


def test_empty_body_reads_as_none(client, upstream):
    async def no_content(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    upstream.on("/v1/files/f-1", no_content)
    response = client.delete("/files/f-1")
    assert response.status_code == 204
    assert response.json() is None


def test_portkey_response_headers_are_exposed(client, upstream):
    upstream.on(
        "/v1/chat/completions",
        json_reply({"id": "c"}, headers={"x-portkey-trace-id": "tr-1", "x-portkey-cache-status": "MISS"}),
    )
    response = client.post("/chat/completions", model="m", messages=[])
    assert response.trace_id == "tr-1"
    assert response.portkey_headers() == {"trace-id": "tr-1", "cache-status": "MISS"}


def test_named_events_are_delivered(client, upstream):
    upstream.on("/v1/predictions/abc/stream", sse_reply(REPLICATE_STREAM, {"x-portkey-trace-id": "tr-2"}))
    with client.get("/predictions/abc/stream", headers={"Accept": "text/event-stream"}) as stream:
        assert isinstance(stream, Stream)
        assert stream.trace_id == "tr-2"
        events = list(stream)
    assert events == [
        ServerSentEvent("output", "Once upon", "1690212292:0"),
        ServerSentEvent("output", " a time", "1690212292:1"),
        ServerSentEvent("output", "line one\nline two", "1690212292:2"),
        ServerSentEvent("done", "{}"),
    ]
    assert events[-1].json() == {}


def test_unnamed_events_are_delivered_with_json(client, upstream):
    upstream.on("/v1/chat/completions", sse_reply('data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n'))
    stream = client.post("/chat/completions", model="m", messages=[], stream=True)
    events = list(stream)
    assert [e.event for e in events] == ["message", "message", "message"]
    assert [e.json() for e in events[:2]] == [{"n": 1}, {"n": 2}]
    assert events[2].data == "[DONE]"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (504, GatewayTimeoutError),
        (408, APIStatusError),
        (446, APIStatusError),
    ],
)
def test_error_statuses_raise_typed_errors(client, upstream, status, error_type):
    body = {"error": {"message": "it went wrong", "type": "x", "code": None}}
    upstream.on("/v1/chat/completions", json_reply(body, status=status, headers={"x-portkey-trace-id": "tr-3"}))
    with pytest.raises(error_type) as caught:
        client.with_options(max_retries=0).post("/chat/completions", model="m", messages=[])
    error = caught.value
    assert type(error) is error_type
    assert (error.status_code, error.message, error.body) == (status, "it went wrong", body)
    assert error.trace_id == "tr-3"
    assert error.gateway_exception is False


def test_error_message_comes_from_problem_details_or_text(client, upstream):
    problem = {"title": "Invalid version", "detail": "The specified version does not exist", "status": 422}
    upstream.on("/v1/predictions", json_reply(problem, status=422))
    upstream.on("/v1/boom", text_reply("upstream fetch failed", status=500))
    with pytest.raises(UnprocessableEntityError, match="does not exist"):
        client.post("/predictions", version="nope", input={})
    with pytest.raises(InternalServerError) as caught:
        client.post("/boom")
    assert caught.value.message == "upstream fetch failed"
    assert caught.value.body == "upstream fetch failed"


def test_gateway_errors_are_marked(client, upstream):
    body = {"error": {"message": "Invalid provider passed", "type": "invalid_request_error"}}
    upstream.on("/v1/chat/completions", json_reply(body, status=400, headers=REFUSED_BY_GATEWAY))
    with pytest.raises(BadRequestError) as caught:
        client.post("/chat/completions", model="m", messages=[])
    assert caught.value.gateway_exception is True


# --- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_is_not_retried_on_upstream_errors(client, upstream, status):
    upstream.on("/v1/predictions", json_reply({"error": "upstream"}, status=status), json_reply({"id": "p"}))
    with pytest.raises(InternalServerError):
        client.post("/predictions", version="v", input={})
    assert len(upstream.requests) == 1


def test_post_is_retried_when_the_gateway_refused_it(client, upstream):
    upstream.on(
        "/v1/predictions",
        json_reply({"error": {"message": "rate limited"}}, 429, {**REFUSED_BY_GATEWAY, "Retry-After": "0"}),
        json_reply({"error": {"message": "draining"}}, 503, {**REFUSED_BY_GATEWAY, "Retry-After": "0"}),
        json_reply({"id": "p"}, 201),
    )
    assert client.post("/predictions", version="v", input={})["id"] == "p"
    assert len(upstream.requests) == 3


def test_post_is_not_retried_on_an_upstream_rate_limit(client, upstream):
    upstream.on("/v1/predictions", json_reply({"detail": "throttled"}, 429, {"Retry-After": "0"}))
    with pytest.raises(RateLimitError):
        client.post("/predictions", version="v", input={})
    assert len(upstream.requests) == 1


def test_post_is_not_retried_after_a_timeout(upstream):
    upstream.on("/v1/predictions", slow_reply)
    with ModelPort(api_key="mp-test", base_url=f"{upstream.url}/v1", timeout=0.3) as client:
        with pytest.raises(APITimeoutError):
            client.post("/predictions", version="v", input={})
        time.sleep(0.9)  # long enough for a (wrong) retry to have arrived
    assert len(upstream.requests) == 1


def test_post_is_not_retried_after_the_connection_drops(client, upstream):
    upstream.on("/v1/predictions", drop_connection, json_reply({"id": "p"}))
    with pytest.raises(APIConnectionError) as caught:
        client.post("/predictions", version="v", input={})
    assert not isinstance(caught.value, APITimeoutError)
    assert len(upstream.requests) == 1


def test_get_is_retried_after_the_connection_drops(client, upstream):
    upstream.on("/v1/predictions/abc", drop_connection, json_reply({"id": "abc"}))
    assert client.get("/predictions/abc")["id"] == "abc"
    assert len(upstream.requests) == 2


def test_post_is_retried_when_the_connection_was_refused():
    recording = RecordingUpstream()
    recording.on("/v1/predictions", json_reply({"id": "p"}, 201))
    port = free_port()
    late = FakeServer(recording.app, port=port)
    opening = threading.Timer(0.2, late.start)  # nothing listens for the first attempt
    opening.start()
    try:
        with ModelPort(api_key="mp-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=4) as client:
            assert client.post("/predictions", version="v", input={})["id"] == "p"
    finally:
        opening.join()
        late.stop()
    assert len(recording.requests) == 1


def test_connection_refused_raises_after_the_last_retry():
    with ModelPort(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            client.get("/models")


def test_get_waits_for_retry_after(client, upstream):
    upstream.on(
        "/v1/predictions/abc",
        json_reply({"detail": "throttled"}, 429, {"Retry-After": "1"}),
        json_reply({"id": "abc", "status": "succeeded"}),
    )
    started = time.monotonic()
    assert client.get("/predictions/abc")["status"] == "succeeded"
    assert time.monotonic() - started >= 0.95
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_get_retries_stop_after_max_retries(client, upstream, status):
    upstream.on("/v1/models", json_reply({"error": "busy"}, status, {"Retry-After": "0"}))
    with pytest.raises(APIStatusError) as caught:
        client.get("/models")
    assert caught.value.status_code == status
    assert len(upstream.requests) == 3  # the first try and max_retries=2 more


def test_get_is_not_retried_on_other_errors(client, upstream):
    upstream.on("/v1/models", json_reply({"error": "nope"}, 500))
    with pytest.raises(InternalServerError):
        client.get("/models")
    assert len(upstream.requests) == 1


# --- OpenAI-style resources -----------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}

CHUNKS = (
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
    'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)


def test_chat_completion_reads_by_attribute(client, upstream):
    upstream.on("/v1/chat/completions", json_reply(COMPLETION))
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-portkey-trace-id": "chat-1"},
        extra_body={"user": "ada"},
    )
    assert completion.choices[0].message.content == "Hello!"
    assert completion.usage.total_tokens == 5
    assert completion.to_dict() == COMPLETION
    # Absent optional fields read as None, as in the OpenAI SDK; `in` and [...] tell them apart.
    assert completion.choices[0].message.tool_calls is None
    assert "tool_calls" not in completion.choices[0].message
    with pytest.raises(KeyError):
        completion["system_fingerprint"]
    recorded = upstream.requests[0]
    assert recorded.json() == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "user": "ada"}
    assert recorded.headers["x-portkey-trace-id"] == "chat-1"


def test_chat_completion_stream_yields_chunks_until_done(client, upstream):
    upstream.on("/v1/chat/completions", sse_reply(CHUNKS + 'data: {"after": "done"}\n\n'))
    chunks = client.chat.completions.create(model="m", messages=[], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello"
    assert upstream.requests[0].json()["stream"] is True


def test_error_inside_a_stream_raises(client, upstream):
    broken = 'data: {"id":"c","choices":[]}\n\ndata: {"error":{"message":"provider overloaded"}}\n\n'
    upstream.on("/v1/chat/completions", sse_reply(broken))
    chunks = iter(client.chat.completions.create(model="m", messages=[], stream=True))
    assert next(chunks).id == "c"
    with pytest.raises(APIStreamError, match="provider overloaded"):
        next(chunks)


def test_anthropic_messages_stream_named_events(client, upstream):
    events = (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    upstream.on("/v1/messages", sse_reply(events))
    chunks = list(client.messages.create(model="claude", max_tokens=10, messages=[], stream=True))
    assert [chunk.type for chunk in chunks] == ["message_start", "content_block_delta", "message_stop"]
    assert chunks[1].delta.text == "Hi"


def test_completions_embeddings_and_models(client, upstream):
    upstream.on("/v1/completions", json_reply({"choices": [{"text": "done"}]}))
    upstream.on("/v1/embeddings", json_reply({"data": [{"embedding": [0.1, 0.2], "index": 0}]}))
    upstream.on("/v1/models", json_reply({"object": "list", "data": [{"id": "gpt-4o-mini"}]}))
    assert client.completions.create(model="m", prompt="x").choices[0].text == "done"
    assert client.embeddings.create(model="e", input="x").data[0].embedding == [0.1, 0.2]
    assert [model.id for model in client.models.list().data] == ["gpt-4o-mini"]
    assert upstream.paths() == ["POST /v1/completions", "POST /v1/embeddings", "GET /v1/models"]


# --- the async client -----------------------------------------------------------------------


async def test_async_client_sends_the_same_request(upstream):
    async with AsyncModelPort(api_key="mp-test", provider="@replicate-prod", base_url=f"{upstream.url}/v1") as client:
        response = await client.post("/predictions", version="v", input={"n": 1}, headers={"Prefer": "wait"})
    assert response.json() == {"ok": True}
    recorded = upstream.requests[0]
    assert recorded.json() == {"version": "v", "input": {"n": 1}}
    assert recorded.headers["x-portkey-provider"] == "@replicate-prod"
    assert recorded.headers["prefer"] == "wait"


async def test_async_stream_delivers_named_events(upstream):
    upstream.on("/v1/predictions/abc/stream", sse_reply(REPLICATE_STREAM))
    async with AsyncModelPort(base_url=f"{upstream.url}/v1") as client:
        stream = await client.get("/predictions/abc/stream")
        assert isinstance(stream, AsyncStream)
        events = [event async for event in stream]
    assert [event.event for event in events] == ["output", "output", "output", "done"]


async def test_async_retry_rules_match_the_sync_client(upstream):
    refused = json_reply({"error": "x"}, 503, {**REFUSED_BY_GATEWAY, "Retry-After": "0"})
    upstream.on("/v1/predictions", refused, json_reply({"id": "p"}))
    upstream.on("/v1/chat/completions", json_reply({"error": "upstream"}, 502))
    async with AsyncModelPort(base_url=f"{upstream.url}/v1") as client:
        assert (await client.post("/predictions", input={}))["id"] == "p"
        with pytest.raises(InternalServerError):
            await client.post("/chat/completions", model="m", messages=[])
    assert upstream.paths() == ["POST /v1/predictions", "POST /v1/predictions", "POST /v1/chat/completions"]


async def test_async_chat_completion_stream(upstream):
    upstream.on("/v1/chat/completions", sse_reply(CHUNKS))
    async with AsyncModelPort(base_url=f"{upstream.url}/v1") as client:
        chunks = await client.chat.completions.create(model="m", messages=[], stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in chunks])
        models = await client.models.list()
    assert text == "Hello"
    assert models.ok is True


async def test_async_post_is_not_retried_after_a_timeout(upstream):
    upstream.on("/v1/predictions", slow_reply)
    async with AsyncModelPort(base_url=f"{upstream.url}/v1", timeout=0.3) as client:
        with pytest.raises(APITimeoutError):
            await client.post("/predictions", input={})
    await asyncio.sleep(0.9)
    assert len(upstream.requests) == 1


# --- the OpenAI SDK with ModelPort's headers (the seed snippet) ------------------------------


def test_openai_sdk_reaches_the_gateway_with_create_headers(upstream):
    openai = pytest.importorskip("openai")
    upstream.on("/v1/predictions", json_reply({"id": "p", "status": "starting"}, 201))
    client = openai.OpenAI(
        api_key="unused",
        base_url=f"{upstream.url}/v1",
        default_headers=create_headers(api_key="mp-test", provider="@replicate-prod"),
        max_retries=0,
    )
    response = client.post("/predictions", cast_to=httpx.Response, body={"version": "v", "input": {"prompt": "hi"}})
    assert response.status_code == 201
    assert response.json()["id"] == "p"
    recorded = upstream.requests[0]
    assert (recorded.method, recorded.path) == ("POST", "/v1/predictions")
    assert recorded.headers["x-portkey-api-key"] == "mp-test"
    assert recorded.headers["x-portkey-provider"] == "@replicate-prod"
    assert recorded.json() == {"version": "v", "input": {"prompt": "hi"}}
