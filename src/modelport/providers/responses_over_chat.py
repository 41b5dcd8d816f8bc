"""OpenAI's Responses API (``/v1/responses``) served by any provider with a chat endpoint.

A Responses request becomes an OpenAI chat request, which the provider's own chat adapter (or, for an
OpenAI-compatible provider, nothing) takes on from there; its OpenAI chat answer and stream come back as
a ``response`` object and the Responses event sequence. OpenAI and Azure OpenAI have the API
themselves and never come here (registry.py). The stream side is ``responses_stream.py``.

Formats: platform.openai.com/docs/api-reference/responses (create, the response object, input items:
messages with input_text/input_image/input_file parts, function_call, function_call_output),
/responses-streaming (events), guides/function-calling and guides/structured-outputs (``text.format``).

The API keeps conversations (``store``, ``previous_response_id``). Here they are the gateway's: before a
request reaches this translation, gateway/stored_responses.py has put the earlier turns' items in front
of ``input`` (so ``input`` holds the whole conversation) and set ``store`` to whether it keeps the answer;
the response echoes both. ``conversation`` objects and stored ``prompt`` templates live at OpenAI only:
they are refused with a 400 that says what to send instead, in lenient mode too, since dropping them
would answer a different question.
What chat has no place for (hosted tools, ``reasoning``, ``truncation: auto``, reasoning items in the
input) is dropped, or refused by name under ``x-portkey-strict-open-ai-compliance``, as for chat.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from modelport.providers.base import (
    Adapter,
    Endpoint,
    OverStepChat,
    Reply,
    StepAnswer,
    Steps,
    Target,
    UnsupportedParameter,
    UpstreamRequest,
)
from modelport.providers.openai_shapes import Dropper, PassThroughStream, events_over_reply, refuse_unsupported

# Responses parameters with an OpenAI chat counterpart (``metadata`` is echoed on the response).
TRANSLATED = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "parallel_tool_calls", "text", "stream", "metadata", "user", "store", "previous_response_id",
})
# Values that change nothing here, accepted even under strict compliance.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "truncation": ("disabled",), "include": ([],), "background": (False,),
    "service_tier": ("auto", "default"), "stream_options": ({"include_obfuscation": False},),
}
# A chat parameter -> the Responses parameter it was made from, to name in a refusal.
RESPONSES_NAMES = {"max_tokens": "max_output_tokens", "response_format": "text.format", "stream_options": "stream",
                   "tools[].function.strict": "tools[].strict", "messages": "input"}
_RESEND = "send the whole conversation in 'input' instead (the earlier output items included)"


class ResponsesOverChat:
    """The ``responses`` endpoint of one provider, through its ``chat`` adapter. Bodies it returns are
    Responses-shaped; errors stay in OpenAI's error shape, which the Responses API shares."""

    def __init__(self, provider: str, chat: Adapter) -> None:
        self.provider, self.chat = provider, chat

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        try:
            return self.chat.build_request("chat", to_chat_request(body, self.provider, strict), target, strict)
        except UnsupportedParameter as exc:  # the chat adapter names its own parameter; the caller sent ours
            raise UnsupportedParameter(RESPONSES_NAMES.get(exc.parameter, exc.parameter), exc.provider) from None

    # As in messages_over_chat: translating again is cheap and keeps the adapters stateless.
    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        completion = self.chat.parse_response("chat", status, body, self._chat_body(request_body))
        return orjson.dumps(to_response(orjson.loads(completion), request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> Any:
        from modelport.providers.responses_stream import ResponseEvents  # it builds on this module's shapes

        return ResponseEvents(self.chat.stream_translator("chat", self._chat_body(request_body)), request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return self.chat.error_body(status, body)

    def _chat_body(self, request_body: dict[str, Any]) -> dict[str, Any]:
        return to_chat_request(request_body, self.provider, strict=False)


class ResponsesOverStepChat(OverStepChat, ResponsesOverChat):
    """Responses over a multi-step chat adapter (Replicate's, providers/base.py ``MultiStepAdapter``): the
    same translation, around ``begin``/``finish``. Such an adapter runs a model that has no tools and no
    structured output (Replicate's chat drops ``tools`` and ``response_format``), so a request that needs
    either is refused with a 400 in every compliance mode: dropping them would answer another question."""

    names = RESPONSES_NAMES

    def _chat_request(self, body: dict[str, Any], strict: bool) -> dict[str, Any]:
        chat_body = to_chat_request(body, self.provider, strict)
        self._refuse_unhonoured(chat_body)
        return chat_body

    async def finish(self, endpoint: Endpoint, first: StepAnswer, body: dict[str, Any], target: Target,
                     steps: Steps) -> Reply:
        # A ProviderFailure passes as it is: the Responses API shares OpenAI's error shape.
        reply = await self.chat.finish("chat", first, self._chat_body(body), target, steps)  # type: ignore[attr-defined]
        if reply.stream is None:
            response = to_response(orjson.loads(reply.body or b"{}"), body)
            return Reply(reply.status, orjson.dumps(response), usage=reply.usage)
        translated = Reply(reply.status)
        from modelport.providers.responses_stream import ResponseEvents

        translated.events = ResponseEvents(PassThroughStream(), body)
        translated.stream = events_over_reply(reply, translated, translated.events)
        return translated

    def _refuse_unhonoured(self, chat_body: dict[str, Any]) -> None:
        if chat_body.get("tools"):
            raise ValueError(f"'tools': provider '{self.provider}' runs models that cannot call tools through the "
                             "gateway; leave 'tools' out, or use a provider with function calling.")
        if chat_body.get("response_format"):
            raise ValueError(f"'text.format': provider '{self.provider}' cannot hold a model to a JSON format; send "
                             "{\"type\": \"text\"} (or leave it out), or use a provider with structured outputs.")



# --- request: Responses -> OpenAI chat --------------------------------------------------------


def to_chat_request(body: dict[str, Any], provider: str, strict: bool) -> dict[str, Any]:
    _refuse_stateful(body, provider)
    refuse_unsupported(body, TRANSLATED, provider, strict, NEUTRAL)
    drop = Dropper(provider, strict)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ValueError("'instructions' must be a string.")
    messages = [{"role": "system", "content": instructions}] if instructions else []
    messages += _input_messages(body.get("input"), provider, drop)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if chat["model"] is None:
        del chat["model"]  # let the provider name the missing field
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stream"):
        # Usage comes only at the end of an OpenAI stream, and only when asked for; response.completed needs it.
        chat.update(stream=True, stream_options={"include_usage": True})
    chat.update(_tools(body, drop))
    chat.update(_text_format(body.get("text"), drop))
    return chat


def _refuse_stateful(body: dict[str, Any], provider: str) -> None:
    """What only OpenAI's own store can answer: refused whatever the compliance mode (see above)."""
    if body.get("conversation") is not None:
        raise ValueError(f"'conversation' names a conversation stored at OpenAI, which provider '{provider}' cannot "
                         f"read: {_RESEND}.")
    if body.get("prompt") is not None:
        raise ValueError(f"'prompt' names a prompt template stored at OpenAI, which provider '{provider}' cannot read: "
                         "send its text in 'instructions' and 'input' instead.")


def _input_messages(items: Any, provider: str, drop: Dropper) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise ValueError("'input' must be a string or a non-empty list of input items.")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object (a message, function_call or function_call_output item).")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, where, drop))
        elif kind == "function_call":
            _add_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": _call_output(item.get("output"), where, drop)})
        elif kind == "item_reference":
            raise ValueError(f"{where}: an item_reference names an item stored at OpenAI, which provider '{provider}' "
                             f"cannot read: {_RESEND}.")
        else:  # reasoning items (only OpenAI can read them back) and hosted tools' calls
            drop(f"{where} ({kind} item)")
    return messages


def _message(item: dict[str, Any], where: str, drop: Dropper) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise ValueError(f"{where}: role must be 'user', 'assistant', 'system' or 'developer', got {role!r}.")
    role = "system" if role == "developer" else role  # not every OpenAI-compatible provider knows "developer"
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise ValueError(f"{where}: content must be a string or a list of content parts.")
    parts = [part for part in (_part(p, f"{where}.content[{j}]", role, drop) for j, p in enumerate(content)) if part]
    if role != "user" or all(part["type"] == "text" for part in parts):
        # Only user turns take images and files in chat; text alone goes as the plain string every provider takes.
        return {"role": role, "content": "".join(part.get("text", "") for part in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str, role: str, drop: Dropper) -> dict[str, Any] | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image" and role == "user":
        return _image(part, where)
    if kind == "input_file" and role == "user":
        return _file(part, where)
    drop(f"{where} ({kind} part)")
    return None


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    if not part.get("image_url"):
        raise ValueError(f"{where}: input_image needs 'image_url' (a URL or a data: URL) for this provider; a file_id "
                         "names a file only OpenAI holds.")
    image = {"url": part["image_url"]}
    if part.get("detail") not in (None, "auto"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    if not part.get("file_data"):
        raise ValueError(f"{where}: input_file needs inline 'file_data' for this provider; a file_id or file_url "
                         "names a file only OpenAI fetches.")
    file = {"file_data": part["file_data"]}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    """Chat carries tool calls on the assistant message that makes them: a function_call item joins the
    assistant turn just before it (text, or other calls), else starts one."""
    if not all(isinstance(item.get(name), str) for name in ("call_id", "name", "arguments")):
        raise ValueError(f"{where}: a function_call item needs 'call_id', 'name' and 'arguments' (a JSON string).")
    call = {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        last["content"] = last.get("content") or None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _call_output(output: Any, where: str, drop: Dropper) -> str:
    """A function's output: a string, or (newer) a list of parts; chat tool messages carry text only."""
    if output is None or isinstance(output, str):
        return output or ""
    if not isinstance(output, list):
        return orjson.dumps(output).decode()
    texts = []
    for k, part in enumerate(output):
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text"):
            texts.append(part.get("text") or "")
        else:
            drop(f"{where}.output[{k}] ({part.get('type') if isinstance(part, dict) else None} part)")
    return "".join(texts)


def _tools(body: dict[str, Any], drop: Dropper) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` in chat's words (none when no tool is left)."""
    if not isinstance(body.get("tools") or [], list):
        raise ValueError("'tools' must be a list of tools.")
    tools = [tool for tool in (_tool(t, i, drop) for i, t in enumerate(body.get("tools") or [])) if tool]
    if not tools:
        return {}
    chat: dict[str, Any] = {"tools": tools, **_tool_choice(body.get("tool_choice"), drop)}
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    return chat


def _tool(tool: Any, i: int, drop: Dropper) -> dict[str, Any] | None:
    """Responses function tools are flat (``name`` beside ``type``); chat nests them under ``function``.
    Hosted tools (web_search, file_search, code_interpreter, ...) run at OpenAI only."""
    if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("name"):
        drop(f"tools[{i}] ({tool.get('type') if isinstance(tool, dict) else None})")
        return None
    function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, drop: Dropper) -> dict[str, Any]:
    if choice is None:
        return {}
    if choice in ("auto", "none", "required"):
        return {"tool_choice": choice}
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    drop("tool_choice")  # allowed_tools, or a hosted tool
    return {}


def _text_format(text: Any, drop: Dropper) -> dict[str, Any]:
    """``text.format`` is chat's ``response_format``: json_schema's fields sit beside its type here and
    under ``json_schema`` there."""
    if not isinstance(text, dict):
        return {}
    if text.get("verbosity") is not None:
        drop("text.verbosity")
    form = text.get("format")
    kind = form.get("type") if isinstance(form, dict) else None
    if form is None or kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind != "json_schema" or not isinstance(form.get("schema"), dict):
        raise ValueError("text.format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                         "{\"type\": \"json_schema\", \"name\": ..., \"schema\": {...}}.")
    schema = {"name": form.get("name") or "output", "schema": form["schema"]}
    for name in ("strict", "description"):
        if form.get(name) is not None:
            schema[name] = form[name]
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


# --- response: OpenAI chat.completion -> response ---------------------------------------------


def new_id(prefix: str) -> str:
    """Ids shaped like OpenAI's (``resp_``, ``msg_``, ``fc_`` and 48 hex digits)."""
    return f"{prefix}_{secrets.token_hex(24)}"


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI chat usage in the Responses API's words; ``input_tokens`` counts cached ones too, as
    ``prompt_tokens`` does."""
    if not isinstance(usage, dict) or not usage:
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    cached = _count(_field(usage.get("prompt_tokens_details"), "cached_tokens"))
    reasoning = _count(_field(usage.get("completion_tokens_details"), "reasoning_tokens"))
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": _count(usage.get("total_tokens")) or prompt + completion}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def status_of(finish: str | None) -> tuple[str, dict[str, Any] | None]:
    """(status, incomplete_details) for a chat finish reason: cut short is "incomplete", with the reason."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def message_item(id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [output_text(text)] if status == "completed" else []
    return {"id": id, "type": "message", "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(id: str, call_id: str | None, name: str | None, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments}


def response_object(body: dict[str, Any], id: str, created_at: int, status: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, incomplete: dict[str, Any] | None = None, model: str | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response as OpenAI sends it, echoing the request's settings; ``store`` is true only when the
    gateway keeps it (it set ``store`` in the body, see the module docstring)."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    tools = [{"type": "function", "name": t.get("name"), "description": t.get("description"),
              "parameters": t.get("parameters"), "strict": t.get("strict", True)}
             for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    return {
        "id": id, "object": "response", "created_at": created_at, "status": status, "background": False,
        "error": error, "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": model or body.get("model"), "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store") is True, "temperature": body.get("temperature"),
        "text": {"format": text.get("format") or {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools, "top_p": body.get("top_p"), "truncation": "disabled", "usage": usage,
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def to_response(completion: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if text:
        output.append(message_item(new_id("msg"), text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # a provider that sent an object: Responses carries a JSON string
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        output.append(function_call_item(new_id("fc"), call.get("id"), function.get("name"), arguments))
    status, incomplete = status_of(choice.get("finish_reason") or "stop")
    created = completion.get("created") if isinstance(completion.get("created"), int) else int(time.time())
    return response_object(body, new_id("resp"), created, status, output, responses_usage(completion.get("usage")),
                           incomplete, completion.get("model"))

