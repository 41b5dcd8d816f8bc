"""Gemini's answers in OpenAI's shape: completions, streamed chunks, embeddings and errors.

Formats: https://ai.google.dev/api/generate-content#generatecontentresponse (one response, and each
``data:`` event of ``streamGenerateContent?alt=sse``), https://ai.google.dev/api/embeddings, and Google's
error model (``{"error": {"code", "message", "status", "details"}}``, https://ai.google.dev/gemini-api/docs/troubleshooting).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from modelport.providers.openai_shapes import (
    ChunkStream,
    choice,
    completion,
    completion_id,
    embedding_list,
    error_type,
    finish_reason,
    include_usage,
    json_value,
    openai_error,
    raw_error_message,
    token_usage,
    tool_call,
)

_FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def to_chat_completion(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    choices = [_choice(candidate) for candidate in data.get("candidates") or []]
    if not choices:  # the prompt itself was blocked: promptFeedback.blockReason, no candidates
        choices = [choice("", [], "content_filter")]
    model = data.get("modelVersion") or _model_id(request_body)
    return completion(completion_id(data.get("responseId")), model, choices, _usage(data.get("usageMetadata") or {}))


def to_embedding_list(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    vectors = [data["embedding"]["values"]] if "embedding" in data else [e["values"] for e in data.get("embeddings", [])]
    # The Gemini API reports no token count for embeddings unless usageMetadata is present.
    tokens = (data.get("usageMetadata") or {}).get("promptTokenCount", 0)
    return embedding_list(vectors, _model_id(request_body), tokens, request_body.get("encoding_format"))


def _choice(candidate: dict[str, Any]) -> dict[str, Any]:
    text, tool_calls = _text_and_calls(candidate)
    finish = "tool_calls" if tool_calls else finish_reason(candidate.get("finishReason"), _FINISH_REASONS)
    return choice(text, tool_calls, finish, candidate.get("index", 0))


def _text_and_calls(candidate: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The answer text (thought summaries left out) and the function calls of one candidate."""
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(part["text"] for part in parts if "text" in part and not part.get("thought"))
    return text, [_tool_call(part) for part in parts if "functionCall" in part]


def _tool_call(part: dict[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    arguments = orjson.dumps(call.get("args") or {}).decode()
    openai_call = tool_call(call.get("id") or f"call_{secrets.token_hex(12)}", call.get("name", ""), arguments)
    if part.get("thoughtSignature"):
        # Gemini 3 needs the signature back with the call (see google.py); it rides where Google's own
        # OpenAI-compatible endpoint puts it.
        openai_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return openai_call


def _usage(meta: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from ``usageMetadata``. Thinking tokens are billed as output, so they count as
    completion tokens, as OpenAI counts reasoning tokens."""
    prompt = meta.get("promptTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    completion_tokens = meta.get("candidatesTokenCount", 0) + thoughts
    counts = token_usage(prompt, completion_tokens, meta.get("totalTokenCount"))
    if meta.get("cachedContentTokenCount"):
        counts["prompt_tokens_details"] = {"cached_tokens": meta["cachedContentTokenCount"]}
    if thoughts:
        counts["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return counts


def _model_id(request_body: dict[str, Any]) -> str:
    return str(request_body.get("model", "")).removeprefix("models/")


class GeminiChatStream(ChunkStream):
    """Gemini SSE (each ``data:`` a GenerateContentResponse) to OpenAI ``chat.completion.chunk``s."""

    def __init__(self, request_body: dict[str, Any]) -> None:
        super().__init__(_model_id(request_body), include_usage(request_body))
        self._tool_calls: dict[int, int] = {}  # choice index -> tool calls so far

    def _translate(self, response: dict[str, Any]) -> bytes:
        if "error" in response:  # an error after the 200
            return self._fail(_openai_error(500, response["error"]))
        self.id = self.id or completion_id(response.get("responseId"))
        self.model = response.get("modelVersion") or self.model
        if response.get("usageMetadata"):
            self.usage = _usage(response["usageMetadata"])
        candidates = response.get("candidates") or []
        if not candidates and (response.get("promptFeedback") or {}).get("blockReason"):
            return self._delta({}, "content_filter")
        return b"".join(self._candidate(candidate) for candidate in candidates)

    def _candidate(self, candidate: dict[str, Any]) -> bytes:
        index = candidate.get("index", 0)
        text, calls = _text_and_calls(candidate)
        delta: dict[str, Any] = {"content": text} if text else {}
        if calls:
            first = self._tool_calls.get(index, 0)
            delta["tool_calls"] = [{"index": first + i, **call} for i, call in enumerate(calls)]
            self._tool_calls[index] = first + len(calls)
        out = self._delta(delta, None, index) if delta or index not in self._started else b""
        if candidate.get("finishReason"):
            reason = finish_reason(candidate["finishReason"], _FINISH_REASONS)
            out += self._delta({}, "tool_calls" if self._tool_calls.get(index) else reason, index)
        return out


def to_openai_error(status: int, body: bytes) -> dict[str, Any]:
    """``{"error": {"code", "message", "status", "details"}}`` (a list of them from a non-SSE stream)
    in OpenAI's shape."""
    data = json_value(body)
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return openai_error(raw_error_message(status, body, "Gemini"), error_type(status))
    return _openai_error(status, error)


def _openai_error(status: int, error: dict[str, Any]) -> dict[str, Any]:
    message = error.get("message") or f"Gemini returned HTTP {status}."
    body = openai_error(message, error_type(error.get("code") or status), error.get("status"))
    # Google answers a wrong key with 400 INVALID_ARGUMENT; the ErrorInfo reason says what it is.
    reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
    if "API_KEY_INVALID" in reasons:
        body["error"].update(type="authentication_error", code="invalid_api_key")
    return body
