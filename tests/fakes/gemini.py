"""A fake Gemini API (``/v1beta``), as strict as the real one about what it accepts.

It checks the key (``x-goog-api-key`` header or ``?key=``), rejects unknown fields, bad roles, empty
parts, lower-case schema types, OBJECT schemas without properties and unmatched function responses,
with Google's error shape ``{"error": {"code", "message", "status"}}``. Replies are deterministic:

- a conversation ending in function responses gets ``Results: name={...}``;
- with tools declared (and mode not NONE) the first allowed function is called with sample args;
- JSON mode gets a sample instance of ``responseSchema`` (or ``{"echo": <last user text>}``);
- otherwise ``You said: <last user text>`` (plus ``(+N media)`` when parts carry images).

One token is one word (258 per media part). ``maxOutputTokens`` truncates (``MAX_TOKENS``) and
``stopSequences`` cut. Knobs on ``app[GEMINI]``: ``fail_next``, ``reply_next``, ``delay``,
``stream_error_after``; every request is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class GeminiState:
    api_key: str
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    delay: float = 0.0
    stream_error_after: int | None = None  # send an in-stream error after this many chunks

    def fail_next(self, status: int, message: str = "Internal error encountered.", google_status: str = "INTERNAL") -> None:
        self.failures.append((status, message, google_status))

    def reply_next(self, response: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Answer the next generateContent with this body (a list: these stream chunks)."""
        self.replies.append(response)

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.replies.clear()
        self.delay = 0.0
        self.stream_error_after = None


GEMINI = web.AppKey("gemini", GeminiState)

_PATH = re.compile(r"/v1beta/(models|tunedModels)/([A-Za-z0-9._-]+):(\w+)")
_TOP_FIELDS = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings", "cachedContent"}
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_GENERATION_FIELDS = {
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "responseMimeType",
    "responseSchema", "seed", "presencePenalty", "frequencyPenalty", "thinkingConfig",
}
_MIME_TYPES = {"text/plain", "application/json", "text/x.enum"}
_SCHEMA_FIELDS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
    "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_TASK_TYPES = {"RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING",
               "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
_MEDIA_TOKENS = 258  # Gemini's documented cost of one image


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, google_status: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status, self.google_status = status, google_status


def google_error(status: int, message: str, google_status: str, details: list[Any] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status)


def make_gemini_app(api_key: str = "test-gemini-key") -> web.Application:
    app = web.Application()
    app[GEMINI] = GeminiState(api_key)
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[GEMINI]
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.requests.append(RecordedRequest(request.method, request.path, dict(request.query), headers, body))
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return google_error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                            "Please use API Key or other form of API consumer identity to call this API.", "PERMISSION_DENIED")
    if key != state.api_key:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}
        return google_error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [info])
    if state.delay:
        await asyncio.sleep(state.delay)
    if state.failures:
        return google_error(*state.failures.pop(0))
    match = _PATH.fullmatch(request.path)
    if request.method != "POST" or match is None:
        return google_error(404, f"Method not found: {request.method} {request.path}", "NOT_FOUND")
    if not isinstance(body, dict):
        return google_error(400, "Invalid JSON payload received. Expected an object.", "INVALID_ARGUMENT")
    model, method = f"{match.group(1)}/{match.group(2)}", match.group(3)
    try:
        return await _dispatch(request, state, model, method, body)
    except Invalid as exc:
        return google_error(exc.status, str(exc), exc.google_status)


async def _dispatch(request: web.Request, state: GeminiState, model: str, method: str, body: dict) -> web.StreamResponse:
    embedding_model = "embedding" in model
    if method in ("generateContent", "streamGenerateContent"):
        if embedding_model or not re.match(r"gemini-\d", model.split("/")[1]):
            raise Invalid(f"{model} is not found for API version v1beta, or is not supported for {method}. "
                          "Call ListModels to see the list of available models and their supported methods.", 404, "NOT_FOUND")
        _check_generate(body)
        reply = state.replies.pop(0) if state.replies else _reply(body)
        if method == "generateContent":
            return web.json_response(reply[-1] if isinstance(reply, list) else reply)
        return await _stream(request, state, reply if isinstance(reply, list) else _chunks(reply))
    if method in ("embedContent", "batchEmbedContents"):
        if not embedding_model:
            raise Invalid(f"{model} is not found for API version v1beta, or is not supported for {method}. "
                          "Call ListModels to see the list of available models and their supported methods.", 404, "NOT_FOUND")
        if method == "embedContent":
            return web.json_response({"embedding": {"values": _embed(body, model)}})
        _unknown(body, {"requests"}, "")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests or len(requests) > 100:
            raise Invalid("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n")
        for i, item in enumerate(requests):
            if item.get("model") != model:
                raise Invalid(f"* BatchEmbedContentsRequest.requests[{i}].model: model must be the same as the "
                              f"batch request model ({model}).\n")
        return web.json_response({"embeddings": [{"values": _embed(item, model)} for item in requests]})
    raise Invalid(f"Method not found: {method}", 404, "NOT_FOUND")


# ------------------------------------------------------------------------------------- validation


def _unknown(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise Invalid(f"Invalid value at '{where}': expected an object.")
    for name in obj:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise Invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _check_generate(body: dict[str, Any]) -> None:
    _unknown(body, _TOP_FIELDS, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        _unknown(content, {"role", "parts"}, f"contents[{i}]")
        if content.get("role") not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        _check_parts(content.get("parts"), f"contents[{i}]")
    _check_function_turns(contents)
    if "systemInstruction" in body:
        _unknown(body["systemInstruction"], {"role", "parts"}, "system_instruction")
        _check_parts(body["systemInstruction"].get("parts"), "system_instruction")
    _check_generation_config(body.get("generationConfig", {}))
    names = _check_tools(body.get("tools", []))
    if "toolConfig" in body:
        _unknown(body["toolConfig"], {"functionCallingConfig"}, "tool_config")
        config = body["toolConfig"].get("functionCallingConfig", {})
        _unknown(config, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
        if config.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            raise Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', \"{config.get('mode')}\"")
        allowed = config.get("allowedFunctionNames")
        if allowed is not None and (config["mode"] != "ANY" or not set(allowed) <= names):
            raise Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                          "only allowed with mode ANY, and must name declared functions\n")


def _check_parts(parts: Any, where: str) -> None:
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
    for j, part in enumerate(parts):
        _unknown(part, set(_PART_DATA) | {"thought", "thoughtSignature"}, f"{where}.parts[{j}]")
        data = [name for name in _PART_DATA if name in part]
        if len(data) != 1:
            raise Invalid(f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof field 'data' must have one initialized field\n")
        value = part[data[0]]
        if data[0] == "text" and not (isinstance(value, str) and value):
            raise Invalid("Unable to submit request because it has an empty text parameter.")
        if data[0] == "inlineData":
            _unknown(value, {"mimeType", "data"}, f"{where}.parts[{j}].inline_data")
            try:
                base64.b64decode(value.get("data", ""), validate=True)
            except binascii.Error:
                raise Invalid(f"Invalid value at '{where}.parts[{j}].inline_data.data' (TYPE_BYTES), Base64 decoding failed") from None
            if not value.get("mimeType") or not value.get("data"):
                raise Invalid(f"* GenerateContentRequest.{where}.parts[{j}].inline_data: mime_type and data are required\n")
        if data[0] == "fileData":
            _unknown(value, {"mimeType", "fileUri"}, f"{where}.parts[{j}].file_data")
            if not value.get("fileUri") or not value.get("mimeType"):
                raise Invalid(f"* GenerateContentRequest.{where}.parts[{j}].file_data: file_uri and mime_type are required\n")
        if data[0] == "functionCall":
            _unknown(value, {"id", "name", "args"}, f"{where}.parts[{j}].function_call")
            if not value.get("name") or not isinstance(value.get("args", {}), dict):
                raise Invalid(f"* GenerateContentRequest.{where}.parts[{j}].function_call: name required, args an object\n")
        if data[0] == "functionResponse":
            _unknown(value, {"id", "name", "response"}, f"{where}.parts[{j}].function_response")
            if not value.get("name") or not isinstance(value.get("response"), dict):
                raise Invalid(f"* GenerateContentRequest.{where}.parts[{j}].function_response: name required, response an object\n")


def _check_function_turns(contents: list[dict[str, Any]]) -> None:
    for i, content in enumerate(contents):
        responses = sum("functionResponse" in part for part in content["parts"])
        previous_calls = sum("functionCall" in part for part in contents[i - 1]["parts"]) if i else 0
        if responses and not previous_calls:
            raise Invalid("Please ensure that function response turn comes immediately after a function call turn.")
        if previous_calls and responses != previous_calls:
            raise Invalid("Please ensure that the number of function response parts is equal to the number of "
                          "function call parts of the function call turn.")


def _check_generation_config(config: dict[str, Any]) -> None:
    _unknown(config, _GENERATION_FIELDS, "generation_config")
    if not 0 <= config.get("temperature", 1) <= 2:
        raise Invalid("* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]\n")
    if not 1 <= config.get("candidateCount", 1) <= 8:
        raise Invalid("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n")
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or len(stops) > 5:
        raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences\n")
    mime = config.get("responseMimeType", "text/plain")
    if mime not in _MIME_TYPES:
        raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
                      "`text/plain`, `application/json` and `text/x.enum`.\n")
    if "responseSchema" in config:
        if mime == "text/plain":
            raise Invalid("* GenerateContentRequest.generation_config.response_schema: response_mime_type must be "
                          "application/json or text/x.enum to use response_schema\n")
        _check_schema(config["responseSchema"], "generation_config.response_schema")


def _check_schema(schema: Any, where: str) -> None:
    _unknown(schema, _SCHEMA_FIELDS, where)
    kind = schema.get("type")
    if kind is not None and kind not in _TYPES:
        raise Invalid(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), \"{kind}\"")
    if kind == "OBJECT" and not schema.get("properties"):
        raise Invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type\n")
    for name, sub in (schema.get("properties") or {}).items():
        _check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for k, sub in enumerate(schema.get("anyOf") or []):
        _check_schema(sub, f"{where}.any_of[{k}]")


def _check_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(tools):
        _unknown(tool, {"functionDeclarations", "googleSearch", "codeExecution"}, f"tools[{i}]")
        for j, declaration in enumerate(tool.get("functionDeclarations", [])):
            where = f"tools[{i}].function_declarations[{j}]"
            _unknown(declaration, {"name", "description", "parameters", "response"}, where)
            if not _FUNCTION_NAME.fullmatch(declaration.get("name", "")):
                raise Invalid(f"* GenerateContentRequest.{where}.name: Invalid function name.\n")
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], f"{where}.parameters")
            names.add(declaration["name"])
    return names


# ---------------------------------------------------------------------------------------- replies


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    contents = body["contents"]
    config = body.get("generationConfig", {})
    last_parts = contents[-1]["parts"]
    declared = [d for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])]
    calling = body.get("toolConfig", {}).get("functionCallingConfig", {})
    allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declared]
    finish = "STOP"
    if any("functionResponse" in part for part in last_parts):
        results = [f"{p['functionResponse']['name']}={json.dumps(p['functionResponse']['response'])}"
                   for p in last_parts if "functionResponse" in p]
        parts: list[dict[str, Any]] = [{"text": "Results: " + "; ".join(results)}]
    elif declared and calling.get("mode", "AUTO") != "NONE":
        function = next(d for d in declared if d["name"] in allowed)
        parts = [{"functionCall": {"name": function["name"], "args": _sample(function.get("parameters"))}}]
    else:
        last_text = " ".join(p["text"] for p in last_parts if "text" in p)
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseSchema")
            text = json.dumps(_sample(schema) if schema else {"echo": last_text})
        else:
            media = sum("inlineData" in p or "fileData" in p for p in last_parts)
            text = f"You said: {last_text}" + (f" (+{media} media)" if media else "")
        text, finish = _limit(text, config)
        parts = [{"text": text}]
    prompt = _prompt_tokens(body)
    completion = sum(len(p["text"].split()) if "text" in p else 5 for p in parts)
    candidates = [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": i}
                  for i in range(config.get("candidateCount", 1))]
    return {
        "candidates": candidates,
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": completion * len(candidates),
                          "totalTokenCount": prompt + completion * len(candidates)},
        "modelVersion": "gemini-fake-001",
        "responseId": "fake-response-1",
    }


def _limit(text: str, config: dict[str, Any]) -> tuple[str, str]:
    for stop in config.get("stopSequences", []):
        if stop in text:
            text = text[: text.index(stop)]
    words = text.split()
    limit = config.get("maxOutputTokens")
    if limit is not None and len(words) > limit:
        return " ".join(words[:limit]), "MAX_TOKENS"
    return text, "STOP"


def _prompt_tokens(body: dict[str, Any]) -> int:
    turns = body["contents"] + [body.get("systemInstruction", {"parts": []})]
    count = 0
    for part in (p for turn in turns for p in turn["parts"]):
        if "text" in part:
            count += len(part["text"].split())
        elif "inlineData" in part or "fileData" in part:
            count += _MEDIA_TOKENS
        else:
            count += len(json.dumps(part).split())
    return count


def _sample(schema: dict[str, Any] | None) -> Any:
    """A deterministic instance of a (Gemini) schema."""
    if not schema:
        return {}
    kind = schema.get("type", "OBJECT")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "OBJECT":
        return {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "ARRAY":
        return [_sample(schema.get("items"))]
    return {"STRING": "sample", "INTEGER": 1, "NUMBER": 1.5, "BOOLEAN": True}.get(kind)


def _chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a reply the way Gemini streams: text in pieces, every chunk with usage so far, the
    finish reason and the full counts on the last."""
    usage = response["usageMetadata"]
    chunks = []
    pieces: dict[int, list[dict[str, Any]]] = {}
    for candidate in response["candidates"]:
        parts = candidate["content"]["parts"]
        if "text" in parts[0]:
            words = parts[0]["text"].split(" ")
            pieces[candidate["index"]] = [{"text": " ".join(words[k:k + 2]) + (" " if k + 2 < len(words) else "")}
                                         for k in range(0, len(words), 2)]
        else:
            pieces[candidate["index"]] = parts
    for step in range(max(len(p) for p in pieces.values())):
        candidates = []
        for candidate in response["candidates"]:
            mine = pieces[candidate["index"]]
            if step < len(mine):
                item = {"content": {"parts": [mine[step]], "role": "model"}, "index": candidate["index"]}
                if step == len(mine) - 1:
                    item["finishReason"] = candidate["finishReason"]
                candidates.append(item)
        partial = {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"]}
        chunks.append({"candidates": candidates, "usageMetadata": partial, "modelVersion": response["modelVersion"],
                       "responseId": response["responseId"]})
    chunks[-1]["usageMetadata"] = usage
    return chunks


async def _stream(request: web.Request, state: GeminiState, chunks: list[dict[str, Any]]) -> web.StreamResponse:
    if request.query.get("alt") != "sse":  # without alt=sse Gemini streams one JSON array
        return web.json_response(chunks)
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for n, chunk in enumerate(chunks):
        if state.stream_error_after is not None and n == state.stream_error_after:
            error = {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}
            await response.write(f"data: {json.dumps(error)}\r\n\r\n".encode())
            break
        await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
    await response.write_eof()
    return response


def _embed(body: dict[str, Any], model: str) -> list[float]:
    _unknown(body, {"model", "content", "taskType", "title", "outputDimensionality"}, "")
    if "model" in body and body["model"] != model:
        raise Invalid(f"* EmbedContentRequest.model: model must be {model}\n")
    content = body.get("content")
    _unknown(content, {"parts", "role"}, "content")
    _check_parts(content.get("parts"), "content")
    if body.get("taskType", "RETRIEVAL_QUERY") not in _TASK_TYPES:
        raise Invalid(f"Invalid value at 'task_type', \"{body['taskType']}\"")
    dimensions = body.get("outputDimensionality", 8)
    if not 1 <= dimensions <= 3072:
        raise Invalid("* EmbedContentRequest.output_dimensionality: must be in [1, 3072]\n")
    text = " ".join(p.get("text", "") for p in content["parts"])
    return _vector(text, dimensions)


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector; float32-exact values so base64 round trips compare equal."""
    digest = b""
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest + text.encode()).digest()
    return [(b - 128) / 128 for b in digest[:dimensions]]
