"""Cohere adapter: unified chat and embeddings in Cohere's v2 API.

    chat        POST {origin}/v2/chat     (``"stream": true`` for server-sent events)
    embeddings  POST {origin}/v2/embed

Formats: https://docs.cohere.com/v2/reference/chat, https://docs.cohere.com/v2/docs/streaming,
https://docs.cohere.com/v2/reference/embed. The spec's base URL is the v1 root (``/v1`` is what the
proxy route forwards to), so the v2 URLs are derived from it here.
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from typing import Any

import orjson

from modelport.providers.base import Endpoint, Target, UnsupportedParameter, UpstreamRequest
from modelport.sse import SSEParser, encode_event

PROVIDER = "cohere"

_CHAT_PARAMETERS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k", "max_tokens",
    "max_completion_tokens", "stop", "seed", "frequency_penalty", "presence_penalty", "tools",
    "tool_choice", "response_format", "user",
})
_EMBEDDING_PARAMETERS = frozenset({"model", "input", "dimensions", "encoding_format", "user", "input_type"})
# Parameters accepted only with values that change nothing for Cohere.
_HARMLESS_VALUES: dict[str, tuple[Any, ...]] = {"n": (1,), "logprobs": (False,), "parallel_tool_calls": (True,)}
_SAMPLING_FIELDS = {
    "temperature": "temperature", "top_p": "p", "top_k": "k", "seed": "seed",
    "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
}
_FINISH_REASONS = {
    "COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
    "ERROR": "stop", "TIMEOUT": "stop",
}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 422: "invalid_request_error", 429: "rate_limit_error"}


class CohereAdapter:
    """Translation between the unified (OpenAI) API and Cohere's v2 API."""

    def build_request(
        self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool
    ) -> UpstreamRequest:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint == "chat":
            _check_parameters(body, _CHAT_PARAMETERS, strict)
            stream = bool(body.get("stream"))
            if stream:
                headers["accept"] = "text/event-stream"
            payload = orjson.dumps(_chat_body(body))
            return UpstreamRequest("POST", f"{_v2_root(target)}/chat", headers, payload, stream)
        if endpoint == "embeddings":
            _check_parameters(body, _EMBEDDING_PARAMETERS, strict)
            return UpstreamRequest("POST", f"{_v2_root(target)}/embed", headers, orjson.dumps(_embed_body(body)))
        raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")

    def parse_response(
        self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]
    ) -> bytes:
        data = orjson.loads(body)
        if endpoint == "embeddings":
            return orjson.dumps(_embeddings(data, request_body))
        return orjson.dumps(_completion(data, request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> CohereChatStream:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        return CohereChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        """Cohere answers ``{"message": ...}`` (often with an ``id``); some v2 errors carry ``data``."""
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        message = None
        if isinstance(data, dict):
            message = data.get("message") or data.get("data")
            if isinstance(data.get("error"), dict):  # already OpenAI-shaped (a proxy in front of Cohere)
                message = message or data["error"].get("message")
        if not message:  # not JSON: keep the start of it (an HTML error page can be long)
            message = body.decode("utf-8", "replace").strip()[:500] or f"Cohere returned HTTP {status}."
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": str(message), "type": kind, "param": None, "code": None}}


# ---------------------------------------------------------------------------------------- requests


def _v2_root(target: Target) -> str:
    """``https://api.cohere.com/v1`` -> ``https://api.cohere.com/v2``. Only a trailing version is
    replaced, so a custom host with a path prefix (``https://proxy/cohere/v1``) keeps its prefix."""
    root = target.base_url.rstrip("/")
    for version in ("/v1", "/v2"):
        if root.endswith(version):
            root = root[: -len(version)]
            break
    return f"{root}/v2"


def _check_parameters(body: dict[str, Any], accepted: frozenset[str], strict: bool) -> None:
    """Under strict compliance, refuse what Cohere cannot honour; lenient requests just lose it
    (the native body is built only from parameters that map)."""
    if not strict:
        return
    for name in sorted(body):
        value = body[name]
        if name in accepted or value is None or value in _HARMLESS_VALUES.get(name, ()):
            continue
        raise UnsupportedParameter(name, PROVIDER)


def _chat_body(body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body.get("messages"))}
    payload.update({native: body[name] for name, native in _SAMPLING_FIELDS.items() if body.get(name) is not None})
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        # Cohere can force "a tool" but not a named one: offering only that tool is the same thing.
        name = choice["function"]["name"]
        tools = [tool for tool in tools if (tool.get("function") or {}).get("name") == name]
        if not tools:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools.")
        choice = "required"
    if tools:
        payload["tools"] = [_tool(tool) for tool in tools]
    if choice in ("none", "required"):
        payload["tool_choice"] = choice.upper()
    elif choice not in (None, "auto"):
        raise ValueError(f"Unsupported tool_choice {choice!r}.")
    if format_ := _response_format(body.get("response_format")):
        payload["response_format"] = format_
    if body.get("stream"):
        payload["stream"] = True
    return payload


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list.")
    return [_message(message) for message in messages]


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text(content, role)}
    if role == "user":
        return {"role": "user", "content": content if isinstance(content, str) else _user_content(content)}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = _text(content, role)
        if text:
            out["content"] = text
        if message.get("tool_calls"):
            out["tool_calls"] = [_tool_call(call) for call in message["tool_calls"]]
        return out
    if role == "tool":
        return {"role": "tool", "tool_call_id": message.get("tool_call_id"), "content": _text(content, role)}
    raise ValueError(f"Message role {role!r} is not supported by provider '{PROVIDER}'.")


def _text(content: Any, role: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if any(part.get("type") != "text" for part in content):
        raise ValueError(f"Only text content is supported in {role} messages.")
    return "".join(part.get("text", "") for part in content)


def _user_content(content: Any) -> list[dict[str, Any]]:
    parts = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            image = image if isinstance(image, dict) else {"url": image}
            parts.append({"type": "image_url", "image_url": {k: image[k] for k in ("url", "detail") if image.get(k)}})
        else:
            raise ValueError(f"Content part type {kind!r} is not supported by provider '{PROVIDER}'.")
    return parts


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": function.get("arguments") or "{}"},
    }


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise ValueError(f"Tool type {tool.get('type')!r} is not supported by provider '{PROVIDER}'.")
    function = tool.get("function") or {}
    declared = {k: function[k] for k in ("name", "description", "parameters") if function.get(k) is not None}
    return {"type": "function", "function": declared}


def _response_format(response_format: Any) -> dict[str, Any] | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        # OpenAI wraps the schema ({"name", "schema", "strict"}); Cohere takes the schema itself.
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    return {"type": "text"} if kind == "text" else None


def _embed_body(body: dict[str, Any]) -> dict[str, Any]:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"Provider '{PROVIDER}' embeds strings only; 'input' must be a string or a list of strings.")
    payload: dict[str, Any] = {
        "model": body.get("model"),
        "texts": texts,
        # Cohere v3+ models refuse a request without input_type; OpenAI has none, and documents are
        # the common case. Callers may pass Cohere's input_type through the unified body.
        "input_type": body.get("input_type") or "search_document",
        "embedding_types": ["float"],
    }
    if body.get("dimensions") is not None:
        payload["output_dimension"] = body["dimensions"]
    return payload


# --------------------------------------------------------------------------------------- responses


def _completion(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    message = data.get("message") or {}
    text = "".join(item.get("text", "") for item in message.get("content") or [] if item.get("type") == "text")
    tool_calls = [_tool_call(call) for call in message.get("tool_calls") or []]
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    finish = _FINISH_REASONS.get(data.get("finish_reason", ""), "stop")
    return {
        "id": data.get("id") or f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request_body.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(data.get("usage") or {}),
    }


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Cohere's. ``billed_units`` is what Cohere charges for; ``tokens`` also
    counts the prompt Cohere wraps around the messages, so it is only the fallback."""
    counts = usage.get("billed_units") or usage.get("tokens") or {}
    prompt = int(counts.get("input_tokens") or 0)
    completion = int(counts.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _embeddings(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    embeddings = data.get("embeddings")
    vectors = embeddings.get("float", []) if isinstance(embeddings, dict) else embeddings or []
    as_base64 = request_body.get("encoding_format") == "base64"
    items = [
        {"object": "embedding", "index": i, "embedding": _base64_floats(v) if as_base64 else v}
        for i, v in enumerate(vectors)
    ]
    tokens = int(((data.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0)
    return {
        "object": "list",
        "data": items,
        "model": request_body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _base64_floats(values: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32. The openai SDK asks for it by default."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


# ----------------------------------------------------------------------------------------- streams


class CohereChatStream:
    """Cohere v2 stream events (``data:`` objects typed by ``type``) to OpenAI chunks."""

    def __init__(self, request_body: dict[str, Any]) -> None:
        self.usage: dict[str, Any] | None = None
        self._parser = SSEParser()
        self._id = f"chatcmpl-{secrets.token_hex(12)}"
        self._created = int(time.time())
        self._model = request_body.get("model")
        self._include_usage = bool((request_body.get("stream_options") or {}).get("include_usage"))
        self._tool_calls = 0
        self._started = False
        self._ended = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._translate(event.data) for event in self._parser.feed(chunk))

    def finish(self) -> bytes:
        tail = b"".join(self._translate(event.data) for event in self._parser.finish())
        if self._include_usage and self.usage is not None:
            tail += self._chunk(None, None, usage=self.usage)
        return tail + b"data: [DONE]\n\n"

    def _translate(self, data: str) -> bytes:
        try:
            event = orjson.loads(data) if not self._ended and data.strip() not in ("", "[DONE]") else None
        except orjson.JSONDecodeError:
            event = None  # not Cohere's; dropping one malformed event beats breaking the stream
        if not isinstance(event, dict):
            return b""
        kind = event.get("type")
        message = (event.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self._id = event.get("id") or self._id
            return self._chunk({"role": "assistant", "content": ""}, None)
        if kind == "content-delta":
            text = (message.get("content") or {}).get("text")
            return self._chunk({"content": text}, None) if text else b""
        if kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            self._tool_calls += 1
            delta = {"index": self._tool_calls - 1, "id": call.get("id"), "type": "function",
                     "function": {"name": function.get("name"), "arguments": function.get("arguments") or ""}}
            return self._chunk({"tool_calls": [delta]}, None)
        if kind == "tool-call-delta":
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if not arguments:
                return b""
            return self._chunk({"tool_calls": [{"index": self._tool_calls - 1, "function": {"arguments": arguments}}]}, None)
        if kind == "message-end":
            self._ended = True
            delta = event.get("delta") or {}
            self.usage = _usage(delta.get("usage") or {})
            return self._chunk({}, _FINISH_REASONS.get(delta.get("finish_reason", ""), "stop"))
        return b""  # content-start/-end, tool-plan-delta, tool-call-end, citations, debug

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None, usage: dict[str, Any] | None = None
    ) -> bytes:
        choices = []
        if delta is not None:
            if not self._started:  # OpenAI's first delta carries the role
                self._started = True
                delta = {"role": "assistant", **delta}
            choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish})
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage  # OpenAI: null on every chunk but the last when usage is asked for
        return encode_event(orjson.dumps(chunk).decode())


ADAPTER = CohereAdapter()
