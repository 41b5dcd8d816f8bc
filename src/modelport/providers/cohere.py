"""Cohere adapter: unified chat, embeddings and rerank in Cohere's v2 API.

    chat        POST {origin}/v2/chat     (``"stream": true`` for server-sent events)
    embeddings  POST {origin}/v2/embed
    rerank      POST {origin}/v2/rerank   (the unified rerank is Cohere's own shape; v2 takes documents as
                                           strings and no longer returns them, so ``return_documents``
                                           is answered here from the request)

Formats: https://docs.cohere.com/v2/reference/chat, https://docs.cohere.com/v2/docs/streaming,
https://docs.cohere.com/v2/reference/embed, https://docs.cohere.com/v2/reference/rerank. The spec's base URL is the v1 root (``/v1`` is what the
proxy route forwards to), so the v2 URLs are derived from it here.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.providers.base import Endpoint, Target, UpstreamRequest
from modelport.providers.openai_shapes import (
    ChunkStream,
    chat_messages,
    choice,
    completion,
    completion_id,
    embedding_list,
    embedding_texts,
    error_type,
    finish_reason,
    include_usage,
    json_value,
    max_tokens,
    openai_error,
    raw_error_message,
    refuse_unsupported,
    stop_sequences,
    text_parts,
    token_usage,
    tool_call,
)

PROVIDER = "cohere"

_CHAT_PARAMETERS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k", "max_tokens",
    "max_completion_tokens", "stop", "seed", "frequency_penalty", "presence_penalty", "tools",
    "tool_choice", "response_format", "user",
})
_EMBEDDING_PARAMETERS = frozenset({"model", "input", "dimensions", "encoding_format", "user", "input_type"})
_RERANK_PARAMETERS = frozenset({"model", "query", "documents", "top_n", "return_documents", "max_tokens_per_doc"})
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


class CohereAdapter:
    """Translation between the unified (OpenAI) API and Cohere's v2 API."""

    def build_request(
        self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool
    ) -> UpstreamRequest:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint == "chat":
            refuse_unsupported(body, _CHAT_PARAMETERS, PROVIDER, strict, _HARMLESS_VALUES)
            stream = bool(body.get("stream"))
            if stream:
                headers["accept"] = "text/event-stream"
            payload = orjson.dumps(_chat_body(body))
            return UpstreamRequest("POST", f"{_v2_root(target)}/chat", headers, payload, stream)
        if endpoint == "embeddings":
            refuse_unsupported(body, _EMBEDDING_PARAMETERS, PROVIDER, strict, _HARMLESS_VALUES)
            return UpstreamRequest("POST", f"{_v2_root(target)}/embed", headers, orjson.dumps(_embed_body(body)))
        if endpoint == "rerank":
            refuse_unsupported(body, _RERANK_PARAMETERS, PROVIDER, strict)
            return UpstreamRequest("POST", f"{_v2_root(target)}/rerank", headers, orjson.dumps(_rerank_body(body)))
        raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")

    def parse_response(
        self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]
    ) -> bytes:
        data = orjson.loads(body)
        if endpoint == "embeddings":
            return orjson.dumps(_embedding_list(data, request_body))
        if endpoint == "rerank":
            return orjson.dumps(_ranked(data, request_body))
        return orjson.dumps(_completion(data, request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> CohereChatStream:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        return CohereChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        """Cohere answers ``{"message": ...}`` (often with an ``id``); some v2 errors carry ``data``."""
        data = json_value(body)
        message = None
        if isinstance(data, dict):
            message = data.get("message") or data.get("data")
            if isinstance(data.get("error"), dict):  # already OpenAI-shaped (a proxy in front of Cohere)
                message = message or data["error"].get("message")
        return openai_error(str(message or raw_error_message(status, body, "Cohere")), error_type(status))


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


def _chat_body(body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": body.get("model"), "messages": [_message(m) for m in chat_messages(body)]}
    payload.update({native: body[name] for name, native in _SAMPLING_FIELDS.items() if body.get(name) is not None})
    if (limit := max_tokens(body)) is not None:
        payload["max_tokens"] = limit
    if stop := stop_sequences(body):
        payload["stop_sequences"] = stop
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
    return "".join(text_parts(content, role))


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
    """Cohere v2 tool calls have OpenAI's shape, in both directions."""
    function = call.get("function") or {}
    return tool_call(call.get("id"), function.get("name"), function.get("arguments") or "{}")


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
    payload: dict[str, Any] = {
        "model": body.get("model"),
        "texts": embedding_texts(body, PROVIDER),
        # Cohere v3+ models refuse a request without input_type; OpenAI has none, and documents are
        # the common case. Callers may pass Cohere's input_type through the unified body.
        "input_type": body.get("input_type") or "search_document",
        "embedding_types": ["float"],
    }
    if body.get("dimensions") is not None:
        payload["output_dimension"] = body["dimensions"]
    return payload


# --------------------------------------------------------------------------------------- responses


def _rerank_body(body: dict[str, Any]) -> dict[str, Any]:
    """Portkey's unified rerank takes documents as strings or ``{"text": ...}`` objects; Cohere v2 strings."""
    documents = body.get("documents")
    if not isinstance(documents, list):
        raise ValueError("'documents' must be a list of strings or objects with a 'text' string")
    native = {"model": body.get("model"), "query": body.get("query"), "documents": [_document_text(d) for d in documents]}
    for name in ("top_n", "max_tokens_per_doc"):
        if body.get(name) is not None:
            native[name] = body[name]
    return native


def _document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return document["text"]
    raise ValueError("each of 'documents' must be a string or an object with a 'text' string "
                     "(Cohere v2 ranks text: put structured fields into it, e.g. as YAML)")


def _ranked(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    """Cohere's answer as it is, with each result's document when the caller asked for them back."""
    if not request_body.get("return_documents"):
        return data
    texts = [_document_text(d) for d in request_body["documents"]]
    for result in data.get("results") or ():
        index = result.get("index")
        if isinstance(index, int) and 0 <= index < len(texts):
            result["document"] = {"text": texts[index]}
    return data


def _completion(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    message = data.get("message") or {}
    text = "".join(item.get("text", "") for item in message.get("content") or [] if item.get("type") == "text")
    tool_calls = [_tool_call(call) for call in message.get("tool_calls") or []]
    only = choice(text, tool_calls, finish_reason(data.get("finish_reason"), _FINISH_REASONS))
    return completion(data.get("id") or completion_id(), request_body.get("model"), [only], _usage(data.get("usage") or {}))


def _usage(reported: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Cohere's. ``billed_units`` is what Cohere charges for; ``tokens`` also
    counts the prompt Cohere wraps around the messages, so it is only the fallback."""
    counts = reported.get("billed_units") or reported.get("tokens") or {}
    return token_usage(int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0))


def _embedding_list(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    embeddings = data.get("embeddings")
    vectors = embeddings.get("float", []) if isinstance(embeddings, dict) else embeddings or []
    tokens = int(((data.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0)
    return embedding_list(vectors, request_body.get("model"), tokens, request_body.get("encoding_format"))


# ----------------------------------------------------------------------------------------- streams


class CohereChatStream(ChunkStream):
    """Cohere v2 stream events (``data:`` objects typed by ``type``) to OpenAI chunks."""

    def __init__(self, request_body: dict[str, Any]) -> None:
        super().__init__(request_body.get("model"), include_usage(request_body), completion_id())
        self._tool_calls = 0

    def _translate(self, event: dict[str, Any]) -> bytes:
        kind = event.get("type")
        message = (event.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self.id = event.get("id") or self.id
            return self._delta({"role": "assistant", "content": ""})
        if kind == "content-delta":
            text = (message.get("content") or {}).get("text")
            return self._delta({"content": text}) if text else b""
        if kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            self._tool_calls += 1
            start = tool_call(call.get("id"), function.get("name"), function.get("arguments") or "")
            return self._delta({"tool_calls": [{"index": self._tool_calls - 1, **start}]})
        if kind == "tool-call-delta":
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if not arguments:
                return b""
            return self._delta({"tool_calls": [{"index": self._tool_calls - 1, "function": {"arguments": arguments}}]})
        if kind == "message-end":
            delta = event.get("delta") or {}
            self.usage = _usage(delta.get("usage") or {})
            return self._delta({}, finish_reason(delta.get("finish_reason"), _FINISH_REASONS)) + self._close()
        return b""  # content-start/-end, tool-plan-delta, tool-call-end, citations, debug


ADAPTER = CohereAdapter()
