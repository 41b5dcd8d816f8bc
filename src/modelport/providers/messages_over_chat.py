"""Anthropic's Messages API (``/v1/messages``) served by any provider with a chat endpoint.

A Messages request becomes an OpenAI chat request, which the provider's own chat adapter (or, for an
OpenAI-compatible provider, nothing) takes on from there; its OpenAI-shaped answer, stream and errors
come back as Anthropic's. So every chat provider speaks Messages through the one translation it
already has, and ``anthropic.py`` (the other direction) keeps the meaning of Anthropic's words.

Formats: docs.anthropic.com/en/api/messages (request, response, content blocks, tools),
/en/docs/build-with-claude/streaming (message_start, content_block_start/delta/stop, message_delta,
message_stop, error), /en/api/errors. OpenAI's side: openai_shapes.py.

What has no OpenAI counterpart (``thinking``, ``top_k``, server tools, thinking blocks, images in tool
results) is dropped, or refused by name under ``x-portkey-strict-open-ai-compliance``, as for chat.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.providers.anthropic import STATUS_ERROR_TYPES
from modelport.providers.base import (
    Adapter,
    Endpoint,
    OverStepChat,
    ProviderFailure,
    Reply,
    StepAnswer,
    Steps,
    Target,
    UnsupportedParameter,
    UpstreamRequest,
)
from modelport.providers.openai_shapes import (
    Dropper,
    EventsOverChat,
    PassThroughStream,
    events_over_reply,
    json_value,
    openai_error_body,
    refuse_unsupported,
)

# Messages parameters with an OpenAI chat counterpart. ``cache_control`` (here and on blocks) is a
# hint that is safe to lose: OpenAI-style providers cache long prompts by themselves.
TRANSLATED = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "metadata",
    "stream", "tools", "tool_choice", "output_config", "cache_control",
})
# Values that change nothing, accepted even under strict compliance.
NEUTRAL: dict[str, tuple[Any, ...]] = {"thinking": ({"type": "disabled"},), "service_tier": ("auto", "standard_only")}
# A chat parameter -> the Messages parameter it was made from, to name in a refusal.
MESSAGES_NAMES = {"parallel_tool_calls": "tool_choice.disable_parallel_tool_use", "user": "metadata.user_id",
                  "stop": "stop_sequences", "response_format": "output_config.format", "stream_options": "stream"}
# OpenAI finish_reason -> Anthropic stop_reason: the inverse of anthropic.FINISH_REASONS where it is one-to-one.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


class OpenAICompatibleChat:
    """Chat for providers with no adapter: OpenAI's body at ``base_url/chat/completions``, as sent."""

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        headers = {"content-type": "application/json"}
        return UpstreamRequest("POST", f"{target.base_url}/chat/completions", headers, orjson.dumps(body), bool(body.get("stream")))

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        return body

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> PassThroughStream:
        return PassThroughStream()

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return openai_error_body(status, body)


OPENAI_CHAT = OpenAICompatibleChat()


class MessagesOverChat:
    """The ``messages`` endpoint of one provider, through its ``chat`` adapter. Bodies it returns
    (responses, errors, stream events) are Anthropic-shaped, for Anthropic-native clients."""

    def __init__(self, provider: str, chat: Adapter) -> None:
        self.provider, self.chat = provider, chat

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        try:
            return self.chat.build_request("chat", to_chat_request(body, self.provider, strict), target, strict)
        except UnsupportedParameter as exc:  # the chat adapter names its own parameter; the caller sent ours
            raise UnsupportedParameter(MESSAGES_NAMES.get(exc.parameter, exc.parameter), exc.provider) from None

    # The chat adapter reads its own request (Gemini names the model from it); translating again is
    # cheap and keeps the adapters stateless. Strict refusals already happened in build_request.
    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        completion = self.chat.parse_response("chat", status, body, self._chat_body(request_body))
        return orjson.dumps(to_message(orjson.loads(completion), request_body.get("model")))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> MessageEvents:
        chat_body = self._chat_body(request_body)
        return MessageEvents(self.chat.stream_translator("chat", chat_body), request_body.get("model"))

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        message = (self.chat.error_body(status, body).get("error") or {}).get("message")
        return anthropic_error(STATUS_ERROR_TYPES.get(status, "api_error"), message or f"{self.provider} returned HTTP {status}.")

    def _chat_body(self, request_body: dict[str, Any]) -> dict[str, Any]:
        return to_chat_request(request_body, self.provider, strict=False)


class MessagesOverStepChat(OverStepChat, MessagesOverChat):
    """Messages over a multi-step chat adapter (Replicate's, providers/base.py ``MultiStepAdapter``):
    the same translation, around ``begin``/``finish`` instead of one request and its response."""

    names = MESSAGES_NAMES

    def _chat_request(self, body: dict[str, Any], strict: bool) -> dict[str, Any]:
        return to_chat_request(body, self.provider, strict)

    async def finish(self, endpoint: Endpoint, first: StepAnswer, body: dict[str, Any], target: Target,
                     steps: Steps) -> Reply:
        try:
            reply = await self.chat.finish("chat", first, self._chat_body(body), target, steps)  # type: ignore[attr-defined]
        except ProviderFailure as failure:
            message = (failure.body.get("error") or {}).get("message") or f"{self.provider} failed the call."
            raise ProviderFailure(failure.status, anthropic_error(STATUS_ERROR_TYPES.get(failure.status, "api_error"),
                                                                  message)) from None
        if reply.stream is None:
            message = to_message(orjson.loads(reply.body or b"{}"), body.get("model"))
            return Reply(reply.status, orjson.dumps(message), usage=reply.usage)
        translated = Reply(reply.status)
        translated.stream = events_over_reply(reply, translated, MessageEvents(PassThroughStream(), body.get("model")))
        return translated



def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- request: Messages -> OpenAI chat ---------------------------------------------------------


def to_chat_request(body: dict[str, Any], provider: str, strict: bool) -> dict[str, Any]:
    refuse_unsupported(body, TRANSLATED, provider, strict, NEUTRAL)
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise ValueError("'messages' must be a non-empty list.")
    drop = Dropper(provider, strict)
    messages = _system(body.get("system"))
    for i, turn in enumerate(turns):
        messages.extend(_turn(turn, i, drop))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if chat["model"] is None:
        del chat["model"]  # let the provider name the missing field
    for name in ("max_tokens", "temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    if (body.get("metadata") or {}).get("user_id"):
        chat["user"] = str(body["metadata"]["user_id"])
    if body.get("stream"):
        # Usage comes only at the end of an OpenAI stream, and only when asked for; message_delta needs it.
        chat.update(stream=True, stream_options={"include_usage": True})
    tools = [tool for tool in (_tool(t, i, drop) for i, t in enumerate(body.get("tools") or [])) if tool]
    if tools:
        chat["tools"] = tools
        chat.update(_tool_choice(body.get("tool_choice")))
    chat.update(_output_config(body.get("output_config"), drop))
    return chat


def _output_config(config: Any, drop: Dropper) -> dict[str, Any]:
    """Structured outputs (``output_config.format``) are OpenAI's ``response_format`` json_schema;
    ``effort`` has no counterpart on a chat model in general."""
    if not isinstance(config, dict):
        return {}
    if config.get("effort") is not None:
        drop("output_config.effort")
    form = config.get("format")
    if not isinstance(form, dict):
        return {}
    if form.get("type") != "json_schema" or not isinstance(form.get("schema"), dict):
        raise ValueError("output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}.")
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": form["schema"]}}}


def _system(system: Any) -> list[dict[str, Any]]:
    if not system:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    text = "\n\n".join(block.get("text") or "" for block in system if isinstance(block, dict) and block.get("type") == "text")
    return [{"role": "system", "content": text}] if text else []


def _turn(turn: Any, i: int, drop: Dropper) -> list[dict[str, Any]]:
    role = turn.get("role") if isinstance(turn, dict) else None
    content = turn.get("content") if isinstance(turn, dict) else None
    if role not in ("user", "assistant"):
        raise ValueError(f"messages[{i}]: role must be 'user' or 'assistant', got {role!r}.")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise ValueError(f"messages[{i}]: content must be a string or a list of content blocks.")
    return _user_turn(content, i, drop) if role == "user" else [_assistant_turn(content, i, drop)]


def _user_turn(blocks: list[Any], i: int, drop: Dropper) -> list[dict[str, Any]]:
    """Tool results become OpenAI ``tool`` messages, which must directly follow the assistant's
    tool calls; Anthropic puts them first in the user turn, so they go first here too."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "tool_result":
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": _tool_result(block, where, drop)})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _source_url(block.get("source") or {}, where)}})
        elif kind == "document":
            parts.append(_document(block, where))
        else:
            drop(f"{where} ({kind} block)")
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]  # the plain form every provider takes
    return [*results, {"role": "user", "content": parts}] if parts else results


def _assistant_turn(blocks: list[Any], i: int, drop: Dropper) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": arguments}})
        else:  # thinking and redacted_thinking: only Anthropic can read them back
            drop(f"messages[{i}].content[{j}] ({kind} block)")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result(block: dict[str, Any], where: str, drop: Dropper) -> str:
    content = block.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for k, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(part.get("text") or "")
        else:  # OpenAI tool messages carry text only
            drop(f"{where}.content[{k}] ({part.get('type') if isinstance(part, dict) else None} block)")
    return "\n".join(texts)


def _source_url(source: dict[str, Any], where: str) -> str:
    """An Anthropic source as an OpenAI URL: base64 as a data: URL, a URL as itself."""
    if source.get("type") == "base64" and source.get("data"):
        return f"data:{source.get('media_type')};base64,{source['data']}"
    if source.get("type") == "url" and source.get("url"):
        return source["url"]
    raise ValueError(f"{where}: only base64 and url sources can be sent to this provider.")


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if source.get("type") != "base64":
        raise ValueError(f"{where}: documents must be inline (a base64 or text source) for this provider.")
    file = {"file_data": _source_url(source, where)}
    if block.get("title"):
        file["filename"] = block["title"]
    return {"type": "file", "file": file}


def _tool(tool: Any, i: int, drop: Dropper) -> dict[str, Any] | None:
    if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or not tool.get("name"):
        drop(f"tools[{i}] ({tool.get('type') if isinstance(tool, dict) else None})")  # Anthropic's server tools
        return None
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict):
        return {}
    kind = choice.get("type")
    chat: dict[str, Any] = {}
    if kind in ("auto", "none"):
        chat["tool_choice"] = kind
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False
    return chat


# --- response: OpenAI chat.completion -> Message ----------------------------------------------


def messages_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI usage in Anthropic's words. Anthropic's ``input_tokens`` leaves out cache reads
    (``anthropic.openai_usage`` adds them back), so cached tokens move to ``cache_read_input_tokens``."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": max((usage.get("prompt_tokens") or 0) - cached, 0),
            "output_tokens": usage.get("completion_tokens") or 0,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def stop_reason(finish: str | None) -> str | None:
    return STOP_REASONS.get(finish, "end_turn") if finish else None


def to_message(completion: dict[str, Any], model: str | None) -> dict[str, Any]:
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        content.append(_tool_use(call.get("id"), (call.get("function") or {}).get("name"),
                                 json_value((call.get("function") or {}).get("arguments") or "{}")))
    return {"id": completion.get("id"), "type": "message", "role": "assistant", "model": completion.get("model") or model,
            "content": content, "stop_reason": stop_reason(choice.get("finish_reason") or "stop"), "stop_sequence": None,
            "usage": messages_usage(completion.get("usage"))}


def _tool_use(id: str | None, name: str | None, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": arguments if isinstance(arguments, dict) else {}}


# --- streams: OpenAI chunks -> Anthropic events -----------------------------------------------


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


class MessageEvents(EventsOverChat):
    """The chat adapter's OpenAI chunk stream, as Anthropic's event sequence.

    OpenAI interleaves nothing: text, then each tool call in turn, so one content block is open at a
    time. The finish reason arrives before the usage chunk, so message_delta (which carries both)
    waits for the end of the stream. ``usage`` is the chat adapter's (OpenAI-shaped), for the log.
    """

    def __init__(self, chat_stream: Any, model: str | None) -> None:
        super().__init__(chat_stream)
        self._model = model
        self._started = self._ended = False
        self._open: str | None = None  # "text", or the OpenAI index of the tool call being streamed
        self._blocks = 0
        self._finish: str | None = None

    def _translate(self, events: list[Any]) -> bytes:
        out = b""
        for event in events:
            data = None if event.data == "[DONE]" else json_value(event.data)
            if self._ended:
                break
            if event.data == "[DONE]":
                out += self._end()
            elif isinstance(data, dict):
                out += self._chunk(data)
        return out

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        if isinstance(chunk.get("error"), dict):
            self._ended = True
            message = chunk["error"].get("message") or "The provider's stream failed."
            return self._start(chunk) + _event("error", anthropic_error("api_error", message))
        out = self._start(chunk)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._block("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        function = call.get("function") or {}
        # A call's first chunk has its id and name; later ones only more of its arguments.
        out = self._block(f"tool {call.get('index', 0)}", _tool_use(call.get("id"), function.get("name"), {}))
        if function.get("arguments"):
            out += self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {"id": chunk.get("id"), "type": "message", "role": "assistant", "model": chunk.get("model") or self._model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": messages_usage(None)}
        return _event("message_start", {"message": message})

    def _block(self, name: str, block: dict[str, Any]) -> bytes:
        """Open content block ``name``, closing the open one, unless ``name`` is the open one."""
        if self._open == name:
            return b""
        out = self._close_block()
        self._open = name
        return out + _event("content_block_start", {"index": self._blocks, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": self._blocks, "delta": delta})

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._blocks += 1
        return _event("content_block_stop", {"index": self._blocks - 1})

    def _end(self) -> bytes:
        if self._ended:
            return b""
        out = self._start({}) + self._close_block()
        self._ended = True
        usage = messages_usage(self._chat.usage)
        delta = {"stop_reason": stop_reason(self._finish or "stop"), "stop_sequence": None}
        return out + _event("message_delta", {"delta": delta, "usage": usage}) + _event("message_stop", {})
