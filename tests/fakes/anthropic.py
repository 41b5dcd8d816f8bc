"""A fake Anthropic Messages API, strict where the real one is strict.

Serves ``POST /v1/messages`` (JSON and SSE), ``POST /v1/messages/count_tokens`` and ``GET /v1/models``.
Formats follow docs.anthropic.com (api/messages, build-with-claude/streaming, api/errors): errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}``; unknown top-level fields are refused
("Extra inputs are not permitted"), so a gateway that leaks OpenAI parameters fails here as it would there.

Deterministic replies: ``"Echo: <last user text>"`` (images show as ``[image base64 image/png]`` or
``[image url <url>]``); a ``tool_use`` block when tools are offered and the last user text names one
(or ``tool_choice`` forces it); ``"Tool result: <content>"`` after a ``tool_result``; a JSON object
``{"echo": ...}`` when the system prompt asks for JSON. One token is one word. Blocks marked with
``cache_control`` are "cached" (any length, unlike the real 1024-token minimum): the first request
reports the prefix as ``cache_creation_input_tokens``, later identical prefixes as
``cache_read_input_tokens``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai import (
    Handler,
    UpstreamState,
    example_arguments,
    expose_state,
    json_body,
    stream_pieces,
    upstream_knobs,
    word_tokens,
)

MODELS = ("claude-3-5-haiku-20241022", "claude-3-5-sonnet-20241022", "claude-sonnet-4-20250514")
VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # dated versions: 2023-06-01, or newer as SDKs send
FIELDS = {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
          "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


@dataclass
class AnthropicState(UpstreamState):
    """The shared knobs, plus the prompt cache and a mid-stream ``error`` event on demand."""

    cached_prefixes: set[str] = field(default_factory=set)
    stream_error: str | None = None  # e.g. "overloaded_error": sent after the first delta, then the stream ends

    def reset(self) -> None:
        super().reset()
        self.cached_prefixes.clear()
        self.stream_error = None


class AnthropicError(Exception):
    def __init__(self, status: int, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.response = anthropic_error(status, message, type)


def anthropic_error(status: int, message: str, type: str | None = None) -> web.Response:
    error_type = type or ERROR_TYPES.get(status, "api_error")
    request_id = _request_id()
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={"request-id": request_id})


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def make_anthropic_app(api_key: str = "sk-ant-test") -> web.Application:
    """The fake Anthropic API; its ``AnthropicState`` is ``app["anthropic"]``."""
    state = AnthropicState()

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The API docs name ``x-api-key``; anthropic-python 2.x sends the same key as a Bearer token.
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        key = request.headers.get("x-api-key") or (bearer if scheme.lower() == "bearer" else "")
        if not key:
            return anthropic_error(401, "x-api-key header is required")
        if key != api_key:
            return anthropic_error(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if not version:
            return anthropic_error(400, "anthropic-version: header is required")
        if not VERSION.match(version) or version < "2023-01-01":
            return anthropic_error(400, f"anthropic-version: invalid version '{version}'")
        if request.method == "POST" and not isinstance(await json_body(request), dict):
            return anthropic_error(400, "There was an issue with the format of your request: invalid JSON body")
        try:
            return await handler(request)
        except AnthropicError as error:
            return error.response

    async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("request-id", _request_id())

    async def messages_route(request: web.Request) -> web.StreamResponse:
        return await create_message(request, state)

    async def count_tokens_route(request: web.Request) -> web.Response:
        body = await json_body(request)
        _validate(body, counting=True)
        return _json({"input_tokens": _prompt_usage(body, set())["input_tokens"]})

    app = web.Application(middlewares=[upstream_knobs(state, anthropic_error), errors_and_auth])
    expose_state(app, "anthropic", state)
    app.on_response_prepare.append(add_request_id)
    app.router.add_post("/v1/messages", messages_route)
    app.router.add_post("/v1/messages/count_tokens", count_tokens_route)
    app.router.add_get("/v1/models", list_models)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def list_models(request: web.Request) -> web.Response:
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"} for m in MODELS]
    return _json({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})


# --- validation ---------------------------------------------------------------------------------


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message)


def _validate(body: dict[str, Any], counting: bool = False) -> None:
    allowed = FIELDS - {"max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
                        "metadata", "service_tier"} if counting else FIELDS
    for name in body:
        if name not in allowed:
            raise _invalid(f"{name}: Extra inputs are not permitted")
    required = ("model", "messages") if counting else ("model", "max_tokens", "messages")
    for name in required:
        if name not in body:
            raise _invalid(f"{name}: Field required")
    if body["model"] not in MODELS:
        raise AnthropicError(404, f"model: {body['model']}")
    if not counting and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    _validate_sampling(body)
    _validate_system(body.get("system"))
    _validate_tools(body)
    _validate_messages(body["messages"])
    metadata = body.get("metadata") or {}
    for name in metadata:
        if name != "user_id":
            raise _invalid(f"metadata.{name}: Extra inputs are not permitted")


def _validate_sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not 0 <= value <= 1:
            raise _invalid(f"{name}: Input should be less than or equal to 1")
    if body.get("top_k") is not None and (not isinstance(body["top_k"], int) or body["top_k"] < 0):
        raise _invalid("top_k: Input should be a valid integer")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _invalid("stop_sequences: Input should be a valid list of strings")


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string")
    for i, block in enumerate(system):
        if block.get("type") != "text" or not block.get("text"):
            raise _invalid(f"system.{i}: system blocks must be non-empty text blocks")


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web_search_..., bash_...): no schema
        if not TOOL_NAME.match(tool.get("name") or ""):
            raise _invalid(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"tools.{i}.input_schema: Field required")
        if schema.get("type") != "object":
            raise _invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
        extra = set(tool) - {"name", "description", "input_schema", "cache_control", "type"}
        if extra:
            raise _invalid(f"tools.{i}.{min(extra)}: Extra inputs are not permitted")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise _invalid("tool_choice: tool_choice may only be specified while providing tools.")
    if choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and not any(t.get("name") == choice.get("name") for t in tools):
        raise _invalid(f"tool_choice: tool '{choice.get('name')}' not found in tools")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required")
    if messages[0].get("role") != "user":
        raise _invalid('messages: first message must use the "user" role')
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i and messages[i - 1]["role"] == role:
            raise _invalid(f'messages: roles must alternate between "user" and "assistant", '
                           f'but found multiple "{role}" roles in a row')
        blocks = _blocks(message.get("content"), f"messages.{i}.content", last=i == len(messages) - 1)
        results = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
        if results - pending:
            raise _invalid(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                           f"{min(results - pending)}. Each `tool_result` block must have a corresponding "
                           "`tool_use` block in the previous message.")
        if pending - results:
            raise _invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                           f"after: {min(pending - results)}. Each `tool_use` block must have a "
                           "corresponding `tool_result` block in the next message.")
        for j, block in enumerate(blocks):
            if block["type"] in ("tool_use", "thinking") and role != "assistant":
                raise _invalid(f"messages.{i}.content.{j}: `{block['type']}` blocks are only allowed in assistant turns")
            if block["type"] == "tool_result" and role != "user":
                raise _invalid(f"messages.{i}.content.{j}: `tool_result` blocks are only allowed in user turns")
        kinds = [b["type"] == "tool_result" for b in blocks]
        if kinds != sorted(kinds, reverse=True):
            raise _invalid(f"messages.{i}.content: `tool_result` blocks must come first in the content, "
                           "before any other block.")
        pending = {b["id"] for b in blocks if b["type"] == "tool_use"}


def _blocks(content: Any, where: str, last: bool) -> list[dict[str, Any]]:
    """Content as blocks, each validated; a string is one text block."""
    if isinstance(content, str):
        if not content and not last:
            raise _invalid(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _invalid(f"{where}: Input should be a valid list")
    for j, block in enumerate(content):
        _validate_block(block, f"{where}.{j}")
    return content


def _validate_block(block: dict[str, Any], where: str) -> None:
    kind = block.get("type")
    if kind == "text":
        if not block.get("text"):
            raise _invalid("messages: text content blocks must be non-empty")
    elif kind in ("image", "document"):
        _validate_source(block.get("source") or {}, f"{where}.source", kind)
    elif kind == "tool_use":
        if not block.get("id") or not block.get("name") or not isinstance(block.get("input"), dict):
            raise _invalid(f"{where}: tool_use blocks need id, name and an object input")
    elif kind == "tool_result":
        if not block.get("tool_use_id"):
            raise _invalid(f"{where}.tool_use_id: Field required")
        inner = block.get("content")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                if part.get("type") not in ("text", "image"):
                    raise _invalid(f"{where}.content.{k}.type: Input should be 'text' or 'image'")
                _validate_block(part, f"{where}.content.{k}")
    elif kind not in ("thinking", "redacted_thinking"):
        raise _invalid(f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected "
                       "tags: 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'")


def _validate_source(source: dict[str, Any], where: str, kind: str) -> None:
    if source.get("type") == "url":
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise _invalid(f"{where}.url: Input should be a valid URL")
        return
    if source.get("type") != "base64":
        raise _invalid(f"{where}.type: Input should be 'base64' or 'url'")
    media = source.get("media_type")
    allowed = IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if media not in allowed:
        raise _invalid(f"{where}.media_type: Input should be {', '.join(repr(a) for a in allowed)}")
    try:
        base64.b64decode(source.get("data", ""), validate=True)
    except binascii.Error:
        raise _invalid(f"{where}.data: The {kind} data is not valid base64") from None


# --- replies ------------------------------------------------------------------------------------


def _describe(blocks: list[dict[str, Any]]) -> str:
    parts = []
    for block in blocks:
        if block["type"] == "text":
            parts.append(block["text"])
        elif block["type"] == "image":
            source = block["source"]
            parts.append(f"[image url {source['url']}]" if source["type"] == "url"
                         else f"[image base64 {source['media_type']}]")
        elif block["type"] == "document":
            parts.append("[document]")
        elif block["type"] == "tool_result":
            inner = block.get("content", "")
            parts.append(inner if isinstance(inner, str) else _describe(inner))
    return " ".join(parts)


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system") or ""
    return system if isinstance(system, str) else " ".join(b["text"] for b in system)


def _chosen_tool(body: dict[str, Any], user_text: str) -> tuple[dict[str, Any] | None, bool]:
    """The tool to call, and whether the model is free to talk first (tool_choice auto)."""
    tools = [t for t in body.get("tools") or [] if "input_schema" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None, False
    if choice["type"] == "tool":
        return next(t for t in tools if t["name"] == choice["name"]), False
    named = next((t for t in tools if t["name"] in user_text), None)
    if choice["type"] == "any":
        return named or tools[0], False
    return named, True


def _reply(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """(content blocks, stop_reason, stop_sequence) for a validated request."""
    last = body["messages"][-1]
    blocks = _as_blocks(last["content"])
    if last["role"] == "assistant":
        return _text_reply("(continued)", body)
    results = [b for b in blocks if b["type"] == "tool_result"]
    if results:
        return _text_reply(f"Tool result: {_describe(results)}", body)
    user_text = _describe(blocks)
    tool, chatty = _chosen_tool(body, user_text)
    if tool is not None:
        use = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool["name"],
               "input": example_arguments(tool["input_schema"])}
        intro = [{"type": "text", "text": f"I'll use {tool['name']}."}] if chatty else []
        return [*intro, use], "tool_use", None
    if "json" in _system_text(body).lower():
        return _text_reply(orjson.dumps({"echo": user_text}).decode(), body)
    return _text_reply(f"Echo: {user_text}", body)


def _text_reply(text: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    for stop in body.get("stop_sequences") or []:
        if stop in text:
            return [{"type": "text", "text": text[: text.index(stop)]}], "stop_sequence", stop
    words = text.split(" ")
    if word_tokens(text) > body["max_tokens"]:
        return [{"type": "text", "text": " ".join(words[: body["max_tokens"]])}], "max_tokens", None
    return [{"type": "text", "text": text}], "end_turn", None


def _output_tokens(content: list[dict[str, Any]]) -> int:
    return sum(word_tokens(b["text"]) if b["type"] == "text" else word_tokens(orjson.dumps(b["input"]).decode()) + 1
               for b in content)


def _prompt_usage(body: dict[str, Any], cached_prefixes: set[str]) -> dict[str, int]:
    """Input tokens split the way Anthropic reports them: uncached, cache write, cache read.

    Cache prefixes run tools → system → messages (build-with-claude/prompt-caching); the prefix up to
    the last block carrying ``cache_control`` is what gets written or read.
    """
    units: list[tuple[dict[str, Any], int]] = []
    for tool in body.get("tools") or []:
        units.append((tool, word_tokens(f"{tool.get('name', '')} {tool.get('description', '')}") + 5))
    for block in _as_blocks(body.get("system") or []):
        units.append((block, word_tokens(block["text"])))
    for message in body["messages"]:
        for block in _as_blocks(message["content"]):
            units.append((block, word_tokens(_describe([block]) or orjson.dumps(block.get("input", {})).decode()) + 1))
    total = sum(tokens for _, tokens in units)
    marks = [i for i, (unit, _) in enumerate(units) if unit.get("cache_control")]
    if not marks:
        return {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    prefix = units[: marks[-1] + 1]
    prefix_tokens = sum(tokens for _, tokens in prefix)
    key = hashlib.sha256(orjson.dumps([body["model"], *(unit for unit, _ in prefix)])).hexdigest()
    hit = key in cached_prefixes
    cached_prefixes.add(key)
    return {"input_tokens": total - prefix_tokens,
            "cache_creation_input_tokens": 0 if hit else prefix_tokens,
            "cache_read_input_tokens": prefix_tokens if hit else 0}


async def create_message(request: web.Request, state: AnthropicState, body: dict[str, Any] | None = None) -> web.StreamResponse:
    """Answer a Messages request: its JSON body, or ``body`` as a front (Vertex's rawPredict) passes it on."""
    body = await json_body(request) if body is None else body
    _validate(body)
    content, stop_reason, stop_sequence = _reply(body)
    usage = {**_prompt_usage(body, state.cached_prefixes), "output_tokens": _output_tokens(content)}
    message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
               "model": body["model"], "content": content, "stop_reason": stop_reason,
               "stop_sequence": stop_sequence, "usage": usage}
    if body.get("stream"):
        return await _stream(request, state, message)
    return _json(message)


async def _stream(request: web.Request, state: AnthropicState, message: dict[str, Any]) -> web.StreamResponse:
    """The documented event sequence, with named ``event:`` lines (build-with-claude/streaming)."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache"})
    await response.prepare(request)

    async def send(event: dict[str, Any]) -> None:
        if state.chunk_delay:
            await asyncio.sleep(state.chunk_delay)
        await response.write(f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n")

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    await send({"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            await send({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            deltas = [{"type": "text_delta", "text": piece} for piece in stream_pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            await send({"type": "content_block_start", "index": index, "content_block": opening})
            arguments = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": piece}
                      for piece in ["", *re.findall(r".{1,8}", arguments)]]
        if index == 0:
            await send({"type": "ping"})
        for delta in deltas:
            await send({"type": "content_block_delta", "index": index, "delta": delta})
            if state.stream_error:
                await send({"type": "error", "error": {"type": state.stream_error, "message": "Overloaded"}})
                await response.write_eof()
                return response
        await send({"type": "content_block_stop", "index": index})
    await send({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                   "stop_sequence": message["stop_sequence"]},
                "usage": {"output_tokens": usage["output_tokens"]}})
    await send({"type": "message_stop"})
    await response.write_eof()
    return response
