"""A fake Cohere v2 API (``/v2/chat``, ``/v2/embed``, ``/v2/rerank``), as strict as the real one about what it accepts.

Bearer auth (``no api key supplied`` / ``invalid api token``), unknown fields and out-of-range values
refused with Cohere's error shape ``{"id", "message"}``. Replies are deterministic:

- a conversation ending in tool results gets ``Results: <content>; ...``;
- with tools (and ``tool_choice`` not ``NONE``) the first tool is called with sample arguments;
- JSON mode gets a sample instance of ``json_schema`` (or ``{"echo": <last user text>}``);
- otherwise ``You said: <last user text>`` (plus ``(+N images)``).

Rerank (docs.cohere.com/v2/reference/rerank) scores a document by the share of the query's words it
holds, answers ``{"id", "results": [{"index", "relevance_score"}], "meta": {"api_version", "billed_units":
{"search_units"}}}`` (no documents: v2 does not return them) and bills a search unit per 100 documents.

One token is one word. ``max_tokens`` truncates (``MAX_TOKENS``), ``stop_sequences`` cut
(``STOP_SEQUENCE``). Streams are v2 SSE events (``message-start`` ... ``message-end``). Knobs on
``app[COHERE]``: ``fail_next``, ``reply_next``, ``delay``; every request is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class CohereState:
    api_key: str
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    delay: float = 0.0

    def fail_next(self, status: int, message: str = "internal server error, this has been reported to our developers") -> None:
        self.failures.append((status, message))

    def reply_next(self, response: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Answer the next chat with this body (a list: these stream events)."""
        self.replies.append(response)

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.replies.clear()
        self.delay = 0.0


COHERE = web.AppKey("cohere", CohereState)

_CHAT_FIELDS = {
    "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
    "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
    "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "stream",
}
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "tool_plan", "citations"},
    "tool": {"role", "tool_call_id", "content"},
}
_EMBED_FIELDS = {"model", "texts", "images", "inputs", "input_type", "embedding_types", "output_dimension", "truncate", "max_tokens"}
_RERANK_FIELDS = {"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"}
RERANK_MODELS = ("rerank-v3.5", "rerank-english-v3.0", "rerank-multilingual-v3.0", "rerank-v4.0-pro", "rerank-v4.0-fast")
_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}
_EMBEDDING_TYPES = {"float", "int8", "uint8", "binary", "ubinary", "base64"}
_ids = itertools.count(1)


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def cohere_error(status: int, message: str) -> web.Response:
    return web.json_response({"id": f"fake-error-{next(_ids)}", "message": message}, status=status)


def make_cohere_app(api_key: str = "test-cohere-key") -> web.Application:
    app = web.Application()
    app[COHERE] = CohereState(api_key)
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[COHERE]
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.requests.append(RecordedRequest(request.method, request.path, dict(request.query), headers, body))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token:
        return cohere_error(401, "no api key supplied")
    if scheme.lower() != "bearer" or token != state.api_key:
        return cohere_error(401, "invalid api token")
    if state.delay:
        await asyncio.sleep(state.delay)
    if state.failures:
        return cohere_error(*state.failures.pop(0))
    if request.method != "POST" or request.path not in ("/v2/chat", "/v2/embed", "/v2/rerank"):
        return cohere_error(404, f"route not found: {request.method} {request.path}")
    if not isinstance(body, dict):
        return cohere_error(400, "invalid request: could not parse the request body as JSON")
    try:
        if request.path == "/v2/embed":
            return web.json_response(_embed(body))
        if request.path == "/v2/rerank":
            return web.json_response(_rerank(body))
        _check_chat(body)
        reply = state.replies.pop(0) if state.replies else None
        if body.get("stream"):
            return await _stream(request, reply if isinstance(reply, list) else _events(reply or _reply(body)))
        return web.json_response(reply or _reply(body))
    except Invalid as exc:
        return cohere_error(exc.status, str(exc))


# ------------------------------------------------------------------------------------- rerank


def _rerank(body: dict[str, Any]) -> dict[str, Any]:
    _unknown(body, _RERANK_FIELDS, "request")
    if body.get("model") not in RERANK_MODELS:
        raise Invalid(f"invalid request: model '{body.get('model')}' not found, make sure the model is a rerank model", 404)
    query, documents, top_n = body.get("query"), body.get("documents"), body.get("top_n")
    if not isinstance(query, str) or not query.strip():
        raise Invalid("invalid request: query must not be empty")
    if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
        raise Invalid("invalid request: documents must be a non-empty list of strings")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise Invalid("invalid request: top_n must be a positive integer")
    words = set(re.findall(r"\w+", query.lower()))
    scores = [len(words & set(re.findall(r"\w+", doc.lower()))) / max(len(words), 1) for doc in documents]
    ranked = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[: top_n or len(documents)]
    return {"id": f"fake-rerank-{next(_ids)}",
            "results": [{"index": i, "relevance_score": round(scores[i], 6)} for i in ranked],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": -(-len(documents) // 100)}}}


# ------------------------------------------------------------------------------------- validation


def _unknown(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise Invalid(f"invalid request: {where} must be an object")
    for name in obj:
        if name not in allowed:
            raise Invalid(f'invalid request: unknown field "{name}" in {where}')


def _check_chat(body: dict[str, Any]) -> None:
    _unknown(body, _CHAT_FIELDS, "request")
    model = body.get("model")
    if not model:
        raise Invalid("invalid request: a model parameter is required for this endpoint.")
    if "embed" in model:
        raise Invalid(f"invalid request: model '{model}' is not supported by the chat API")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("invalid request: messages must not be empty")
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        _check_message(message, i, call_ids)
    ranges = {"temperature": (0, 5), "p": (0.01, 0.99), "k": (0, 500), "frequency_penalty": (0, 1),
              "presence_penalty": (0, 1), "max_tokens": (1, 1_000_000)}
    for name, (low, high) in ranges.items():
        if name in body and not (isinstance(body[name], (int, float)) and low <= body[name] <= high):
            raise Invalid(f"invalid request: {name} must be between {low} and {high} inclusive.")
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(s, str) for s in stops):
        raise Invalid("invalid request: stop_sequences must be a list of at most 5 strings.")
    for i, tool in enumerate(body.get("tools", [])):
        _unknown(tool, {"type", "function"}, f"tools[{i}]")
        _unknown(tool.get("function"), {"name", "description", "parameters"}, f"tools[{i}].function")
        if tool.get("type") != "function" or not tool["function"].get("name"):
            raise Invalid(f"invalid request: tools[{i}] must be a function with a name")
    if "tool_choice" in body:
        if body["tool_choice"] not in ("REQUIRED", "NONE"):
            raise Invalid("invalid request: tool_choice must be one of REQUIRED, NONE")
        if not body.get("tools"):
            raise Invalid("invalid request: tool_choice can only be specified with tools")
    if "response_format" in body:
        response_format = body["response_format"]
        _unknown(response_format, {"type", "json_schema"}, "response_format")
        if response_format.get("type") not in ("text", "json_object"):
            raise Invalid("invalid request: response_format.type must be one of text, json_object")
        if "json_schema" in response_format and response_format["type"] != "json_object":
            raise Invalid("invalid request: json_schema is only supported with type json_object")


def _check_message(message: Any, i: int, call_ids: set[str]) -> None:
    role = message.get("role") if isinstance(message, dict) else None
    if role not in _MESSAGE_FIELDS:
        raise Invalid(f"invalid request: messages[{i}].role must be one of system, user, assistant, tool")
    _unknown(message, _MESSAGE_FIELDS[role], f"messages[{i}]")
    content = message.get("content")
    if role == "assistant":
        for call in message.get("tool_calls", []):
            _unknown(call, {"id", "type", "function"}, f"messages[{i}].tool_calls")
            function = call.get("function") or {}
            try:
                json.loads(function.get("arguments", ""))
            except ValueError:
                raise Invalid(f"invalid request: messages[{i}].tool_calls arguments must be a JSON string") from None
            if call.get("type") != "function" or not call.get("id") or not function.get("name"):
                raise Invalid(f"invalid request: messages[{i}].tool_calls need an id, type function and a name")
            call_ids.add(call["id"])
        if not content and not message.get("tool_calls"):
            raise Invalid("invalid request: message must be at least 1 token long or tool results must be specified.")
        return
    if role == "tool" and message.get("tool_call_id") not in call_ids:
        raise Invalid(f"invalid request: messages[{i}].tool_call_id does not match any tool call")
    if isinstance(content, str):
        if not content and role != "tool":
            raise Invalid("invalid request: message must be at least 1 token long or tool results must be specified.")
        return
    if not isinstance(content, list) or not content:
        raise Invalid(f"invalid request: messages[{i}].content must be a string or a non-empty list")
    for part in content:
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            _unknown(part, {"type", "text"}, f"messages[{i}].content")
        elif part.get("type") == "image_url" and role == "user":
            _unknown(part, {"type", "image_url"}, f"messages[{i}].content")
            _unknown(part["image_url"], {"url", "detail"}, f"messages[{i}].content.image_url")
            if not part["image_url"].get("url"):
                raise Invalid(f"invalid request: messages[{i}].content.image_url.url is required")
        else:
            raise Invalid(f"invalid request: messages[{i}].content has an unsupported part {part.get('type')!r}")


# ---------------------------------------------------------------------------------------- replies


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    tools = body.get("tools", [])
    message: dict[str, Any] = {"role": "assistant"}
    finish = "COMPLETE"
    if messages[-1]["role"] == "tool":
        trailing = list(itertools.takewhile(lambda m: m["role"] == "tool", reversed(messages)))[::-1]
        message["content"] = [{"type": "text", "text": "Results: " + "; ".join(_text(m["content"]) for m in trailing)}]
    elif tools and body.get("tool_choice") != "NONE":
        function = tools[0]["function"]
        message["tool_plan"] = f"I will call {function['name']}."
        arguments = json.dumps(_sample(function.get("parameters")))
        message["tool_calls"] = [{"id": f"fake_call_{next(_ids)}", "type": "function",
                                  "function": {"name": function["name"], "arguments": arguments}}]
        finish = "TOOL_CALL"
    else:
        last = next(m for m in reversed(messages) if m["role"] == "user")
        text = _text(last["content"])
        response_format = body.get("response_format", {})
        if response_format.get("type") == "json_object":
            schema = response_format.get("json_schema")
            text = json.dumps(_sample(schema) if schema else {"echo": text})
        else:
            images = sum(p.get("type") == "image_url" for p in last["content"]) if isinstance(last["content"], list) else 0
            text = f"You said: {text}" + (f" (+{images} images)" if images else "")
        text, finish = _limit(text, body)
        message["content"] = [{"type": "text", "text": text}]
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    output = sum(len(c["text"].split()) for c in message.get("content", [])) + 5 * len(message.get("tool_calls", []))
    usage = {"billed_units": {"input_tokens": prompt, "output_tokens": output},
             "tokens": {"input_tokens": prompt + 60, "output_tokens": output + 2}}  # +60: Cohere's own preamble
    return {"id": f"fake-chat-{next(_ids)}", "finish_reason": finish, "message": message, "usage": usage}


def _text(content: Any) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


def _limit(text: str, body: dict[str, Any]) -> tuple[str, str]:
    for stop in body.get("stop_sequences", []):
        if stop in text:
            return text[: text.index(stop)], "STOP_SEQUENCE"
    words = text.split()
    if "max_tokens" in body and len(words) > body["max_tokens"]:
        return " ".join(words[: body["max_tokens"]]), "MAX_TOKENS"
    return text, "COMPLETE"


def _sample(schema: dict[str, Any] | None) -> Any:
    """A deterministic instance of a JSON schema."""
    if not schema:
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items"))]
    return {"string": "sample", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [" ".join(words[k:k + 2]) + (" " if k + 2 < len(words) else "") for k in range(0, len(words), 2)]


def _events(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """A reply as the v2 stream events Cohere sends for it."""
    message = reply["message"]
    events: list[dict[str, Any]] = [{"id": reply["id"], "type": "message-start", "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}]
    for piece in _pieces(message.get("tool_plan", "")) if message.get("tool_plan") else []:
        events.append({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
    for i, call in enumerate(message.get("tool_calls", [])):
        start = {"id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": start}}})
        arguments = call["function"]["arguments"]
        for k in range(0, len(arguments), 8):
            piece = {"function": {"arguments": arguments[k:k + 8]}}
            events.append({"type": "tool-call-delta", "index": i, "delta": {"message": {"tool_calls": piece}}})
        events.append({"type": "tool-call-end", "index": i})
    for i, item in enumerate(message.get("content", [])):
        events.append({"type": "content-start", "index": i, "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        for piece in _pieces(item["text"]):
            events.append({"type": "content-delta", "index": i, "delta": {"message": {"content": {"text": piece}}}})
        events.append({"type": "content-end", "index": i})
    events.append({"type": "message-end", "delta": {"finish_reason": reply["finish_reason"], "usage": reply["usage"]}})
    return events


async def _stream(request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    await response.write_eof()
    return response


def _embed(body: dict[str, Any]) -> dict[str, Any]:
    _unknown(body, _EMBED_FIELDS, "request")
    model = body.get("model")
    if not model:
        raise Invalid("invalid request: a model parameter is required for this endpoint.")
    if "embed" not in model:
        raise Invalid(f"invalid request: model '{model}' is not supported by the embed API")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or len(texts) > 96 or not all(isinstance(t, str) for t in texts):
        raise Invalid("invalid request: texts must be a list of 1 to 96 strings")
    if body.get("input_type") not in _INPUT_TYPES:
        raise Invalid("invalid request: valid input_type must be provided with the provided model")
    types = body.get("embedding_types")
    if not isinstance(types, list) or not types or not set(types) <= _EMBEDDING_TYPES:
        raise Invalid("invalid request: embedding_types must be a non-empty list of float, int8, uint8, binary, ubinary, base64")
    dimensions = body.get("output_dimension", 8)
    if "output_dimension" in body and dimensions not in (256, 512, 1024, 1536):
        raise Invalid("invalid request: output_dimension must be one of 256, 512, 1024, 1536")
    vectors = [_vector(text, dimensions) for text in texts]
    tokens = sum(len(text.split()) for text in texts)
    return {
        "id": f"fake-embed-{next(_ids)}",
        "embeddings": {kind: vectors for kind in types if kind == "float"},
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        "response_type": "embeddings_by_type",
    }


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector; float32-exact values so base64 round trips compare equal."""
    digest = b""
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest + text.encode()).digest()
    return [(b - 128) / 128 for b in digest[:dimensions]]
