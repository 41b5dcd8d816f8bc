"""Bedrock's Converse API: unified chat (OpenAI's format) to and from one request format for every model
family on Bedrock (Anthropic Claude, Meta Llama, Mistral, Amazon Nova, ...).

    chat   POST {base}/model/{modelId}/converse          JSON answer
           POST {base}/model/{modelId}/converse-stream   event-stream answer (``eventstream``)

Formats: docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
API_runtime_ConverseStream.html. The model id (a model, an inference profile such as
``us.meta.llama3-2-11b-instruct-v1:0``, or an ARN) is percent-encoded whole into its one path segment
(``:`` → ``%3A``, ``/`` → ``%2F``), so it cannot reach another path; the signer signs the path as sent.
Requests carry no credential: the provider's auth hook signs them (``bedrock.auth``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from modelport.providers.base import Endpoint, Target, UpstreamRequest
from modelport.providers.bedrock.answers import ConverseChatStream, to_chat_completion, to_openai_error
from modelport.providers.openai_shapes import (
    chat_messages,
    max_tokens,
    refuse_unsupported,
    stop_sequences,
    text_parts,
    tool_arguments,
)

PROVIDER = "bedrock"

_CHAT_PARAMETERS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "tools", "tool_choice", "user",
})
# Values that change nothing for Converse, accepted even under strict compliance.
_HARMLESS_VALUES: dict[str, tuple[Any, ...]] = {"n": (1,), "logprobs": (False,), "parallel_tool_calls": (True,)}
_INFERENCE_FIELDS = {"temperature": "temperature", "top_p": "topP"}
# A model id, an inference profile id or an ARN (arn:aws:bedrock:us-east-1:123456789012:inference-profile/...).
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,2047}")
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


class ConverseAdapter:
    """Translation between the unified (OpenAI) chat API and Bedrock's Converse API."""

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        if endpoint != "chat":
            raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")
        refuse_unsupported(body, _CHAT_PARAMETERS, PROVIDER, strict, _HARMLESS_VALUES)
        stream = bool(body.get("stream"))
        url = f"{target.base_url}/model/{model_segment(body.get('model'))}/{'converse-stream' if stream else 'converse'}"
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        headers = {"content-type": "application/json", "accept": accept}
        return UpstreamRequest("POST", url, headers, orjson.dumps(converse_body(body)), stream)

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        return orjson.dumps(to_chat_completion(orjson.loads(body), request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> ConverseChatStream:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        return ConverseChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return to_openai_error(status, body)


ADAPTER = ConverseAdapter()


def model_segment(model: Any) -> str:
    if not isinstance(model, str) or not _MODEL_ID.fullmatch(model):
        raise ValueError(f"Invalid model id for provider '{PROVIDER}': {model!r}.")
    return quote(model, safe="")


def converse_body(body: dict[str, Any]) -> dict[str, Any]:
    system, messages = _messages(chat_messages(body))
    payload: dict[str, Any] = {"messages": messages}
    if system:
        payload["system"] = system
    if config := _inference_config(body):
        payload["inferenceConfig"] = config
    if tool_config := _tool_config(body, messages):
        payload["toolConfig"] = tool_config
    return payload


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and the turns. Converse wants turns that alternate user/assistant, so consecutive
    messages of one role (parallel tool results, say) are merged into one turn."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("Each message must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in text_parts(message.get("content"), role))
            continue
        if role == "user":
            turn, blocks = "user", _user_blocks(message.get("content"))
        elif role == "assistant":
            turn, blocks = "assistant", _assistant_blocks(message)
        elif role == "tool":
            turn, blocks = "user", [_tool_result(message)]
        else:
            raise ValueError(f"Message role {role!r} is not supported by provider '{PROVIDER}'.")
        if not blocks:
            continue  # Converse refuses a turn without content (an empty assistant message)
        if turns and turns[-1]["role"] == turn:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn, "content": blocks})
    if not turns:
        raise ValueError("Bedrock needs at least one user message besides the system prompt.")
    return system, turns


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            blocks.append(_image(image.get("url") if isinstance(image, dict) else image))
        else:
            raise ValueError(f"Content part type {kind!r} is not supported by provider '{PROVIDER}'.")
    return blocks


def _image(url: Any) -> dict[str, Any]:
    """A base64 ``data:`` URL goes inline (JSON carries Converse's ``bytes`` as base64); an ``s3://``
    URL is referenced. Bedrock fetches no http(s) URLs, and the gateway does not fetch them for it."""
    if isinstance(url, str) and url.startswith("s3://"):
        return {"image": {"format": _IMAGE_FORMATS.get(_guess_type(url), "png"), "source": {"s3Location": {"uri": url}}}}
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ValueError(f"Provider '{PROVIDER}' takes images as base64 data: URLs or s3:// URLs.")
    header, _, data = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if encoding != "base64" or not data or mime not in _IMAGE_FORMATS:
        raise ValueError("Images must be base64 data: URLs of PNG, JPEG, GIF or WebP.")
    return {"image": {"format": _IMAGE_FORMATS[mime], "source": {"bytes": data}}}


def _guess_type(url: str) -> str:
    extension = url.rsplit(".", 1)[-1].lower()
    return f"image/{'jpeg' if extension == 'jpg' else extension}"


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": text} for text in text_parts(message.get("content"), "assistant")]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append({"toolUse": {"toolUseId": call.get("id", ""), "name": function.get("name", ""),
                                   "input": tool_arguments(call)}})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    """A tool's answer: JSON as a ``json`` block when it parses to an object, else text."""
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(text_parts(content, "tool"))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    block = {"json": value} if isinstance(value, dict) else {"text": text}
    return {"toolResult": {"toolUseId": message.get("tool_call_id", ""), "content": [block]}}


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config = {native: body[name] for name, native in _INFERENCE_FIELDS.items() if body.get(name) is not None}
    if (limit := max_tokens(body)) is not None:
        config["maxTokens"] = limit
    if stop := stop_sequences(body):
        config["stopSequences"] = stop
    return config


def _tool_config(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = [_tool_spec(tool) for tool in body.get("tools") or []]
    choice = body.get("tool_choice")
    if choice == "none":
        # Converse has no "none". Without tools declared the model cannot call one; but a history
        # with tool calls needs them declared, and then nothing would hold the model back.
        if any("toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]):
            raise ValueError(f"tool_choice 'none' cannot be honoured by provider '{PROVIDER}' once tools were used.")
        return None
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice)
    return config


def _tool_spec(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise ValueError(f"Tool type {tool.get('type') if isinstance(tool, dict) else tool!r} is not supported "
                         f"by provider '{PROVIDER}'.")
    function = tool.get("function") or {}
    spec: dict[str, Any] = {"name": function.get("name", ""),
                            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def _tool_choice(choice: Any) -> dict[str, Any]:
    # Only Anthropic, Mistral Large and Nova models take "any" and "tool"; Bedrock refuses them for
    # others with a ValidationException, relayed as it comes.
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function" and (choice.get("function") or {}).get("name"):
        return {"tool": {"name": choice["function"]["name"]}}
    raise ValueError(f"Unsupported tool_choice {choice!r}.")
