"""A fake AWS Bedrock Runtime (Converse, ConverseStream) and STS (AssumeRole), as strict as the real ones.

Every request's SigV4 signature is checked with botocore over the bytes received (``aws_auth``), so a
request the gateway signs wrongly is refused here exactly as AWS would refuse it, with AWS's 403 body.

Converse (``POST /model/{modelId}/converse``, ``…/converse-stream``) refuses unknown fields, unknown
models, turns that do not alternate (or start with the assistant), empty content, tool blocks without a
``toolConfig``, tool results that answer no tool use, and ``toolChoice`` any/tool for models that lack
it, with ``{"message"}`` and ``x-amzn-errortype``. Replies are deterministic:

- a conversation ending in tool results gets ``Results: <id>=<content>; …``;
- with tools declared, the last user turn having no tool result, the named tool (``toolChoice.tool``)
  or the first one is called with a sample input from its schema;
- otherwise ``You said: <last user text>`` (plus `` (+N images)``).

One token is one word; ``maxTokens`` truncates (``max_tokens``), ``stopSequences`` cut
(``stop_sequence``). Streams are real event-stream frames. STS (``POST /`` with ``Action=AssumeRole``)
issues session keys for the roles in ``roles`` (checking the ``ExternalId``), which Bedrock then takes.
Knobs on ``app[BEDROCK]``: ``fail_next``, ``stream_error_after``, ``sts_lifetime``; requests are kept.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

from modelport.providers.bedrock import eventstream
from tests.fakes.aws_auth import AwsAccount, KeyPair, Refused, check_signature

MODELS = {
    "anthropic.claude-3-5-sonnet-20241022-v2:0", "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-haiku-20240307-v1:0", "us.meta.llama3-2-11b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0", "amazon.nova-pro-v1:0", "us.amazon.nova-pro-v1:0", "amazon.nova-lite-v1:0",
}
# Models whose Converse takes toolChoice "any" and "tool" (docs: "Call a tool with the Converse API").
_FULL_TOOL_CHOICE = ("anthropic.", "us.anthropic.", "mistral.mistral-large", "amazon.nova", "us.amazon.nova")
_TOP_LEVEL = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields",
              "additionalModelResponseFieldPaths", "guardrailConfig", "requestMetadata", "performanceConfig"}
_BLOCKS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "reasoningContent",
           "cachePoint"}
_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}
_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class BedrockState:
    account: AwsAccount
    roles: dict[str, str | None] = field(default_factory=dict)  # role ARN -> required ExternalId
    requests: list[Recorded] = field(default_factory=list)
    sts_calls: list[dict[str, str]] = field(default_factory=list)
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    stream_error_after: int | None = None  # events sent before a throttlingException
    sts_lifetime: int = 3600

    def fail_next(self, status: int, error_type: str, message: str) -> None:
        self.failures.append((status, error_type, message))

    def reset(self) -> None:
        self.requests.clear()
        self.sts_calls.clear()
        self.failures.clear()
        self.stream_error_after = None
        self.sts_lifetime = 3600
        self.account.clock_offset = 0.0


BEDROCK = web.AppKey("bedrock", BedrockState)


def make_bedrock_app(access_key_id: str, secret: str, region: str = "us-east-1") -> web.Application:
    app = web.Application()
    app[BEDROCK] = BedrockState(AwsAccount(region, {access_key_id: KeyPair(secret)}))
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


def aws_error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status,
                             headers={"x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"})


class Invalid(Exception):
    pass


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[BEDROCK]
    raw = await request.read()
    if request.method == "POST" and request.raw_path == "/":
        return _sts(request, raw, state)
    try:
        check_signature(request, raw, state.account, "bedrock")
    except Refused as refused:
        return aws_error(refused.status, refused.error_type, refused.message)
    body = orjson.loads(raw) if raw[:1] == b"{" else None
    state.requests.append(Recorded(request.raw_path, {k.lower(): v for k, v in request.headers.items()}, body))
    if state.failures:
        return aws_error(*state.failures.pop(0))
    match = _PATH.fullmatch(request.raw_path)
    if request.method != "POST" or match is None:
        return aws_error(404, "UnknownOperationException", "Unknown operation")
    model = unquote(match["model"])
    try:
        if model not in MODELS:
            raise Invalid("The provided model identifier is invalid.")
        if not isinstance(body, dict):
            raise Invalid("Malformed input request, please reformat your input and try again.")
        _check(body, model)
    except Invalid as invalid:
        return aws_error(400, "ValidationException", str(invalid))
    answer = _reply(body)
    if match["op"] == "converse":
        return web.json_response({**answer, "metrics": {"latencyMs": 12}})
    return await _stream(request, state, answer)


# ------------------------------------------------------------------------------------- validation


def _unknown(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise Invalid(f"Malformed input request: {where} must be an object, please reformat your input and try again.")
    for key in obj:
        if key not in allowed:
            raise Invalid(f"Malformed input request: #{where}: extraneous key [{key}] is not permitted, "
                          "please reformat your input and try again.")


def _check(body: dict[str, Any], model: str) -> None:
    _unknown(body, _TOP_LEVEL, "")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("A conversation must start with a user message. Try again with a conversation that starts "
                      "with a user message.")
    tool_ids: set[str] = set()
    uses_tools = False
    for i, message in enumerate(messages):
        _unknown(message, {"role", "content"}, f"/messages/{i}")
        expected = "user" if i % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise Invalid("A conversation must alternate between user and assistant roles. Make sure the "
                          "conversation alternates between user and assistant roles and try again.")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock "
                          "object to the content field and try again.")
        for block in content:
            _unknown(block, _BLOCKS, f"/messages/{i}/content")
            if len(block) != 1:
                raise Invalid("A content block must contain exactly one member.")
            if "toolUse" in block:
                uses_tools = True
                if expected != "assistant":
                    raise Invalid("Only an assistant turn can contain toolUse blocks.")
                _unknown(block["toolUse"], {"toolUseId", "name", "input"}, f"/messages/{i}/content/toolUse")
                if not isinstance(block["toolUse"].get("input"), dict):
                    raise Invalid("toolUse.input must be a JSON object.")
                tool_ids.add(block["toolUse"]["toolUseId"])
            if "toolResult" in block:
                uses_tools = True
                result = block["toolResult"]
                _unknown(result, {"toolUseId", "content", "status"}, f"/messages/{i}/content/toolResult")
                if result.get("toolUseId") not in tool_ids:
                    raise Invalid(f"The toolResult blocks at messages.{i}.content do not match any toolUse block.")
            if "text" in block and not (isinstance(block["text"], str) and block["text"]):
                raise Invalid("The text field in the ContentBlock object is blank. Add text and try again.")
            if "image" in block:
                image = block["image"]
                _unknown(image, {"format", "source"}, f"/messages/{i}/content/image")
                if image.get("format") not in ("png", "jpeg", "gif", "webp"):
                    raise Invalid("Unsupported image format.")
    for j, block in enumerate(body.get("system") or []):
        _unknown(block, {"text", "guardContent", "cachePoint"}, f"/system/{j}")
    config = body.get("inferenceConfig") or {}
    _unknown(config, _INFERENCE, "/inferenceConfig")
    if "maxTokens" in config and not (isinstance(config["maxTokens"], int) and config["maxTokens"] >= 1):
        raise Invalid("The maximum tokens you requested must be at least 1.")
    for name in ("temperature", "topP"):
        if name in config and not 0 <= config[name] <= 1:
            raise Invalid(f"1 validation error detected: Value at 'inferenceConfig.{name}' failed to satisfy "
                          "constraint: Member must have value less than or equal to 1")
    tool_config = body.get("toolConfig")
    if uses_tools and not tool_config:
        raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    if tool_config is not None:
        _check_tools(tool_config, model)


def _check_tools(config: Any, model: str) -> None:
    _unknown(config, {"tools", "toolChoice"}, "/toolConfig")
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        raise Invalid("The value at toolConfig.tools must contain at least 1 tool.")
    for tool in tools:
        _unknown(tool, {"toolSpec", "cachePoint"}, "/toolConfig/tools")
        spec = tool.get("toolSpec") or {}
        _unknown(spec, {"name", "description", "inputSchema"}, "/toolConfig/tools/toolSpec")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", spec.get("name", "")) or "json" not in (spec.get("inputSchema") or {}):
            raise Invalid("The toolSpec needs a name and an inputSchema.json.")
    choice = config.get("toolChoice")
    if choice is not None:
        _unknown(choice, {"auto", "any", "tool"}, "/toolConfig/toolChoice")
        kind = next(iter(choice), None)
        if kind in ("any", "tool") and not model.startswith(_FULL_TOOL_CHOICE):
            raise Invalid(f"This model doesn't support the toolConfig.toolChoice.{kind} field. Remove "
                          f"toolConfig.toolChoice.{kind} and try again.")


# ------------------------------------------------------------------------------------------ replies


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    last = messages[-1]["content"]
    results = [block["toolResult"] for block in last if "toolResult" in block]
    tools = ((body.get("toolConfig") or {}).get("tools")) or []
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    prompt = sum(len(_words(message["content"])) for message in messages) + \
        sum(len(block.get("text", "").split()) for block in body.get("system") or [])
    if results:
        text = "Results: " + "; ".join(f"{r['toolUseId']}={orjson.dumps(r['content']).decode()}" for r in results)
    elif tools:
        name = (choice.get("tool") or {}).get("name") or tools[0]["toolSpec"]["name"]
        spec = next(t["toolSpec"] for t in tools if t["toolSpec"]["name"] == name)
        use = {"toolUseId": f"tooluse_{secrets.token_hex(8)}", "name": name,
               "input": _sample(spec["inputSchema"]["json"])}
        return _answer([{"toolUse": use}], "tool_use", prompt, 9)
    else:
        images = sum(1 for block in last if "image" in block)
        text = "You said: " + " ".join(_words(last)) + (f" (+{images} images)" if images else "")
    config = body.get("inferenceConfig") or {}
    words, reason = text.split(), "end_turn"
    for stop in config.get("stopSequences") or []:
        if stop in text:
            text, reason = text[:text.index(stop)].rstrip(), "stop_sequence"
            words = text.split()
    if len(words) > config.get("maxTokens", 1 << 30):
        words, reason = words[:config["maxTokens"]], "max_tokens"
    return _answer([{"text": " ".join(words)}], reason, prompt, len(words))


def _answer(content: list[dict[str, Any]], reason: str, prompt: int, output: int) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": reason,
            "usage": {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output}}


def _words(content: list[dict[str, Any]]) -> list[str]:
    return [word for block in content if "text" in block for word in block["text"].split()]


def _sample(schema: dict[str, Any]) -> dict[str, Any]:
    samples = {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True}
    return {name: samples.get(prop.get("type"), None) for name, prop in (schema.get("properties") or {}).items()}


async def _stream(request: web.Request, state: BedrockState, answer: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(answer["output"]["message"]["content"]):
        if "toolUse" in block:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": index,
                                                 "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            arguments = orjson.dumps(use["input"]).decode()
            half = len(arguments) // 2
            events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
                       for piece in (arguments[:half], arguments[half:])]
        else:
            words = block["text"].split(" ")
            events += [("contentBlockDelta", {"contentBlockIndex": index,
                                              "delta": {"text": word if not i else " " + word}})
                       for i, word in enumerate(words)]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": answer["stopReason"]}))
    events.append(("metadata", {"usage": answer["usage"], "metrics": {"latencyMs": 12}}))
    for n, (kind, payload) in enumerate(events):
        if state.stream_error_after is not None and n == state.stream_error_after:
            await response.write(eventstream.exception("throttlingException", orjson.dumps(
                {"message": "Too many requests, please wait before trying again."})))
            break
        await response.write(eventstream.event(kind, orjson.dumps({**payload, "p": "abcdefgh"[:n % 8]})))
    await response.write_eof()
    return response


# ---------------------------------------------------------------------------------------------- STS


def _sts(request: web.Request, raw: bytes, state: BedrockState) -> web.Response:
    try:
        check_signature(request, raw, state.account, "sts")
    except Refused as refused:
        return _sts_error(refused.status, refused.error_type.removesuffix("Exception"), refused.message)
    if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
        return _sts_error(400, "InvalidAction", "Could not find operation for the request.")
    form = {name: values[0] for name, values in parse_qs(raw.decode(), keep_blank_values=True).items()}
    state.sts_calls.append(form)
    if form.get("Action") != "AssumeRole" or form.get("Version") != "2011-06-15":
        return _sts_error(400, "InvalidAction", f"Could not find operation {form.get('Action')} for version {form.get('Version')}")
    role, session = form.get("RoleArn", ""), form.get("RoleSessionName", "")
    if not re.fullmatch(r"[\w+=,.@-]{2,64}", session):
        return _sts_error(400, "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed "
                          "to satisfy constraint")
    if role not in state.roles or state.roles[role] != form.get("ExternalId"):
        return _sts_error(403, "AccessDenied", f"User: arn:aws:iam::123456789012:user/gateway is not authorized "
                          f"to perform: sts:AssumeRole on resource: {role}")
    key_id, secret, token = f"ASIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30), secrets.token_urlsafe(60)
    state.account.keys[key_id] = KeyPair(secret, token)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.account.now() + state.sts_lifetime))
    xml = (f'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
           f"<AssumedRoleUser><AssumedRoleId>AROA3XFRBF535PLBIFPI4:{escape(session)}</AssumedRoleId>"
           f"<Arn>{escape(role)}/{escape(session)}</Arn></AssumedRoleUser>"
           f"<Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
           f"<SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
           f"</AssumeRoleResult><ResponseMetadata><RequestId>{secrets.token_hex(16)}</RequestId>"
           f"</ResponseMetadata></AssumeRoleResponse>")
    return web.Response(text=xml, content_type="text/xml")


def _sts_error(status: int, code: str, message: str) -> web.Response:
    xml = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
           f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
           f"<RequestId>{secrets.token_hex(16)}</RequestId></ErrorResponse>")
    return web.Response(text=xml, status=status, content_type="text/xml")
