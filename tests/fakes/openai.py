"""A fake OpenAI API, as strict as the real one about what the gateway must get right.

Serves ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/completions``, ``POST /v1/embeddings``,
``GET /v1/models[/{id}]``, the Responses API (``/v1/responses``, in openai_responses.py) and the audio API
(``/v1/audio/*``, in openai_audio.py). Formats follow the API reference (platform.openai.com/docs/api-reference:
chat/create, chat-streaming, completions, embeddings, models) and error bodies the error-codes guide:
``{"error": {"message", "type", "param", "code"}}``.

Replies are deterministic so tests can assert them: the assistant answers ``"Echo: <last user text>"``;
it calls a tool when the request offers tools and the last user message names one (or ``tool_choice``
forces it); after a tool result it answers ``"Tool said: <result>"``. One token is one word.

``UpstreamState`` (knobs + a record of what was received) is shared with the other fakes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini")
COMPLETION_MODELS = ("gpt-3.5-turbo-instruct",)
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
ROLES = ("system", "assistant", "user", "function", "tool", "developer")


# --- knobs and record, shared by every fake upstream -------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw bytes when the body is not JSON, or None when empty


@dataclass(slots=True)
class ScriptedFailure:
    status: int
    remaining: int
    retry_after: float | None
    path: str | None


@dataclass
class UpstreamState:
    """What tests script (failures, delays) and inspect (received requests) on a fake upstream."""

    requests: list[RecordedRequest] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering any request
    chunk_delay: float = 0.0  # seconds between streamed events
    cached_tokens: int = 0  # reported as usage.prompt_tokens_details.cached_tokens (OpenAI fake)
    failures: list[ScriptedFailure] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def fail_next(self, count: int, status: int, *, retry_after: float | None = None, path: str | None = None) -> None:
        """Answer the next ``count`` requests (to ``path`` only, if given) with ``status``."""
        self.failures.append(ScriptedFailure(status, count, retry_after, path))

    def take_failure(self, path: str) -> ScriptedFailure | None:
        for failure in self.failures:
            if failure.remaining > 0 and failure.path in (None, path):
                failure.remaining -= 1
                return failure
        return None

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.delay = self.chunk_delay = 0.0
        self.cached_tokens = 0


ErrorFactory = Callable[[int, str], web.Response]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def upstream_knobs(state: UpstreamState, scripted_error: ErrorFactory) -> Any:
    """Middleware: record the request, wait ``state.delay``, then answer a scripted failure if due."""

    @web.middleware
    async def knobs(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw
        headers = {name.lower(): value for name, value in request.headers.items()}
        state.requests.append(RecordedRequest(request.method, request.path, dict(request.query), headers, body))
        if state.delay:
            await asyncio.sleep(state.delay)
        failure = state.take_failure(request.path)
        if failure is not None:
            response = scripted_error(failure.status, "Scripted failure from the fake upstream.")
            if failure.retry_after is not None:
                response.headers["retry-after"] = f"{failure.retry_after:g}"
            return response
        return await handler(request)

    return knobs


async def json_body(request: web.Request) -> Any:
    """The parsed JSON body, or None when the body is empty or not JSON (aiohttp caches the bytes)."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


def expose_state(app: web.Application, name: str, state: UpstreamState) -> None:
    """``app[name] = state``: tests reach the state by a plain string key, so silence aiohttp's AppKey hint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getattr(web, "NotAppKeyWarning", UserWarning))
        app[name] = state


def word_tokens(text: str) -> int:
    """The fakes' tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def stream_pieces(text: str) -> list[str]:
    """Split text into word-sized deltas that concatenate back to it exactly."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Deterministic arguments that satisfy a simple JSON schema (required properties only, if listed)."""
    properties = schema.get("properties") or {}
    names = schema.get("required") or list(properties)
    return {name: _example_value(properties.get(name) or {}) for name in names}


def _example_value(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": example_arguments(schema)}.get(
        kind, "example"
    )


# --- OpenAI wire format -------------------------------------------------------------------------


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.response = openai_error(status, message, type, param, code)


def openai_error(status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return web.json_response(body, status=status, dumps=lambda v: orjson.dumps(v).decode())


def _scripted_openai_error(status: int, message: str) -> web.Response:
    # Bodies as the real API sends them for these statuses (platform.openai.com/docs/guides/error-codes).
    if status == 429:
        return openai_error(429, "Rate limit reached for requests.", "requests", None, "rate_limit_exceeded")
    if status >= 500:
        return openai_error(status, "The server had an error while processing your request.", "server_error")
    return openai_error(status, message)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def make_openai_app(api_key: str = "sk-test-openai") -> web.Application:
    """The fake OpenAI API; its ``UpstreamState`` is ``app["openai"]``."""
    state = UpstreamState()

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if key != api_key:
            return openai_error(401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}.",
                                code="invalid_api_key")
        uploads = request.content_type.startswith("multipart/form-data") and request.path.startswith("/v1/audio/")
        if request.method == "POST" and not uploads and not isinstance(await json_body(request), dict):
            return openai_error(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                     "you aren't using your HTTP library correctly.)")
        try:
            return await handler(request)
        except OpenAIError as error:
            return error.response

    async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"

    # Audio uploads may be 25 MB (platform.openai.com/docs/guides/speech-to-text); aiohttp's default is 1 MiB.
    app = web.Application(middlewares=[upstream_knobs(state, _scripted_openai_error), errors_and_auth],
                          client_max_size=25 * 1024 * 1024)
    expose_state(app, "openai", state)
    app.on_response_prepare.append(add_request_id)

    async def chat_route(request: web.Request) -> web.StreamResponse:
        return await chat_completions(request, state)

    async def completions_route(request: web.Request) -> web.StreamResponse:
        return await completions(request, state)

    app.router.add_post("/v1/chat/completions", chat_route)
    app.router.add_post("/v1/completions", completions_route)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    from tests.fakes.openai_responses import add_responses_routes  # it builds on this module

    add_responses_routes(app, state)
    from tests.fakes.openai_audio import add_audio_routes

    add_audio_routes(app, state)
    return app


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1715367049, "owned_by": "system"}


async def list_models(request: web.Request) -> web.Response:
    models = [*CHAT_MODELS, *COMPLETION_MODELS, *EMBEDDING_MODELS]
    return _json({"object": "list", "data": [_model_object(m) for m in models]})


async def retrieve_model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    _require_model({"model": model}, (*CHAT_MODELS, *COMPLETION_MODELS, *EMBEDDING_MODELS))
    return _json(_model_object(model))


def _require_model(body: dict[str, Any], served: tuple[str, ...] | dict[str, int]) -> str:
    model = body.get("model")
    if not model:
        raise OpenAIError(400, "you must provide a model parameter")
    known = (*CHAT_MODELS, *COMPLETION_MODELS, *EMBEDDING_MODELS)
    if model not in known:
        raise OpenAIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                          code="model_not_found")
    if model not in served:
        raise OpenAIError(404, f"The model `{model}` is not supported on this endpoint.", param="model")
    return model


# --- chat completions ---------------------------------------------------------------------------


@dataclass(slots=True)
class Choice:
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append(part.get("text", ""))
        elif part.get("type") == "image_url":
            parts.append("[image]")
    return " ".join(parts)


def _validate_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise OpenAIError(400, "Missing required parameter: 'messages'.", param="messages",
                          code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                               "but got an empty array instead.", param="messages", code="empty_array")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise OpenAIError(400, f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                   "'user', 'function', 'tool', and 'developer'.",
                              param=f"messages[{i}].role", code="invalid_value")
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                raise OpenAIError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                       "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
            pending.discard(message["tool_call_id"])
            continue
        if pending:
            raise OpenAIError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                                   "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                                   f"response messages: {', '.join(sorted(pending))}", param=f"messages.[{i}].role")
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            if part.get("type") == "image_url" and not (part.get("image_url") or {}).get("url"):
                raise OpenAIError(400, f"Missing required parameter: 'messages[{i}].content[].image_url.url'.",
                                  code="missing_required_parameter")
        pending = {call["id"] for call in message.get("tool_calls") or []} if role == "assistant" else set()
    return messages


def _offered_tool(body: dict[str, Any], last_text: str) -> dict[str, Any] | None:
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return next((t for t in tools if t["name"] == choice["function"]["name"]), None)
    named = next((t for t in tools if t["name"] in last_text), None)
    return named or (tools[0] if choice == "required" else None)


def _limit(text: str, body: dict[str, Any], default: int | None = None) -> tuple[str, str]:
    """Apply ``stop`` and ``max_tokens`` to a reply: (text, finish_reason)."""
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops or []:
        if stop in text:
            return text[: text.index(stop)], "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or default
    words = text.split(" ")
    if limit is not None and word_tokens(text) > limit:
        return " ".join(words[:limit]), "length"
    return text, "stop"


def _reply(body: dict[str, Any], messages: list[dict[str, Any]]) -> Choice:
    last = messages[-1]
    if last["role"] == "tool":
        text, finish = _limit(f"Tool said: {_text_of(last.get('content'))}", body)
        return Choice(text, None, finish)
    last_user = next((m for m in reversed(messages) if m["role"] == "user"), {})
    user_text = _text_of(last_user.get("content"))
    tool = _offered_tool(body, user_text)
    if tool is not None:
        arguments = orjson.dumps(example_arguments(tool.get("parameters") or {})).decode()
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": tool["name"], "arguments": arguments}}
        return Choice(None, [call], "tool_calls")
    response_format = (body.get("response_format") or {}).get("type")
    if response_format == "json_object":
        return Choice(orjson.dumps({"echo": user_text}).decode(), None, "stop")
    if response_format == "json_schema":
        schema = body["response_format"].get("json_schema", {}).get("schema") or {}
        return Choice(orjson.dumps(example_arguments(schema)).decode(), None, "stop")
    text, finish = _limit(f"Echo: {user_text}", body)
    return Choice(text, None, finish)


def _check_json_mode(body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    # The real API refuses JSON mode unless the prompt mentions JSON (guides/structured-outputs).
    json_mode = (body.get("response_format") or {}).get("type") == "json_object"
    if json_mode and not any("json" in _text_of(m.get("content")).lower() for m in messages):
        raise OpenAIError(400, "'messages' must contain the word 'json' in some form, to use "
                               "'response_format' of type 'json_object'.", param="messages")


def _usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": min(cached, prompt_tokens), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _choice_tokens(choice: Choice) -> int:
    if choice.tool_calls:
        return sum(word_tokens(c["function"]["arguments"]) + 1 for c in choice.tool_calls)
    return word_tokens(choice.content or "")


async def chat_completions(request: web.Request, state: UpstreamState) -> web.StreamResponse:
    body = await json_body(request)
    model = _require_model(body, CHAT_MODELS)
    messages = _validate_messages(body)
    _check_json_mode(body, messages)
    n = body.get("n") or 1
    choices = [_reply(body, messages) for _ in range(n)]
    prompt_tokens = sum(word_tokens(_text_of(m.get("content"))) + 1 for m in messages)
    usage = _usage(prompt_tokens, sum(_choice_tokens(c) for c in choices), state.cached_tokens)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:29]}", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_fake0001"}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream_chat(request, state, head, choices, usage if include_usage else None)
    return _json({**head, "object": "chat.completion", "service_tier": "default", "usage": usage, "choices": [
        {"index": i, "logprobs": None, "finish_reason": c.finish_reason,
         "message": {"role": "assistant", "content": c.content, "refusal": None, "annotations": [],
                     **({"tool_calls": c.tool_calls} if c.tool_calls else {})}}
        for i, c in enumerate(choices)]})


async def _open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache"})
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, state: UpstreamState, payload: Any) -> None:
    if state.chunk_delay:
        await asyncio.sleep(state.chunk_delay)
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    await response.write(b"data: " + data + b"\n\n")


async def _stream_chat(request: web.Request, state: UpstreamState, head: dict[str, Any],
                       choices: list[Choice], usage: dict[str, Any] | None) -> web.StreamResponse:
    response = await _open_sse(request)
    extra = {"usage": None} if usage is not None else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "object": "chat.completion.chunk", **extra, "choices": [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    for i, choice in enumerate(choices):
        if choice.tool_calls:
            for t, call in enumerate(choice.tool_calls):
                start = {"index": t, "id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": ""}}
                delta = {"role": "assistant", "content": None} if t == 0 else {}
                await _send(response, state, chunk(i, {**delta, "tool_calls": [start]}))
                for piece in re.findall(r".{1,8}", call["function"]["arguments"]):
                    await _send(response, state, chunk(i, {"tool_calls": [{"index": t, "function": {"arguments": piece}}]}))
        else:
            await _send(response, state, chunk(i, {"role": "assistant", "content": "", "refusal": None}))
            for piece in stream_pieces(choice.content or ""):
                await _send(response, state, chunk(i, {"content": piece}))
        await _send(response, state, chunk(i, {}, choice.finish_reason))
    if usage is not None:
        await _send(response, state, {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    await _send(response, state, b"[DONE]")
    await response.write_eof()
    return response


# --- legacy completions and embeddings ----------------------------------------------------------


async def completions(request: web.Request, state: UpstreamState) -> web.StreamResponse:
    body = await json_body(request)
    model = _require_model(body, COMPLETION_MODELS)
    if "prompt" not in body:
        raise OpenAIError(400, "Missing required parameter: 'prompt'.", param="prompt",
                          code="missing_required_parameter")
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    # The legacy endpoint defaults max_tokens to 16 (api-reference/completions/create).
    replies = [_limit(f"Echo: {p}", body, default=16) for p in prompts]
    usage = _usage(sum(word_tokens(str(p)) for p in prompts), sum(word_tokens(t) for t, _ in replies), 0)
    head = {"id": f"cmpl-{uuid.uuid4().hex[:29]}", "object": "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fake0001"}
    if not body.get("stream"):
        return _json({**head, "usage": usage, "choices": [
            {"text": text, "index": i, "logprobs": None, "finish_reason": finish}
            for i, (text, finish) in enumerate(replies)]})
    response = await _open_sse(request)
    for i, (text, finish) in enumerate(replies):
        for piece in stream_pieces(text):
            await _send(response, state, {**head, "choices": [
                {"text": piece, "index": i, "logprobs": None, "finish_reason": None}]})
        await _send(response, state, {**head, "choices": [
            {"text": "", "index": i, "logprobs": None, "finish_reason": finish}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        await _send(response, state, {**head, "choices": [], "usage": usage})
    await _send(response, state, b"[DONE]")
    await response.write_eof()
    return response


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived only from ``text``: equal inputs embed equally."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] ^ (i * 31 & 0xFF)) - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


async def embeddings(request: web.Request) -> web.Response:
    body = await json_body(request)
    model = _require_model(body, EMBEDDING_MODELS)
    inputs = body.get("input")
    if inputs is None:
        raise OpenAIError(400, "Missing required parameter: 'input'.", param="input",
                          code="missing_required_parameter")
    # A list of ints is one tokenized input; a list of strings or of int lists is a batch.
    items = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else inputs
    if not items or any(item in ("", []) for item in items):
        raise OpenAIError(400, "'$.input' is invalid. Please check the API reference: "
                               "https://platform.openai.com/docs/api-reference.", param="input")
    dimensions = body.get("dimensions") or EMBEDDING_MODELS[model]
    if "dimensions" in body and model == "text-embedding-ada-002":
        raise OpenAIError(400, "This model does not support specifying dimensions.", param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise OpenAIError(400, f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                          param="encoding_format", code="invalid_value")
    data = []
    for i, item in enumerate(items):
        vector = embedding_vector(item if isinstance(item, str) else repr(item), dimensions)
        # base64 is the little-endian float32 array (what openai-python decodes).
        encoded: Any = vector if encoding == "float" else base64.b64encode(
            struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(word_tokens(item) if isinstance(item, str) else len(item) for item in items)
    return _json({"object": "list", "data": data, "model": model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
