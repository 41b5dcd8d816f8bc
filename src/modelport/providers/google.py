"""Google Gemini (Generative Language API) adapter: unified chat and embeddings in Gemini's format.

    chat        POST {base}/models/{model}:generateContent
                POST {base}/models/{model}:streamGenerateContent?alt=sse
    embeddings  POST {base}/models/{model}:embedContent         (one string)
                POST {base}/models/{model}:batchEmbedContents   (a list of strings)

Formats: https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings.
The key travels in the ``x-goog-api-key`` header, which the pipeline injects from the spec. It is never
put in the URL, where it would end up in access and error logs (LiteLLM #6963, #13073).
"""

from __future__ import annotations

import base64
import mimetypes
import re
import secrets
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from modelport.providers.base import Endpoint, Target, UnsupportedParameter, UpstreamRequest
from modelport.sse import SSEParser, encode_event

PROVIDER = "google"

# OpenAI chat parameters Gemini can honour; "user" only labels the caller, so it is dropped quietly.
_CHAT_PARAMETERS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k", "max_tokens",
    "max_completion_tokens", "stop", "n", "seed", "presence_penalty", "frequency_penalty",
    "response_format", "tools", "tool_choice", "user",
})
_EMBEDDING_PARAMETERS = frozenset({"model", "input", "dimensions", "encoding_format", "user", "task_type"})
# Parameters accepted only with values that change nothing for Gemini.
_HARMLESS_VALUES: dict[str, tuple[Any, ...]] = {"logprobs": (False,), "parallel_tool_calls": (True,)}

_GENERATION_FIELDS = {
    "temperature": "temperature", "top_p": "topP", "top_k": "topK", "n": "candidateCount",
    "seed": "seed", "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty",
}
_FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Gemini's Schema is an OpenAPI 3.0 subset; JSON-Schema keys outside it are rejected upstream
# ("Unknown name ... Cannot find field"), so they are dropped here. https://ai.google.dev/api/caching#Schema
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
    "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
_SCHEMA_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_MODEL_NAME = re.compile(r"(?:models/|(tunedModels/))?([A-Za-z0-9][A-Za-z0-9._-]*)")
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


class GeminiAdapter:
    """Translation between the unified (OpenAI) API and the Gemini API."""

    def build_request(
        self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool
    ) -> UpstreamRequest:
        if endpoint == "chat":
            _check_parameters(body, _CHAT_PARAMETERS, strict)
            stream = bool(body.get("stream"))
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            headers = {"content-type": "application/json"}
            if stream:
                headers["accept"] = "text/event-stream"
            url = f"{target.base_url}/{_model_path(body)}:{method}"
            return UpstreamRequest("POST", url, headers, orjson.dumps(_chat_body(body)), stream)
        if endpoint == "embeddings":
            _check_parameters(body, _EMBEDDING_PARAMETERS, strict)
            method, payload = _embedding_body(body)
            url = f"{target.base_url}/{_model_path(body)}:{method}"
            return UpstreamRequest("POST", url, {"content-type": "application/json"}, orjson.dumps(payload))
        raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")

    def parse_response(
        self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]
    ) -> bytes:
        data = orjson.loads(body)
        if endpoint == "embeddings":
            return orjson.dumps(_embeddings(data, request_body))
        return orjson.dumps(_completion(data, request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> GeminiChatStream:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        return GeminiChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return {"error": _error(status, body)}


# ---------------------------------------------------------------------------------------- requests


def _check_parameters(body: dict[str, Any], accepted: frozenset[str], strict: bool) -> None:
    """Under strict compliance, refuse what Gemini cannot honour; lenient requests just lose it
    (the native body is built only from parameters that map)."""
    if not strict:
        return
    for name in sorted(body):
        value = body[name]
        if name in accepted or value is None or value in _HARMLESS_VALUES.get(name, ()):
            continue
        raise UnsupportedParameter(name, PROVIDER)


def _model_path(body: dict[str, Any]) -> str:
    """``models/<id>`` (or ``tunedModels/<id>``) from ``gemini-1.5-pro`` or ``models/gemini-1.5-pro``.

    The name becomes part of the URL path, so anything but a plain id is refused: a model of
    ``../files`` must not reach another endpoint with the stored key.
    """
    model = body.get("model")
    match = _MODEL_NAME.fullmatch(model) if isinstance(model, str) else None
    if match is None:
        raise ValueError(f"Invalid model name for provider '{PROVIDER}': {model!r}.")
    return f"{match.group(1) or 'models/'}{match.group(2)}"


def _chat_body(body: dict[str, Any]) -> dict[str, Any]:
    system, contents = _contents(body.get("messages"))
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if config := _generation_config(body):
        payload["generationConfig"] = config
    if declarations := _function_declarations(body.get("tools")):
        payload["tools"] = [{"functionDeclarations": declarations}]
    if (choice := body.get("tool_choice")) is not None:
        payload["toolConfig"] = {"functionCallingConfig": _function_calling(choice)}
    return payload


def _contents(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text parts, and the turns with roles ``user``/``model``.

    Consecutive messages of one role are merged into one turn: Gemini wants the results of parallel
    function calls in the single turn that follows the call turn.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list.")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> function name; Gemini matches results by name
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.get("content"), role))
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.get("content"))
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(message, tool_names)
        elif role == "tool":
            name = tool_names.get(message.get("tool_call_id", ""))
            if name is None:
                raise ValueError(f"Tool message refers to unknown tool_call_id {message.get('tool_call_id')!r}.")
            turn, parts = "user", [_function_response(name, message.get("content"))]
        else:
            raise ValueError(f"Message role {role!r} is not supported by provider '{PROVIDER}'.")
        if not parts:
            continue  # Gemini rejects turns without parts (an empty assistant message, say)
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    if not contents:
        raise ValueError("Gemini needs at least one user message besides the system prompt.")
    return system, contents


def _texts(content: Any, role: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for part in content:
        if part.get("type") != "text":
            raise ValueError(f"Only text content is supported in {role} messages.")
        if part.get("text"):
            texts.append(part["text"])
    return texts


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(_media_part(image.get("url") if isinstance(image, dict) else image, "image/jpeg"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            mime = _AUDIO_TYPES.get(audio.get("format", ""), "audio/wav")
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data", "")}})
        elif kind == "file" and str((part.get("file") or {}).get("file_data", "")).startswith("data:"):
            parts.append(_media_part(part["file"]["file_data"], "application/pdf"))
        else:
            raise ValueError(f"Content part type {kind!r} is not supported by provider '{PROVIDER}'.")
    return parts


def _media_part(url: Any, default_mime: str) -> dict[str, Any]:
    """A ``data:`` URL is sent inline; any other URL is referenced, with its type guessed from the
    path because Gemini requires ``mimeType`` on ``fileData``."""
    if not isinstance(url, str) or not url:
        raise ValueError("A media content part needs a URL.")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise ValueError("Only base64 data: URLs are supported.")
        return {"inlineData": {"mimeType": mime or default_mime, "data": data}}
    if urlsplit(url).scheme not in ("http", "https", "gs"):
        raise ValueError(f"Unsupported media URL scheme in {url[:40]!r}.")
    mime = mimetypes.guess_type(urlsplit(url).path)[0] or default_mime
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _assistant_parts(message: dict[str, Any], tool_names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": text} for text in _texts(message.get("content"), "assistant")]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            args = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise ValueError(f"Tool call {call.get('id')!r} has arguments that are not JSON.") from None
        tool_names[call.get("id", "")] = function.get("name", "")
        part: dict[str, Any] = {"functionCall": {"name": function.get("name", ""), "args": args}}
        # Gemini 3 refuses a function-call history without the signature it issued
        # (https://ai.google.dev/gemini-api/docs/thought-signatures); it rides on the tool call the
        # way Google's own OpenAI-compatible endpoint returns it.
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(name: str, content: Any) -> dict[str, Any]:
    """Gemini wants an object; a non-object result is wrapped as ``{"result": ...}``, as the
    google-genai SDK does for automatic function calling."""
    text = content if isinstance(content, str) else "".join(_texts(content, "tool"))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = {native: body[name] for name, native in _GENERATION_FIELDS.items() if body.get(name) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = _schema(schema, schema.get("$defs") or schema.get("definitions") or {})
    return config


def _function_declarations(tools: Any) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools or []:
        if tool.get("type") != "function":
            raise ValueError(f"Tool type {tool.get('type')!r} is not supported by provider '{PROVIDER}'.")
        function = tool.get("function") or {}
        declaration = {"name": function.get("name", "")}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = function.get("parameters")
        # Gemini rejects an OBJECT schema with no properties; a function without arguments is
        # declared without a schema instead.
        if parameters and parameters.get("properties"):
            declaration["parameters"] = _schema(parameters, parameters.get("$defs") or {})
        declarations.append(declaration)
    return declarations


def _function_calling(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"mode": _TOOL_MODES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise ValueError(f"Unsupported tool_choice {choice!r}.")


def _schema(node: dict[str, Any], definitions: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """A JSON Schema as Gemini's Schema: local ``$ref``s inlined, ``["x", "null"]`` types as
    ``nullable``, ``oneOf``/``const`` as ``anyOf``/``enum``, types in upper case (the proto enum)."""
    if depth > 32:
        raise ValueError("JSON schema is nested too deeply (recursive $ref?).")
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = definitions.get(ref.rsplit("/", 1)[-1])
        if target is None:
            raise ValueError(f"Unresolvable $ref {ref!r} in JSON schema.")
        return _schema(target, definitions, depth + 1)
    node = {**node}
    if "oneOf" in node and "anyOf" not in node:
        node["anyOf"] = node.pop("oneOf")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            node["anyOf"] = [{"type": k} for k in kinds]
    if isinstance(kind, str):
        out["type"] = kind.upper()
    for key, value in node.items():
        if key not in _SCHEMA_KEYS or key == "type" or value is None:
            continue
        if key == "properties":
            value = {name: _schema(sub, definitions, depth + 1) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            value = _schema(value, definitions, depth + 1)
        elif key == "anyOf":
            value = [_schema(sub, definitions, depth + 1) for sub in value]
        elif key == "format" and value not in _SCHEMA_FORMATS:
            continue
        out[key] = value
    return out


def _embedding_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    texts = body.get("input")
    single = isinstance(texts, str)
    if single:
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"Provider '{PROVIDER}' embeds strings only; 'input' must be a string or a list of strings.")
    options: dict[str, Any] = {}
    if body.get("dimensions") is not None:
        options["outputDimensionality"] = body["dimensions"]
    if body.get("task_type"):
        options["taskType"] = body["task_type"]
    if single:
        return "embedContent", {"content": {"parts": [{"text": texts[0]}]}, **options}
    model = _model_path(body)
    requests = [{"model": model, "content": {"parts": [{"text": text}]}, **options} for text in texts]
    return "batchEmbedContents", {"requests": requests}


# --------------------------------------------------------------------------------------- responses


def _completion(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    choices = [_choice(candidate) for candidate in data.get("candidates") or []]
    if not choices:  # the prompt itself was blocked: promptFeedback.blockReason, no candidates
        message = {"role": "assistant", "content": None}
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}]
    return {
        "id": _completion_id(data),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("modelVersion") or _model_id(request_body),
        "choices": choices,
        "usage": _usage(data.get("usageMetadata") or {}),
    }


def _choice(candidate: dict[str, Any]) -> dict[str, Any]:
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(part["text"] for part in parts if "text" in part and not part.get("thought"))
    tool_calls = [_tool_call(part) for part in parts if "functionCall" in part]
    finish = "tool_calls" if tool_calls else _FINISH_REASONS.get(candidate.get("finishReason", ""), "stop")
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls or finish == "content_filter" else "")}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": candidate.get("index", 0), "message": message, "logprobs": None, "finish_reason": finish}


def _tool_call(part: dict[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    tool_call: dict[str, Any] = {
        "id": call.get("id") or f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": call.get("name", ""), "arguments": orjson.dumps(call.get("args") or {}).decode()},
    }
    if part.get("thoughtSignature"):
        tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return tool_call


def _usage(meta: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from ``usageMetadata``. Thinking tokens are billed as output, so they count as
    completion tokens, as OpenAI counts reasoning tokens."""
    prompt = meta.get("promptTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    completion = meta.get("candidatesTokenCount", 0) + thoughts
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": meta.get("totalTokenCount", prompt + completion),
    }
    if meta.get("cachedContentTokenCount"):
        usage["prompt_tokens_details"] = {"cached_tokens": meta["cachedContentTokenCount"]}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _embeddings(data: dict[str, Any], request_body: dict[str, Any]) -> dict[str, Any]:
    vectors = [data["embedding"]["values"]] if "embedding" in data else [e["values"] for e in data.get("embeddings", [])]
    as_base64 = request_body.get("encoding_format") == "base64"
    items = [
        {"object": "embedding", "index": i, "embedding": _base64_floats(v) if as_base64 else v}
        for i, v in enumerate(vectors)
    ]
    # The Gemini API reports no token count for embeddings unless usageMetadata is present.
    tokens = (data.get("usageMetadata") or {}).get("promptTokenCount", 0)
    return {
        "object": "list",
        "data": items,
        "model": _model_id(request_body),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _base64_floats(values: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32. The openai SDK asks for it by default."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _model_id(request_body: dict[str, Any]) -> str:
    return str(request_body.get("model", "")).removeprefix("models/")


def _completion_id(data: dict[str, Any]) -> str:
    return f"chatcmpl-{data.get('responseId') or secrets.token_hex(12)}"


# ----------------------------------------------------------------------------------------- streams


class GeminiChatStream:
    """Gemini SSE (each ``data:`` a GenerateContentResponse) to OpenAI ``chat.completion.chunk``s."""

    def __init__(self, request_body: dict[str, Any]) -> None:
        self.usage: dict[str, Any] | None = None
        self._parser = SSEParser()
        self._id: str | None = None
        self._created = int(time.time())
        self._model = _model_id(request_body)
        self._include_usage = bool((request_body.get("stream_options") or {}).get("include_usage"))
        self._started: set[int] = set()
        self._tool_calls: dict[int, int] = {}  # choice index -> tool calls so far
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._translate(event.data) for event in self._parser.feed(chunk))

    def finish(self) -> bytes:
        tail = b"".join(self._translate(event.data) for event in self._parser.finish())
        if self._include_usage and self.usage is not None and not self._done:
            tail += self._chunk([], usage=self.usage)
        return tail + b"data: [DONE]\n\n"

    def _translate(self, data: str) -> bytes:
        try:
            response = orjson.loads(data) if not self._done and data.strip() else None
        except orjson.JSONDecodeError:
            response = None  # not Gemini's; dropping one malformed event beats breaking the stream
        if not isinstance(response, dict):
            return b""
        if "error" in response:  # an error after the 200: pass it on in OpenAI's in-stream shape
            self._done = True
            return encode_event(orjson.dumps({"error": _error_fields(500, response["error"])}).decode())
        self._id = self._id or _completion_id(response)
        self._model = response.get("modelVersion") or self._model
        if response.get("usageMetadata"):
            self.usage = _usage(response["usageMetadata"])
        candidates = response.get("candidates") or []
        if not candidates and (response.get("promptFeedback") or {}).get("blockReason"):
            return self._chunk([self._delta(0, {}, "content_filter")])
        return b"".join(self._candidate(candidate) for candidate in candidates)

    def _candidate(self, candidate: dict[str, Any]) -> bytes:
        index = candidate.get("index", 0)
        parts = (candidate.get("content") or {}).get("parts") or []
        delta: dict[str, Any] = {}
        text = "".join(part["text"] for part in parts if "text" in part and not part.get("thought"))
        if text:
            delta["content"] = text
        calls = [_tool_call(part) for part in parts if "functionCall" in part]
        if calls:
            first = self._tool_calls.get(index, 0)
            delta["tool_calls"] = [{"index": first + i, **call} for i, call in enumerate(calls)]
            self._tool_calls[index] = first + len(calls)
        out = self._chunk([self._delta(index, delta, None)]) if delta or index not in self._started else b""
        reason = candidate.get("finishReason")
        if reason:
            finish = "tool_calls" if self._tool_calls.get(index) else _FINISH_REASONS.get(reason, "stop")
            out += self._chunk([self._delta(index, {}, finish)])
        return out

    def _delta(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        if index not in self._started:  # OpenAI's first delta of a choice carries the role
            self._started.add(index)
            delta = {"role": "assistant", "content": delta.get("content", ""), **delta}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id or _completion_id({}),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage  # OpenAI: null on every chunk but the last when usage is asked for
        return encode_event(orjson.dumps(chunk).decode())


# ------------------------------------------------------------------------------------------ errors

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error"}


def _error(status: int, body: bytes) -> dict[str, Any]:
    """``{"error": {"code", "message", "status", "details"}}`` (a list of them from a non-SSE
    stream) to OpenAI's error fields."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace").strip()[:500]  # an HTML error page can be long
        return {"message": text or f"Gemini returned HTTP {status}.", "type": _error_type(status),
                "param": None, "code": None}
    return _error_fields(status, error)


def _error_fields(status: int, error: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "message": error.get("message") or f"Gemini returned HTTP {status}.",
        "type": _error_type(error.get("code") or status),
        "param": None,
        "code": error.get("status"),
    }
    # Google answers a wrong key with 400 INVALID_ARGUMENT; the ErrorInfo reason says what it is.
    reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
    if "API_KEY_INVALID" in reasons:
        fields.update(type="authentication_error", code="invalid_api_key")
    return fields


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


ADAPTER = GeminiAdapter()
