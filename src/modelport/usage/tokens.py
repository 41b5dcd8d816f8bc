"""What a request used: tokens, images, seconds, read from provider responses (streamed ones too).

``Usage.input_tokens`` always counts *every* prompt token, cached or not (OpenAI's ``prompt_tokens``
convention); ``cached_input_tokens`` and ``cache_write_tokens`` are the parts of it billed at other
rates. Anthropic reports the three separately, so ``from_anthropic`` adds them up.

A response that reports no usage yields ``None``, never an all-zero ``Usage``: the caller must be
able to tell "nothing reported" (unpriced) from "reported zero" (free).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from modelport.sse import ServerSentEvent, SSEParser


@dataclass(slots=True)
class Usage:
    """Billable quantities of one request. ``seconds`` is audio length or Replicate ``predict_time``;
    ``requests`` counts per-request billing units (Cohere search units; 1 for a plain call);
    ``characters`` the characters of text a speech request turned into audio (OpenAI ``tts-1``);
    ``reported_usd`` is a cost the provider itself put in the response (OpenRouter, Perplexity)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    images: int = 0
    seconds: float = 0.0
    characters: int = 0
    requests: int = 1
    reported_usd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        """Chat/completions/embeddings (``prompt_tokens``) and Responses API (``input_tokens``) shapes,
        plus the OpenAI-compatible variants: DeepSeek ``prompt_cache_hit_tokens``, OpenRouter
        ``cost`` and ``cache_write_tokens``, Perplexity ``cost.total_cost``, whisper ``seconds``."""
        # Transcriptions spell it ``input_token_details`` ({"audio_tokens", "text_tokens"}).
        prompt_details = _mapping(usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
                                  or usage.get("input_token_details"))
        output_details = _mapping(usage.get("completion_tokens_details") or usage.get("output_tokens_details"))
        cached = _int(prompt_details.get("cached_tokens")) or _int(usage.get("prompt_cache_hit_tokens"))
        extra = _nonzero(
            reasoning_tokens=_int(output_details.get("reasoning_tokens")),
            audio_input_tokens=_int(prompt_details.get("audio_tokens")),
            audio_output_tokens=_int(output_details.get("audio_tokens")),
        )
        return cls(
            input_tokens=_int(usage.get("prompt_tokens", usage.get("input_tokens"))),
            output_tokens=_int(usage.get("completion_tokens", usage.get("output_tokens"))),
            cached_input_tokens=cached,
            cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
            # whisper-1 reports {"type": "duration", "seconds": N} (OpenAI audio API reference).
            seconds=_float(usage.get("seconds")) if usage.get("type") == "duration" else 0.0,
            reported_usd=_reported_cost(usage.get("cost")),
            extra=extra,
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> Usage:
        """Messages API ``usage``: ``input_tokens`` excludes cache reads and writes, so they are added."""
        cache_read = _int(usage.get("cache_read_input_tokens"))
        cache_write = _int(usage.get("cache_creation_input_tokens"))
        creation = _mapping(usage.get("cache_creation"))
        tools = _mapping(usage.get("server_tool_use"))
        return cls(
            input_tokens=_int(usage.get("input_tokens")) + cache_read + cache_write,
            output_tokens=_int(usage.get("output_tokens")),
            cached_input_tokens=cache_read,
            cache_write_tokens=cache_write,
            extra=_nonzero(
                cache_write_1h_tokens=_int(creation.get("ephemeral_1h_input_tokens")),
                web_search_requests=_int(tools.get("web_search_requests")),
            ),
        )

    @classmethod
    def from_gemini(cls, metadata: Mapping[str, Any]) -> Usage:
        """``usageMetadata``: thinking tokens are billed as output (Gemini API pricing page)."""
        thoughts = _int(metadata.get("thoughtsTokenCount"))
        return cls(
            input_tokens=_int(metadata.get("promptTokenCount")),
            output_tokens=_int(metadata.get("candidatesTokenCount")) + thoughts,
            cached_input_tokens=_int(metadata.get("cachedContentTokenCount")),
            extra=_nonzero(reasoning_tokens=thoughts),
        )

    @classmethod
    def from_cohere(cls, usage: Mapping[str, Any]) -> Usage:
        """v2 ``usage`` or v1 ``meta``: Cohere bills ``billed_units``, which can differ from ``tokens``."""
        billed = _mapping(usage.get("billed_units")) or _mapping(usage.get("tokens"))
        search_units = _int(billed.get("search_units"))
        return cls(
            input_tokens=_int(billed.get("input_tokens")),
            output_tokens=_int(billed.get("output_tokens")),
            images=_int(billed.get("images")),
            requests=search_units or 1,
            extra=_nonzero(search_units=search_units),
        )


def usage_from_body(body: Mapping[str, Any]) -> Usage | None:
    """Usage of a complete (non-streamed) response body, unified or native. The shapes do not
    collide: Gemini has ``usageMetadata``, Anthropic ``type: "message"``, Cohere ``billed_units``;
    everything else is OpenAI-shaped. An image response without usage counts its ``data`` items."""
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    if "usageMetadata" in body:
        return Usage.from_gemini(_mapping(body["usageMetadata"]))
    usage = body.get("usage")
    reported = type(usage) is dict or isinstance(usage, Mapping)
    if reported and body.get("type") == "message":
        return Usage.from_anthropic(usage)
    if reported and "billed_units" in usage:
        return Usage.from_cohere(usage)
    if "billed_units" in _mapping(body.get("meta")):  # Cohere v1
        return Usage.from_cohere(body["meta"])
    if reported:
        found = Usage.from_openai(usage)
        found.images = _image_count(body)
        return found
    images = _image_count(body)
    return Usage(images=images) if images else None


def usage_from_chunks(chunks: Iterable[Mapping[str, Any]]) -> Usage | None:
    """Usage of a stream, from its parsed JSON event payloads in order.

    OpenAI-style streams carry usage on the last chunk that has one (``stream_options.include_usage``;
    Groq puts it under ``x_groq.usage``). Anthropic splits it: ``message_start`` has the input side,
    ``message_delta`` the cumulative output. Gemini repeats a growing ``usageMetadata``. Cohere v2 puts
    it on ``message-end`` (v1: ``stream-end``); the Responses API on ``response.completed``.
    """
    found: Usage | None = None
    for chunk in chunks:
        found = _fold_chunk(found, chunk)
    return found


def usage_from_sse(raw: bytes) -> Usage | None:
    """Usage of a whole recorded SSE stream body (any of the formats ``usage_from_chunks`` reads)."""
    reader = StreamUsage()
    reader.feed(raw)
    return reader.finish()


class StreamUsage:
    """Reads usage from an SSE stream as its bytes pass through, split anywhere, without keeping
    the stream. Only events that can carry usage are decoded, so content deltas cost a substring
    check, not a JSON parse."""

    __slots__ = ("_parser", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> None:
        self._take(self._parser.feed(chunk))

    def finish(self) -> Usage | None:
        self._take(self._parser.finish())
        return self.usage

    def _take(self, events: list[ServerSentEvent]) -> None:
        for event in events:
            if "usage" in event.data or "billed_units" in event.data:
                payload = _json(event.data)
                if payload is not None:
                    self.usage = _fold_chunk(self.usage, payload)


# Where native streams put usage: event type -> (container, key, reader).
_NESTED_USAGE = {
    "message_start": ("message", "usage", Usage.from_anthropic),  # Anthropic: the input side
    "message-end": ("delta", "usage", Usage.from_cohere),  # Cohere v2
    "stream-end": ("response", "meta", Usage.from_cohere),  # Cohere v1 (``event_type``)
    "response.completed": ("response", "usage", Usage.from_openai),  # OpenAI Responses API
}


def _fold_chunk(found: Usage | None, chunk: Mapping[str, Any]) -> Usage | None:
    kind = chunk.get("type") or chunk.get("event_type")
    if kind == "message_delta" and isinstance(chunk.get("usage"), Mapping):
        return _with_anthropic_delta(found, chunk["usage"])
    if isinstance(chunk.get("usageMetadata"), Mapping):
        return Usage.from_gemini(chunk["usageMetadata"])
    if kind in _NESTED_USAGE:
        outer, inner, read = _NESTED_USAGE[kind]
        usage = _mapping(chunk.get(outer)).get(inner)
        return read(usage) if isinstance(usage, Mapping) else found
    usage = chunk.get("usage") or _mapping(chunk.get("x_groq")).get("usage")
    return Usage.from_openai(usage) if isinstance(usage, Mapping) else found


def _with_anthropic_delta(found: Usage | None, delta: Mapping[str, Any]) -> Usage:
    # message_delta's output_tokens is cumulative; newer API versions may also restate the input side.
    usage = found if found is not None else Usage()
    if any(key in delta for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")):
        restated = Usage.from_anthropic(delta)
        usage.input_tokens = restated.input_tokens
        usage.cached_input_tokens = restated.cached_input_tokens
        usage.cache_write_tokens = restated.cache_write_tokens
    usage.output_tokens = _int(delta.get("output_tokens"))
    return usage


def _image_count(body: Mapping[str, Any]) -> int:
    # Images API responses: {"created", "data": [{"url"|"b64_json"}]}; embeddings share "data", so
    # only items that carry an image count.
    data = body.get("data")
    if not isinstance(data, list):
        return 0
    return sum(1 for item in data if isinstance(item, Mapping) and ("b64_json" in item or "url" in item))


def _reported_cost(value: Any) -> float | None:
    if value is None:  # what nearly every response reports
        return None
    if isinstance(value, Mapping):
        value = value.get("total_cost")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _json(data: str) -> Mapping[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # "[DONE]" and the like
    return value if isinstance(value, Mapping) else None


# Parsed JSON is plain dicts and ints: those are asked first by exact type, since the abstract
# ``Mapping`` check alone was ~a third of reading a chat completion's usage (bench/README.md, 2026-12-04).
def _mapping(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    return {} if value is None or not isinstance(value, Mapping) else value


def _int(value: Any) -> int:
    if type(value) is int:  # not a bool: its type is bool
        return value
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _nonzero(**counts: int) -> dict[str, Any]:
    return {name: count for name, count in counts.items() if count}
