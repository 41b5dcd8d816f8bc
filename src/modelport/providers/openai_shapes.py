"""The OpenAI wire format, one way: reading a unified request, and building what OpenAI clients get back.

Adapters translate a provider's native format; everything OpenAI-shaped they send on is built here, so a
completion from Gemini and one from Cohere differ only in what the provider said.

Formats: platform.openai.com/docs/api-reference/chat/create (request), /chat/object (completion),
/chat-streaming (chunks, ``[DONE]``, the usage chunk of ``stream_options.include_usage``),
/embeddings/object, and the error object (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import Mapping
from typing import Any, AsyncIterator

import orjson

from modelport.providers.base import UnsupportedParameter
from modelport.sse import MAX_EVENT_BYTES, EventTooLarge, ServerSentEvent, SSEParser

DONE = b"data: [DONE]\n\n"

# HTTP status -> OpenAI error type, for providers whose errors carry no type of their own.
_STATUS_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                       404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error"}

# ------------------------------------------------------------------------------ reading a request


def refuse_unsupported(
    body: Mapping[str, Any],
    accepted: frozenset[str],
    provider: str,
    strict: bool,
    harmless: Mapping[str, tuple[Any, ...]] | None = None,
) -> None:
    """Under strict compliance, refuse the first parameter (in the caller's order) the provider cannot
    honour; lenient requests just lose it, since native bodies are built only from what maps.
    ``harmless`` lists values that change nothing (``n: 1``), accepted even when strict."""
    if not strict:
        return
    harmless = harmless or {}
    for name, value in body.items():
        if value is None or name in accepted or value in harmless.get(name, ()):
            continue
        raise UnsupportedParameter(name, provider)


class Dropper:
    """What to do with a part of a request (Messages, Responses) that OpenAI chat has no place for: drop
    it, or refuse it by name when the caller asked for strict compliance."""

    def __init__(self, provider: str, strict: bool) -> None:
        self.provider, self.strict = provider, strict

    def __call__(self, where: str) -> None:
        if self.strict:
            raise UnsupportedParameter(where, self.provider)


def chat_messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list.")
    return messages


def max_tokens(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (the current name) wins over the deprecated ``max_tokens``."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def stop_sequences(body: Mapping[str, Any]) -> list[str] | None:
    """``stop`` is a string or a list of them."""
    stop = body.get("stop")
    if not stop:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def include_usage(body: Mapping[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def tool_arguments(call: Mapping[str, Any]) -> Any:
    """The arguments of an assistant message's tool call: a JSON string in OpenAI's format."""
    try:
        return orjson.loads((call.get("function") or {}).get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise ValueError(f"Tool call {call.get('id')!r} has arguments that are not JSON.") from None


def text_parts(content: Any, role: str) -> list[str]:
    """The texts of a message's ``content`` (a string or a list of ``text`` parts), empty ones left out,
    for a provider that takes only text in ``role``'s messages (system, assistant, tool)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise ValueError(f"Only text content is supported in {role} messages.")
        if part.get("text"):
            texts.append(part["text"])
    return texts


def embedding_texts(body: Mapping[str, Any], provider: str) -> list[str]:
    """``input`` as a list of strings; token-id inputs have no meaning to other providers' tokenizers."""
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"Provider '{provider}' embeds strings only; 'input' must be a string or a list of strings.")
    return texts


# ----------------------------------------------------------------------------- building responses


def completion_id(suffix: str | None = None) -> str:
    return f"chatcmpl-{suffix or secrets.token_hex(12)}"


def tool_call(id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def choice(text: str, tool_calls: list[dict[str, Any]], finish: str, index: int = 0) -> dict[str, Any]:
    """One choice of a completion. ``content`` is null, not "", when tool calls or a content filter
    stand in for the text, as OpenAI sends it."""
    empty = None if tool_calls or finish == "content_filter" else ""
    message: dict[str, Any] = {"role": "assistant", "content": text or empty}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def completion(id: str | None, model: str | None, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }


def token_usage(prompt_tokens: int, completion_tokens: int, total_tokens: int | None = None) -> dict[str, Any]:
    total = prompt_tokens + completion_tokens if total_tokens is None else total_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}


def finish_reason(native: str | None, reasons: Mapping[str, str]) -> str:
    """A provider's stop reason in OpenAI's words; one OpenAI has no word for is a plain stop."""
    return reasons.get(native or "", "stop")


def embedding_list(
    vectors: list[list[float]], model: str | None, prompt_tokens: int, encoding_format: str | None
) -> dict[str, Any]:
    as_base64 = encoding_format == "base64"
    data = [{"object": "embedding", "index": i, "embedding": base64_floats(v) if as_base64 else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def base64_floats(values: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32. The openai SDK asks for it by default."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


# ------------------------------------------------------------------------------------------ errors


def openai_error(message: str, type: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def openai_error_body(status: int, body: bytes) -> dict[str, Any]:
    """An error from a provider that speaks OpenAI's format: as sent when it is OpenAI's shape, else wrapped."""
    parsed = json_value(body)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return parsed
    return openai_error(body.decode("utf-8", "replace")[:2000], "provider_error", str(status))


def error_type(status: int) -> str:
    return _STATUS_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def raw_error_message(status: int, body: bytes, provider: str) -> str:
    """The message of an error body the provider did not shape (a proxy's HTML page, say): its start,
    since such pages can be long, or a sentence when it is empty."""
    return body.decode("utf-8", "replace").strip()[:500] or f"{provider} returned HTTP {status}."


def json_value(raw: bytes | str) -> Any:
    """A provider body or event as JSON, or None when it is not JSON (an HTML error page, a broken event)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


# ----------------------------------------------------------------------------------------- streams

# How much of a long OpenAI-format stream's end the gateway keeps to read its usage from (below).
USAGE_TAIL_BYTES = 32 * 1024
_USAGE_KEY = '"usage":'


def usage_in_tail(tail: bytes) -> dict[str, Any] | None:
    """The usage an OpenAI-format stream reports at its end (a chat stream's last chunk, a Responses
    stream's ``response.completed``), read from its last bytes: the last ``"usage":`` key whose value is an
    object. The log keeps only a stream's head (``log_body_max_bytes``), so a stream relayed as it came
    past that size had its usage, and so its cost, read from nowhere. Usage is near the end in both
    formats (only ``user`` and ``metadata`` follow it in a response object), and the key cannot occur
    inside a JSON string, where its quotes are escaped."""
    text = tail.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    end = len(text)
    while (found := text.rfind(_USAGE_KEY, 0, end)) >= 0:
        start = found + len(_USAGE_KEY)
        while start < len(text) and text[start] in " \t\r\n":
            start += 1
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:  # cut by the end of the tail, or null: an earlier one may be whole
            value = None
        if isinstance(value, dict):
            return value
        end = found
    return None


def data_event(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying a JSON object (orjson never writes a newline, so one ``data:`` line)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkStream:
    """Provider SSE in, OpenAI ``chat.completion.chunk`` SSE out.

    A subclass translates one provider event (a JSON object) in ``_translate``, using ``_delta``,
    ``_fail`` and ``_close``. This class parses the SSE, builds every chunk, and ends the stream the
    OpenAI way: the usage chunk when the caller asked for it, then ``[DONE]``. Malformed events, and
    events after the end or an error, are dropped: one bad event should not break a stream. ``usage``
    is what the gateway records, whether or not the caller asked for it.
    """

    def __init__(self, model: str | None, include_usage: bool, completion_id: str | None = None) -> None:
        self.usage: dict[str, Any] | None = None
        self.id = completion_id
        self.model = model
        self._created = int(time.time())
        self._include_usage = include_usage
        self._parser = SSEParser(MAX_EVENT_BYTES)
        self._started: set[int] = set()  # choices whose first delta (the one with the role) went out
        self._failed = False
        self._closed = False

    def feed(self, chunk: bytes) -> bytes:
        return self._translate_events(self._parser.feed(chunk))

    def finish(self) -> bytes:
        return self._translate_events(self._parser.finish()) + self._close()

    def _translate(self, data: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _translate_events(self, events: list[ServerSentEvent]) -> bytes:
        out = b""
        for event in events:
            data = json_value(event.data)
            if isinstance(data, dict) and not (self._closed or self._failed):
                out += self._translate(data)
        return out

    def _delta(self, delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
        if index not in self._started:  # OpenAI's first delta of a choice carries the role
            self._started.add(index)
            delta = {"role": "assistant", "content": delta.get("content", ""), **delta}
        return self._chunk([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def _fail(self, error: dict[str, Any]) -> bytes:
        """An error after the 200 goes on in OpenAI's in-stream shape (``{"error": ...}``); then only
        ``[DONE]`` follows."""
        self._failed = True
        return data_event(error)

    def _close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        tail = b""
        if self._include_usage and self.usage is not None and not self._failed:
            tail = self._chunk([], self.usage)
        return tail + DONE

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage  # OpenAI: null on every chunk but the last when usage is asked for
        return data_event(chunk)


class RelayStream:
    """A stream already in the caller's format: bytes pass through untouched while a subclass reads
    each event on the side (``_read``), for usage."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self._parser: SSEParser | None = SSEParser(MAX_EVENT_BYTES)

    def feed(self, chunk: bytes) -> bytes:
        if self._parser is not None:
            try:
                for event in self._parser.feed(chunk):
                    self._read(event)
            except EventTooLarge:
                self._parser = None  # the bytes still pass; only the usage on the side is given up
        return chunk

    def finish(self) -> bytes:
        for event in self._parser.finish() if self._parser is not None else ():
            self._read(event)
        return b""

    def _read(self, event: ServerSentEvent) -> None:
        raise NotImplementedError


class PassThroughStream(RelayStream):
    """Relays OpenAI-format SSE unchanged while noting the usage, if the provider sends it: on a chat
    stream's last chunk, or in a Responses stream's ``response.completed`` (or ``.incomplete``) event."""

    def _read(self, event: ServerSentEvent) -> None:
        if '"usage"' not in event.data:  # most chunks carry none; skip parsing them
            return
        data = json_value(event.data)
        if not isinstance(data, dict):
            return
        response = data.get("response")
        usage = data.get("usage") or (response.get("usage") if isinstance(response, dict) else None)
        if usage:
            self.usage = usage


class EventsOverChat:
    """A translated stream over a chat adapter's stream (Messages or Responses events out): the chat
    stream turns upstream bytes into OpenAI chat chunks, parsed here; a subclass turns the parsed events
    into its API's (``_translate``) and closes its stream (``_end``). ``usage`` is the chat adapter's."""

    def __init__(self, chat_stream: Any) -> None:
        self._chat = chat_stream
        self._parser = SSEParser()

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._chat.usage

    def feed(self, chunk: bytes) -> bytes:
        return self._translate(self._parser.feed(self._chat.feed(chunk)))

    def finish(self) -> bytes:
        out = self._translate(self._parser.feed(self._chat.finish()) + self._parser.finish())
        return out + self._end()

    def _translate(self, events: list[ServerSentEvent]) -> bytes:
        raise NotImplementedError

    def _end(self) -> bytes:
        raise NotImplementedError


async def events_over_reply(chat: Any, translated: Any, events: Any) -> AsyncIterator[bytes]:
    """A multi-step chat adapter's streamed ``Reply`` (``chat``) as another API's events, turned by
    ``events`` (an ``EventsOverChat`` over a ``PassThroughStream``); the chat stream is closed whatever
    happens, and ``translated`` (the outer ``Reply``) gets the usage and error once it has ended."""
    try:
        async for chunk in chat.stream:
            out = events.feed(chunk)
            if out:
                yield out
        yield events.finish()
    finally:
        close = getattr(chat.stream, "aclose", None)
        if close is not None:
            await close()
    translated.usage, translated.error = chat.usage or events.usage, chat.error
