"""Google Gemini (Generative Language API) adapter: unified chat and embeddings in Gemini's format.

    chat        POST {base}/models/{model}:generateContent
                POST {base}/models/{model}:streamGenerateContent?alt=sse
    embeddings  POST {base}/models/{model}:embedContent         (one string)
                POST {base}/models/{model}:batchEmbedContents   (a list of strings)

Formats: https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings.
The key travels in the ``x-goog-api-key`` header, which the pipeline injects from the spec. It is never
put in the URL, where it would end up in access and error logs (LiteLLM #6963, #13073).
This module translates requests; ``google_responses`` translates answers, ``google_schema`` JSON Schemas.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from modelport.providers.base import Endpoint, Target, UpstreamRequest
from modelport.providers.google_responses import (
    GeminiChatStream,
    to_chat_completion,
    to_embedding_list,
    to_openai_error,
)
from modelport.providers.google_schema import gemini_schema
from modelport.providers.openai_shapes import (
    chat_messages,
    embedding_texts,
    max_tokens,
    refuse_unsupported,
    stop_sequences,
    text_parts,
    tool_arguments,
)

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
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MODEL_NAME = re.compile(r"(?:models/|(tunedModels/))?([A-Za-z0-9][A-Za-z0-9._-]*)")
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


class GeminiAdapter:
    """Translation between the unified (OpenAI) API and the Gemini API."""

    def build_request(
        self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool
    ) -> UpstreamRequest:
        if endpoint == "chat":
            url = f"{target.base_url}/{_model_path(body)}"
            return chat_request(url, body, strict, PROVIDER)
        if endpoint == "embeddings":
            refuse_unsupported(body, _EMBEDDING_PARAMETERS, PROVIDER, strict, _HARMLESS_VALUES)
            method, payload = _embedding_body(body)
            url = f"{target.base_url}/{_model_path(body)}:{method}"
            return UpstreamRequest("POST", url, {"content-type": "application/json"}, orjson.dumps(payload))
        raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")

    def parse_response(
        self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]
    ) -> bytes:
        data = orjson.loads(body)
        if endpoint == "embeddings":
            return orjson.dumps(to_embedding_list(data, request_body))
        return orjson.dumps(to_chat_completion(data, request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> GeminiChatStream:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        return GeminiChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return to_openai_error(status, body)


ADAPTER = GeminiAdapter()


def chat_request(model_url: str, body: dict[str, Any], strict: bool, provider: str) -> UpstreamRequest:
    """A unified chat body as a ``generateContent`` request (``streamGenerateContent?alt=sse`` when it
    streams) to the model at ``model_url``: the Gemini API's and Vertex AI's, which share the format."""
    refuse_unsupported(body, _CHAT_PARAMETERS, provider, strict, _HARMLESS_VALUES)
    stream = bool(body.get("stream"))
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    headers = {"content-type": "application/json"}
    if stream:
        headers["accept"] = "text/event-stream"
    return UpstreamRequest("POST", f"{model_url}:{method}", headers, orjson.dumps(_chat_body(body)), stream)


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
    system, contents = _contents(chat_messages(body))
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


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text parts, and the turns with roles ``user``/``model``.

    Consecutive messages of one role are merged into one turn: Gemini wants the results of parallel
    function calls in the single turn that follows the call turn.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> function name; Gemini matches results by name
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in text_parts(message.get("content"), role))
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
    parts: list[dict[str, Any]] = [{"text": text} for text in text_parts(message.get("content"), "assistant")]
    for call in message.get("tool_calls") or []:
        name = (call.get("function") or {}).get("name", "")
        tool_names[call.get("id", "")] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": tool_arguments(call)}}
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
    text = content if isinstance(content, str) else "".join(text_parts(content, "tool"))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config = {native: body[name] for name, native in _GENERATION_FIELDS.items() if body.get(name) is not None}
    if (limit := max_tokens(body)) is not None:
        config["maxOutputTokens"] = limit
    if stop := stop_sequences(body):
        config["stopSequences"] = stop
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = gemini_schema(schema)
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
            declaration["parameters"] = gemini_schema(parameters)
        declarations.append(declaration)
    return declarations


def _function_calling(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"mode": _TOOL_MODES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise ValueError(f"Unsupported tool_choice {choice!r}.")


def _embedding_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    texts = embedding_texts(body, PROVIDER)
    options: dict[str, Any] = {}
    if body.get("dimensions") is not None:
        options["outputDimensionality"] = body["dimensions"]
    if body.get("task_type"):
        options["taskType"] = body["task_type"]
    if isinstance(body["input"], str):
        return "embedContent", {"content": {"parts": [{"text": texts[0]}]}, **options}
    model = _model_path(body)
    requests = [{"model": model, "content": {"parts": [{"text": text}]}, **options} for text in texts]
    return "batchEmbedContents", {"requests": requests}
