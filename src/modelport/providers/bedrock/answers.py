"""Bedrock Converse answers in OpenAI's shapes: a completion, a chunk stream, an error.

The stream is AWS event-stream framing (``eventstream``), not SSE: ``messageStart``, then per content
block ``contentBlockStart`` (a tool call's id and name), ``contentBlockDelta`` (text, or a piece of
the tool input's JSON) and ``contentBlockStop``, then ``messageStop`` (the stop reason) and
``metadata`` (usage). An error after the 200 is a message of type ``exception``.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.providers.bedrock.eventstream import Decoder, FramingError, Message
from modelport.providers.openai_shapes import (
    ChunkStream,
    choice,
    completion,
    completion_id,
    error_type,
    finish_reason,
    include_usage,
    json_value,
    openai_error,
    raw_error_message,
    token_usage,
    tool_call,
)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Bedrock's error names (x-amzn-errortype, or an in-stream exception) by status, for the OpenAI code.
_ERROR_CODES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                424: "ModelErrorException", 429: "ThrottlingException", 500: "InternalServerException",
                503: "ServiceUnavailableException"}
_EXCEPTION_STATUS = {"validationException": 400, "accessDeniedException": 403, "throttlingException": 429,
                     "modelStreamErrorException": 424, "serviceUnavailableException": 503,
                     "internalServerException": 500, "modelTimeoutException": 408}


def openai_usage(native: dict[str, Any]) -> dict[str, Any]:
    """Converse usage in OpenAI's shape: ``inputTokens`` leaves out cached tokens, so the prompt is input +
    cache read + cache write, and the cache counts are kept for pricing."""
    cache_read = native.get("cacheReadInputTokens") or 0
    cache_write = native.get("cacheWriteInputTokens") or 0
    usage = token_usage((native.get("inputTokens") or 0) + cache_read + cache_write, native.get("outputTokens") or 0,
                        native.get("totalTokens"))
    if cache_read or cache_write:
        usage["prompt_tokens_details"] = {"cached_tokens": cache_read, "cache_write_tokens": cache_write}
    return usage


def to_chat_completion(answer: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    blocks = ((answer.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(block["text"] for block in blocks if isinstance(block.get("text"), str))
    calls = [tool_call(use.get("toolUseId"), use.get("name"), orjson.dumps(use.get("input") or {}).decode())
             for block in blocks if isinstance(use := block.get("toolUse"), dict)]
    finish = finish_reason(answer.get("stopReason"), FINISH_REASONS)
    return completion(completion_id(), request_body.get("model"), [choice(text, calls, finish)],
                      openai_usage(answer.get("usage") or {}))


def to_openai_error(status: int, body: bytes) -> dict[str, Any]:
    """Bedrock's ``{"message": ...}`` (its type travels in x-amzn-errortype) in OpenAI's shape."""
    data = json_value(body)
    message = data.get("message") or data.get("Message") if isinstance(data, dict) else None
    if not isinstance(message, str):
        message = raw_error_message(status, body, "Bedrock")
    return openai_error(message, error_type(status), _ERROR_CODES.get(status))


class ConverseChatStream(ChunkStream):
    """ConverseStream events to OpenAI ``chat.completion.chunk``s."""

    def __init__(self, request_body: dict[str, Any]) -> None:
        super().__init__(request_body.get("model"), include_usage(request_body), completion_id())
        self._decoder = Decoder()
        self._tool_indexes: dict[int, int] = {}  # content block index -> OpenAI tool call index

    def feed(self, chunk: bytes) -> bytes:
        if self._failed or self._closed:
            return b""
        try:
            return b"".join(self._message(message) for message in self._decoder.feed(chunk))
        except FramingError as error:
            return self._fail(openai_error(f"Bedrock stream was malformed: {error}", "server_error", "bad_stream"))

    def finish(self) -> bytes:
        if self._decoder.pending and not (self._failed or self._closed):
            tail = self._fail(openai_error("Bedrock stream ended in the middle of an event.", "server_error",
                                           "truncated_stream"))
            return tail + self._close()
        return self._close()

    def _message(self, message: Message) -> bytes:
        if self._failed or self._closed:
            return b""
        data = json_value(message.payload)
        data = data if isinstance(data, dict) else {}
        if message.message_type != "event":  # "exception" or "error": what failed after the 200
            name = message.event_type or "error"
            text = data.get("message") or f"Bedrock stream failed: {name}"
            return self._fail(openai_error(text, error_type(_EXCEPTION_STATUS.get(name, 500)), name))
        return self._event(message.event_type, data)

    def _event(self, kind: str | None, data: dict[str, Any]) -> bytes:
        if kind == "messageStart":
            return self._delta({})
        if kind == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return b""
            index = self._tool_indexes.setdefault(data.get("contentBlockIndex", 0), len(self._tool_indexes))
            return self._delta({"tool_calls": [{"index": index, **tool_call(use.get("toolUseId"), use.get("name"), "")}]})
        if kind == "contentBlockDelta":
            delta = data.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return self._delta({"content": delta["text"]})
            piece = (delta.get("toolUse") or {}).get("input")
            if isinstance(piece, str):
                index = self._tool_indexes.setdefault(data.get("contentBlockIndex", 0), len(self._tool_indexes))
                return self._delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            return b""  # reasoning content and the like have no place in a chat chunk
        if kind == "messageStop":
            return self._delta({}, finish_reason(data.get("stopReason"), FINISH_REASONS))
        if kind == "metadata" and isinstance(data.get("usage"), dict):
            self.usage = openai_usage(data["usage"])
        return b""
