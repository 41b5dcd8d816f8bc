"""A chat adapter's OpenAI chunk stream, as the Responses API's event sequence (responses_over_chat.py).

Each event is ``event: <type>`` + ``data: {"type": <type>, ..., "sequence_number": n}`` (numbered from
0, as OpenAI does). The sequence (platform.openai.com/docs/api-reference/responses-streaming):
``response.created``, ``response.in_progress``; per output item ``response.output_item.added``, then for a
message ``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, or for a function call ``response.function_call_arguments.delta``...,
``response.function_call_arguments.done``; then ``response.output_item.done``; last
``response.completed`` (``response.incomplete`` when cut short) with the whole response and its usage.
An error inside the provider's stream ends it with ``response.failed``. No ``[DONE]``: Responses
streams end with their last event.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelport.providers.openai_shapes import EventsOverChat, json_value
from modelport.providers.responses_over_chat import (
    function_call_item,
    message_item,
    new_id,
    output_text,
    response_object,
    responses_usage,
    status_of,
)


class ResponseEvents(EventsOverChat):
    """Chat chunks in, Responses events out. Chat streams one thing at a time (text, then each tool call
    in turn), so one output item is open at a time. ``usage`` is the chat adapter's (OpenAI chat-shaped),
    for the log."""

    def __init__(self, chat_stream: Any, body: dict[str, Any]) -> None:
        super().__init__(chat_stream)
        self._body = body
        self._id, self._created = new_id("resp"), int(time.time())
        self._model: str | None = body.get("model")
        self._sequence = 0
        self._started = self._ended = False
        self._output: list[dict[str, Any]] = []  # finished items
        self._item: dict[str, Any] | None = None  # the item being streamed
        self._key: str | None = None  # "text", or "tool <chat index>" of the call being streamed
        self._pieces: list[str] = []  # its text or arguments so far, joined once it is done (not += per delta)
        self._finish: str | None = None
        # The completed (or incomplete) response, once its last event is made: what the gateway stores
        # before that event goes to the client (gateway/stored_responses.py).
        self.final: dict[str, Any] | None = None

    def _translate(self, events: list[Any]) -> bytes:
        out = b""
        for event in events:
            if self._ended:
                break
            if event.data == "[DONE]":
                out += self._end()
                continue
            data = json_value(event.data)
            if isinstance(data, dict):
                out += self._chunk(data)
        return out

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        out = self._start(chunk)
        if isinstance(chunk.get("error"), dict):
            return out + self._fail(chunk["error"])
        # A malformed part of a chunk (an OpenAI-compatible provider's stream is relayed as it came) is skipped.
        for choice in _dicts(chunk.get("choices")):
            if choice.get("index", 0) != 0:  # Responses has one answer; chat's n > 1 is not asked for
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text(delta["content"])
            for call in _dicts(delta.get("tool_calls")):
                out += self._tool_call(call)
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
        return out

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = orjson.dumps({"type": kind, **payload, "sequence_number": self._sequence})
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _response(self, status: str, incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                  usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self._body, self._id, self._created, status, list(self._output), usage, incomplete,
                               self._model, error)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self._started:
            return b""
        self._started = True
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        response = self._response("in_progress")
        return self._event("response.created", {"response": response}) + self._event("response.in_progress", {"response": response})

    def _open(self, key: str, item: dict[str, Any]) -> bytes:
        """Start output item ``key``, finishing the open one, unless ``key`` is the open one."""
        if self._key == key:
            return b""
        out = self._close()
        self._key, self._item = key, item
        return out + self._event("response.output_item.added", {"output_index": len(self._output), "item": item})

    def _text(self, piece: str) -> bytes:
        out = b""
        if self._key != "text":
            out += self._open("text", message_item(new_id("msg"), "", status="in_progress"))
            out += self._event("response.content_part.added", {**self._where(), "content_index": 0, "part": output_text("")})
        self._pieces.append(piece)
        return out + self._event("response.output_text.delta",
                                 {**self._where(), "content_index": 0, "delta": piece, "logprobs": []})

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        # A call's first chunk has its id and name; later ones only more of its arguments.
        key = f"tool {call.get('index', 0)}"
        out = b""
        if self._key != key:
            out += self._open(key, function_call_item(new_id("fc"), call.get("id"), function.get("name"), "", "in_progress"))
        if isinstance(function.get("arguments"), str) and function["arguments"]:
            self._pieces.append(function["arguments"])
            out += self._event("response.function_call_arguments.delta", {**self._where(), "delta": function["arguments"]})
        return out

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._item["id"], "output_index": len(self._output)}

    def _close(self) -> bytes:
        item = self._item
        if item is None:
            return b""
        where, joined = self._where(), "".join(self._pieces)
        if item["type"] == "message":
            text = joined
            out = self._event("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {**where, "content_index": 0, "part": output_text(text)})
            done = message_item(item["id"], text)
        else:
            out = self._event("response.function_call_arguments.done", {**where, "name": item["name"], "arguments": joined})
            done = {**item, "arguments": joined, "status": "completed"}
        out += self._event("response.output_item.done", {"output_index": where["output_index"], "item": done})
        self._output.append(done)
        self._item = self._key = None
        self._pieces = []
        return out

    def _end(self) -> bytes:
        if self._ended:
            return b""
        out = self._start({}) + self._close()
        self._ended = True
        status, incomplete = status_of(self._finish or "stop")
        response = self._response(status, incomplete, usage=responses_usage(self._chat.usage))
        self.final = response
        return out + self._event(f"response.{status}", {"response": response})

    def _fail(self, error: dict[str, Any]) -> bytes:
        """The provider's stream failed after the 200: what was streamed stays streamed, and the response
        ends ``failed`` with the provider's message (OpenAI's ``response.failed``)."""
        self._ended = True
        message = error.get("message") or "The provider's stream failed."
        failure = {"code": "server_error", "message": message}
        return self._event("response.failed", {"response": self._response("failed", error=failure,
                                                                           usage=responses_usage(self._chat.usage))})


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
