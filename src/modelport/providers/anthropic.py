"""Anthropic: unified chat (OpenAI format) translated to the Messages API; native ``/v1/messages`` passed through.

Formats: docs.anthropic.com/en/api/messages (request and response), /en/docs/build-with-claude/streaming
(event sequence), /en/api/errors (error shape). OpenAI's side: platform.openai.com/docs/api-reference/chat.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.providers.base import (
    Endpoint,
    Target,
    UnsupportedParameter,
    UpstreamRequest,
)
from modelport.providers.openai_shapes import (
    ChunkStream,
    RelayStream,
    chat_messages,
    choice,
    completion,
    finish_reason,
    include_usage,
    json_value,
    max_tokens,
    openai_error,
    raw_error_message,
    refuse_unsupported,
    stop_sequences,
    token_usage,
    tool_arguments,
    tool_call,
)
from modelport.providers.registry import ANTHROPIC_VERSION
from modelport.sse import ServerSentEvent

PROVIDER = "anthropic"
DEFAULT_VERSION = ANTHROPIC_VERSION.default  # declared with the provider (registry.py): one source
# Anthropic requires max_tokens; OpenAI callers usually omit it.
DEFAULT_MAX_TOKENS = 4096
DEFAULT_HEADERS = {"anthropic-version": DEFAULT_VERSION}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type -> OpenAI error type; the Anthropic type is kept as ``code``.
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "billing_error": "insufficient_quota",
    "timeout_error": "timeout_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
}
STATUS_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                      404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                      504: "timeout_error", 529: "overloaded_error"}

# Unified chat parameters this adapter translates (or consumes itself, like stream_options).
TRANSLATED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "top_k",
    "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "user", "response_format",
    "thinking",
})
# OpenAI parameters Anthropic lacks, at values that change nothing: accepted even under strict compliance.
NEUTRAL = {"n": (1,), "frequency_penalty": (0,), "presence_penalty": (0,), "logprobs": (False,),
           "store": (False,), "modalities": (["text"],)}
JSON_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


class AnthropicAdapter:
    """OpenAI chat <-> Anthropic Messages; ``messages`` endpoint passes the native body through."""

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        headers = {"content-type": "application/json", **_version_headers(target)}
        url = f"{target.base_url}/messages"
        if endpoint == "messages":
            return UpstreamRequest("POST", url, headers, orjson.dumps(body), bool(body.get("stream")))
        if endpoint != "chat":
            raise ValueError(f"Anthropic does not serve the '{endpoint}' endpoint through the unified API.")
        native = to_messages_request(body, strict)
        return UpstreamRequest("POST", url, headers, orjson.dumps(native), bool(native.get("stream")))

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        if endpoint == "messages":
            return body
        return orjson.dumps(to_chat_completion(orjson.loads(body)))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> ChatStream | MessagesStream:
        if endpoint == "messages":
            return MessagesStream()
        return ChatStream(include_usage(request_body))

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return to_openai_error(status, body)


ADAPTER = AnthropicAdapter()


def _version_headers(target: Target) -> dict[str, str]:
    headers = {"anthropic-version": str(target.settings.get("anthropic_version") or DEFAULT_VERSION)}
    if target.settings.get("anthropic_beta"):
        headers["anthropic-beta"] = str(target.settings["anthropic_beta"])
    return headers


# --- request: OpenAI chat -> Anthropic messages ---------------------------------------------------


def to_messages_request(body: dict[str, Any], strict: bool) -> dict[str, Any]:
    """Translate a unified chat body; raise UnsupportedParameter (strict) or drop what Anthropic lacks."""
    refuse_unsupported(body, TRANSLATED, PROVIDER, strict, NEUTRAL)
    system, turns = _translate_messages(chat_messages(body))
    system.extend(_json_instruction(body.get("response_format"), strict))
    native: dict[str, Any] = {
        "model": body.get("model"),
        "messages": turns,
        "max_tokens": max_tokens(body) or DEFAULT_MAX_TOKENS,
    }
    if native["model"] is None:
        del native["model"]  # let Anthropic say "model: Field required"
    if system:
        native["system"] = system
    if stop := stop_sequences(body):
        native["stop_sequences"] = stop
    for name in ("temperature", "top_p", "top_k", "thinking"):
        if body.get(name) is not None:
            native[name] = body[name]
    if body.get("stream"):
        native["stream"] = True
    if body.get("user"):
        native["metadata"] = {"user_id": str(body["user"])}
    tools = [t for t in (_tool(tool, strict) for tool in body.get("tools") or []) if t is not None]
    if tools:
        native["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            native["tool_choice"] = choice
    return native


def _json_instruction(response_format: Any, strict: bool) -> list[dict[str, Any]]:
    """JSON mode has no Anthropic switch: lenient callers get an instruction in the system prompt."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return []
    if strict:
        raise UnsupportedParameter("response_format", PROVIDER)
    instruction = JSON_INSTRUCTION
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema:
        instruction += " It must match this JSON schema: " + orjson.dumps(schema).decode()
    return [{"type": "text", "text": instruction}]


def _translate_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating turns). Every system/developer message joins ``system``; tool
    results become user turns; consecutive same-role turns merge, since Anthropic wants alternation."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), i))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            raise ValueError(f"messages[{i}]: role '{role}' cannot be sent to Anthropic.")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # tool_result blocks must open the user turn that answers a tool_use (api/messages).
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, turns


def _text_block(part: dict[str, Any]) -> dict[str, Any] | None:
    text = part.get("text") or ""
    if not text:
        return None  # Anthropic refuses empty text blocks
    block = {"type": "text", "text": text}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") not in ("text", "refusal"):
            raise ValueError(f"messages[{i}]: only text content is allowed here, got '{part.get('type')}'.")
        block = _text_block({**part, "text": part.get("text") or part.get("refusal")})
        if block:
            blocks.append(block)
    return blocks


def _user_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, i)
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part)
        elif kind == "image_url":
            block = {"type": "image", "source": _source((part.get("image_url") or {}).get("url", ""), i)}
        elif kind == "file":
            block = _document((part.get("file") or {}), i)
        else:
            raise ValueError(f"messages[{i}]: content of type '{kind}' cannot be sent to Anthropic.")
        if block:
            if part.get("cache_control") and "cache_control" not in block:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _source(url: str, i: int) -> dict[str, Any]:
    """An image URL as an Anthropic source: data: URLs inline (base64), http(s) by reference."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise ValueError(f"messages[{i}]: data URLs must be base64-encoded (data:<type>;base64,...).")
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise ValueError(f"messages[{i}]: an image URL must be a data: URL or an http(s) URL.")


def _document(file: dict[str, Any], i: int) -> dict[str, Any]:
    if not file.get("file_data"):
        raise ValueError(f"messages[{i}]: Anthropic needs file content inline as 'file_data' (no file ids).")
    return {"type": "document", "source": _source(file["file_data"], i)}


def _assistant_blocks(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), i)
    for call in message.get("tool_calls") or []:
        name = (call.get("function") or {}).get("name")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": name, "input": tool_arguments(call)})
    return blocks


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    if not message.get("tool_call_id"):
        raise ValueError(f"messages[{i}]: a tool message needs 'tool_call_id'.")
    content = message.get("content")
    result = content if isinstance(content, str) else _text_blocks(content, i)
    return {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": result}


def _tool(tool: dict[str, Any], strict: bool) -> dict[str, Any] | None:
    function = tool.get("function") or {}
    if tool.get("type") != "function" or not function.get("name"):
        if strict:
            raise UnsupportedParameter("tools", PROVIDER)
        return None
    if function.get("strict") and strict:
        raise UnsupportedParameter("tools[].function.strict", PROVIDER)
    native = {"name": function["name"],
              "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        native["description"] = function["description"]
    if tool.get("cache_control"):
        native["cache_control"] = tool["cache_control"]
    return native


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        native = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif choice == "required":
        native = {"type": "any"}
    elif choice == "auto" or parallel is False:
        native = {"type": "auto"}
    else:
        return None
    if parallel is False:
        native["disable_parallel_tool_use"] = True
    return native


# --- response: Anthropic message -> OpenAI chat.completion -------------------------------------


def openai_usage(native: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage in OpenAI's shape. Anthropic's ``input_tokens`` excludes cached tokens, so the
    prompt is input + cache read + cache write; the two cache counts are kept for pricing."""
    cache_read = native.get("cache_read_input_tokens") or 0
    cache_write = native.get("cache_creation_input_tokens") or 0
    prompt = (native.get("input_tokens") or 0) + cache_read + cache_write
    return {
        **token_usage(prompt, native.get("output_tokens") or 0),
        "prompt_tokens_details": {"cached_tokens": cache_read},
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }


def to_chat_completion(message: dict[str, Any]) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(tool_call(block.get("id"), block.get("name"), orjson.dumps(block.get("input") or {}).decode()))
    only = choice("".join(texts), tool_calls, finish_reason(message.get("stop_reason"), FINISH_REASONS))
    only["message"]["refusal"] = None  # Anthropic refuses by stop reason; the text is the content
    return completion(message.get("id"), message.get("model"), [only], openai_usage(message.get("usage") or {}))


def to_openai_error(status: int, body: bytes) -> dict[str, Any]:
    """``{"type":"error","error":{"type","message"}}`` -> OpenAI's error shape, keeping the message."""
    payload = json_value(body)
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    kind = error.get("type") or STATUS_ERROR_TYPES.get(status, "api_error")
    message = error.get("message") or raw_error_message(status, body, "Anthropic")
    return openai_error(message, ERROR_TYPES.get(kind, "server_error"), kind)


# --- streams -------------------------------------------------------------------------------------


def _tally(native: dict[str, Any], reported: dict[str, Any] | None) -> dict[str, Any] | None:
    """Merge one usage report into ``native``; the OpenAI usage so far (None before any).
    message_delta usage is cumulative (streaming docs): later counts replace earlier ones."""
    if reported:
        native.update({k: v for k, v in reported.items() if v is not None})
    return openai_usage(native) if native else None


class ChatStream(ChunkStream):
    """Anthropic message events -> OpenAI ``chat.completion.chunk`` SSE (then ``[DONE]``)."""

    def __init__(self, include_usage: bool) -> None:
        super().__init__(None, include_usage)
        self._native_usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool_calls index

    def _translate(self, data: dict[str, Any]) -> bytes:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = message.get("id"), message.get("model")
            self.usage = _tally(self._native_usage, message.get("usage"))
            return self._delta({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(data.get("index", 0), len(self._tool_index))
                return self._delta({"tool_calls": [{"index": index, **tool_call(block.get("id"), block.get("name"), "")}]})
            return self._delta({"content": block["text"]}) if block.get("text") else b""
        if kind == "content_block_delta":
            return self._content_delta(data.get("index", 0), data.get("delta") or {})
        if kind == "message_delta":
            self.usage = _tally(self._native_usage, data.get("usage"))
            return self._delta({}, finish_reason((data.get("delta") or {}).get("stop_reason"), FINISH_REASONS))
        if kind == "message_stop":
            return self._close()
        if kind == "error":
            return self._fail(to_openai_error(500, orjson.dumps({"error": data.get("error") or {}})))
        return b""  # ping, content_block_stop, and event types added later

    def _content_delta(self, index: int, delta: dict[str, Any]) -> bytes:
        if delta.get("type") == "text_delta":
            return self._delta({"content": delta.get("text", "")})
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            call = {"index": self._tool_index.get(index, 0), "function": {"arguments": delta["partial_json"]}}
            return self._delta({"tool_calls": [call]})
        return b""  # thinking, signature and citation deltas have no OpenAI chunk


class MessagesStream(RelayStream):
    """Native ``/v1/messages`` stream: bytes pass through untouched; usage is read on the side."""

    def __init__(self) -> None:
        super().__init__()
        self._native_usage: dict[str, Any] = {}

    def _read(self, event: ServerSentEvent) -> None:
        # Only two event types carry usage; skip parsing the (many) content deltas.
        if event.event not in ("message_start", "message_delta", "message"):
            return
        data = json_value(event.data)
        data = data if isinstance(data, dict) else {}
        reported = (data.get("message") or {}).get("usage") if data.get("type") == "message_start" else data.get("usage")
        self.usage = _tally(self._native_usage, reported)
