"""The fake OpenAI's Responses API: ``POST /v1/responses`` (JSON and SSE), ``GET`` and ``DELETE
/v1/responses/{id}``, stateful as the real one is.

Formats follow platform.openai.com/docs/api-reference/responses (create, the response object, input
items) and /responses-streaming (events with ``sequence_number``). Like the real API it refuses unknown
parameters, a ``max_output_tokens`` under 16, a function call without its output, JSON mode without
"json" in the input, and an unknown ``previous_response_id``; it stores responses unless ``store`` is
false, and continues a stored conversation from ``previous_response_id`` (instructions not carried over).

Replies are the chat fake's (tests/fakes/openai.py): ``"Echo: <last user text>"``, a call of the tool
the last user text names, ``"Tool said: <output>"`` after a function's output; one token is one word.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai import (
    CHAT_MODELS,
    Choice,
    OpenAIError,
    UpstreamState,
    _json,
    _open_sse,
    _reply,
    _require_model,
    json_body,
    stream_pieces,
    word_tokens,
)

PARAMETERS = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "parallel_tool_calls", "text", "stream", "stream_options", "metadata", "store", "previous_response_id", "user",
    "include", "truncation", "reasoning", "service_tier", "background", "prompt", "conversation",
    "max_tool_calls", "top_logprobs", "prompt_cache_key", "safety_identifier",
})


def add_responses_routes(app: web.Application, state: UpstreamState) -> None:
    stored: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}  # id -> (response, its whole conversation)

    async def create(request: web.Request) -> web.StreamResponse:
        return await create_response(request, state, stored)

    async def retrieve(request: web.Request) -> web.Response:
        return _json(_stored(stored, request.match_info["id"])[0])

    async def delete(request: web.Request) -> web.Response:
        _stored(stored, request.match_info["id"])
        del stored[request.match_info["id"]]
        return _json({"id": request.match_info["id"], "object": "response", "deleted": True})

    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{id}", retrieve)
    app.router.add_delete("/v1/responses/{id}", delete)


def _stored(stored: dict[str, Any], id: str) -> Any:
    if id not in stored:
        raise OpenAIError(404, f"Response with id '{id}' not found.")
    return stored[id]


async def create_response(request: web.Request, state: UpstreamState, stored: dict[str, Any]) -> web.StreamResponse:
    body = await json_body(request)
    unknown = next((name for name in body if name not in PARAMETERS), None)
    if unknown is not None:
        raise OpenAIError(400, f"Unknown parameter: '{unknown}'.", param=unknown, code="unknown_parameter")
    model = _require_model(body, CHAT_MODELS)
    limit = body.get("max_output_tokens")
    if limit is not None and limit < 16:
        raise OpenAIError(400, f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                               f"but got {limit} instead.", param="max_output_tokens", code="integer_below_min_value")
    if body.get("input") is None:
        raise OpenAIError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    history: list[dict[str, Any]] = []
    if body.get("previous_response_id"):
        previous = body["previous_response_id"]
        if previous not in stored:
            raise OpenAIError(400, f"Previous response with id '{previous}' not found.", param="previous_response_id",
                              code="previous_response_not_found")
        history = list(stored[previous][1])
    items = [{"role": "user", "content": body["input"]}] if isinstance(body["input"], str) else list(body["input"])
    conversation = history + items
    messages = _chat_view(conversation, body.get("instructions"))
    _check_json_mode(body, messages)
    choice = _reply(_chat_options(body), messages)
    output = _output(choice)
    prompt_tokens = sum(word_tokens(str(m.get("content") or "")) + 1 for m in messages)
    output_tokens = sum(word_tokens(item.get("arguments") or _item_text(item)) for item in output)
    usage = {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": min(state.cached_tokens, prompt_tokens)},
             "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": prompt_tokens + output_tokens}
    finished = choice.finish_reason == "length"
    response = _response_object(body, model, "incomplete" if finished else "completed", output, usage)
    if finished:
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    if body.get("store", True):
        stored[response["id"]] = (response, conversation + output)
    if body.get("stream"):
        return await _stream(request, response)
    return _json(response)


def _response_object(body: dict[str, Any], model: str, status: str, output: list[dict[str, Any]],
                     usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"resp_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}", "object": "response", "created_at": int(time.time()),
            "status": status, "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": f"{model}-2024-07-18", "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage, "user": body.get("user"), "metadata": body.get("metadata") or {}}


def _chat_view(items: list[Any], instructions: str | None) -> list[dict[str, Any]]:
    """The conversation as chat messages, which the chat fake's reply logic reads; checks what the
    real API checks about function calls and their outputs."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    pending: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type") or "message"
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system", "developer"):
                raise OpenAIError(400, f"Invalid value: '{item.get('role')}'. Supported values are: 'assistant', "
                                       "'system', 'developer', and 'user'.", param=f"input[{i}].role", code="invalid_value")
            messages.append({"role": item["role"], "content": _item_text(item)})
        elif kind == "function_call":
            pending.add(item["call_id"])
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}]})
        elif kind == "function_call_output":
            if item.get("call_id") not in pending:
                raise OpenAIError(400, f"No tool call found for function call output with call_id {item.get('call_id')}.",
                                  param="input")
            pending.discard(item["call_id"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item.get("output") or ""})
        else:
            raise OpenAIError(400, f"Invalid value: '{kind}'.", param=f"input[{i}].type", code="invalid_value")
    if pending:
        raise OpenAIError(400, f"No tool output found for function call {sorted(pending)[0]}.", param="input")
    return messages


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    texts = []
    for part in content or []:
        if part.get("type") in ("input_text", "output_text"):
            texts.append(part.get("text") or "")
        elif part.get("type") == "input_image":
            if not (part.get("image_url") or part.get("file_id")):
                raise OpenAIError(400, "Missing required parameter: 'input[].content[].image_url'.",
                                  code="missing_required_parameter")
            texts.append("[image]")
    return " ".join(texts)


def _chat_options(body: dict[str, Any]) -> dict[str, Any]:
    """The request's tools, tool_choice, text.format and max_output_tokens in chat's words, for ``_reply``."""
    options: dict[str, Any] = {"max_tokens": body.get("max_output_tokens")}
    options["tools"] = [{"type": "function", "function": t} for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    options["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}} if isinstance(choice, dict) else choice
    form = (body.get("text") or {}).get("format") or {}
    if form.get("type") == "json_schema":
        options["response_format"] = {"type": "json_schema", "json_schema": {"schema": form.get("schema") or {}}}
    elif form.get("type") == "json_object":
        options["response_format"] = {"type": "json_object"}
    return options


def _check_json_mode(body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    form = ((body.get("text") or {}).get("format") or {}).get("type")
    if form == "json_object" and not any("json" in str(m.get("content") or "").lower() for m in messages):
        raise OpenAIError(400, "Response input messages must contain the word 'json' in some form to use "
                               "'text.format' of type 'json_object'.", param="input")


def _output(choice: Choice) -> list[dict[str, Any]]:
    if choice.tool_calls:
        return [{"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "completed", "call_id": call["id"],
                 "name": call["function"]["name"], "arguments": call["function"]["arguments"]} for call in choice.tool_calls]
    return [{"id": f"msg_{uuid.uuid4().hex}", "type": "message", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": choice.content or "", "annotations": [], "logprobs": []}]}]


async def _stream(request: web.Request, response: dict[str, Any]) -> web.StreamResponse:
    sse = await _open_sse(request)
    sequence = 0

    async def send(kind: str, payload: dict[str, Any]) -> None:
        nonlocal sequence
        data = orjson.dumps({"type": kind, **payload, "sequence_number": sequence})
        sequence += 1
        await sse.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    await send("response.created", {"response": started})
    await send("response.in_progress", {"response": started})
    for index, item in enumerate(response["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            opened = {**item, "status": "in_progress", "content": []}
            await send("response.output_item.added", {"output_index": index, "item": opened})
            await send("response.content_part.added", {**where, "content_index": 0, "part": {**item["content"][0], "text": ""}})
            for piece in stream_pieces(text):
                await send("response.output_text.delta", {**where, "content_index": 0, "delta": piece, "logprobs": []})
            await send("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            await send("response.content_part.done", {**where, "content_index": 0, "part": item["content"][0]})
        else:
            opened = {**item, "status": "in_progress", "arguments": ""}
            await send("response.output_item.added", {"output_index": index, "item": opened})
            arguments = item["arguments"]
            for start in range(0, len(arguments), 8):
                await send("response.function_call_arguments.delta", {**where, "delta": arguments[start:start + 8]})
            await send("response.function_call_arguments.done", {**where, "name": item["name"], "arguments": arguments})
        await send("response.output_item.done", {"output_index": index, "item": item})
    await send(f"response.{response['status']}", {"response": response})
    await sse.write_eof()
    return sse
