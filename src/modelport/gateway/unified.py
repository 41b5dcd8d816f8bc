"""Unified endpoints (OpenAI format) on top of the same forward/respond steps.

OpenAI-compatible providers (no adapter) get the body as sent, with ``override_params`` merged, at
``base_url + path``; their responses are relayed untouched. Providers with an adapter get a translated
request, and their responses, streams and errors are translated back. Provider errors keep the
provider's status and are never marked as gateway exceptions; the original body goes to the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ..forms import form_fields
from ..log_record import LogRecord
from ..providers.base import MULTIPART_ENDPOINTS, Endpoint, ProviderFailure, ProviderSpec, Reply, StepAnswer, UnsupportedParameter
from ..providers.openai_shapes import USAGE_TAIL_BYTES, usage_in_tail
from ..providers.registry import adapter_for, serves
from ..asgi import Headers, Receive, Send
from ..sse import EventTooLarge
from ..errors import BadRequest, BadUpstreamResponse, Forbidden, GatewayError, UnsupportedEndpoint, quoted
from ..transport.send import STREAM_BROKE, read_at_most
from .forward import Outbound, proxy_headers, upstream_url
from .respond import WHOLE_LIMIT, ClientGone, Relayed, chunks_while_client_stays, relay, response_headers, watch_client
from ..providers.rewrite import BodyTooLarge, decode_content
from .routing import Leaf
from .stored_responses import Turn

_ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", "/chat/completions"): "chat",
    ("POST", "/completions"): "completions",
    ("POST", "/embeddings"): "embeddings",
    ("GET", "/models"): "models",
    ("POST", "/messages"): "messages",
    ("POST", "/responses"): "responses",
    ("POST", "/images/generations"): "images",
    ("POST", "/audio/transcriptions"): "transcriptions",
    ("POST", "/audio/translations"): "translations",
    ("POST", "/audio/speech"): "speech",
    ("POST", "/rerank"): "rerank",
}
# Endpoints that are a provider's own API where its unified API does not serve them: Replicate lists its
# models at GET /models, OpenAI-compatible providers generate images at /images/generations.
_OWN_API_UNLESS_SERVED = frozenset({"models", "images"})
# How much of a multipart upload is searched for its text fields (the model) under an allow-list: clients
# send them before the file (forms.py), so they sit in the first few hundred bytes.
FORM_HEAD_BYTES = 64 * 1024
ABANDON_TIMEOUT = 5.0  # seconds the gateway spends stopping what a call started once its client left


def _needs_body(leaf: Leaf, endpoint: Endpoint) -> bool:
    """Whether the gateway must read the JSON body itself. A request its provider takes as sent (an
    OpenAI-compatible provider's chat, OpenAI's own Responses API) with no override, cache or model
    allow-list gets the bytes as sent; the log writer reads the model from them off the request path
    (parsing a large prompt here costs 5-20 µs). Any request an adapter translates needs it."""
    resolved = leaf.resolved
    return (adapter_for(resolved.spec, endpoint) is not None or bool(leaf.override_params)
            or leaf.cache is not None or resolved.allowed_models is not None)


def unified_endpoint(method: str, path: str) -> Endpoint | None:
    return _ENDPOINTS.get((method, path.rstrip("/") or "/"))


def takes_unified_path(endpoint: Endpoint, spec: ProviderSpec) -> bool:
    """Whether a request to a unified endpoint goes through ``UnifiedCall`` (which refuses the endpoints
    a provider does not serve). The exceptions are ``GET /models`` and ``/images/generations`` where the
    unified API does not serve them: they are the provider's own API (Replicate lists models there),
    proxied, so that its URLs are rewritten and its policy applies."""
    return serves(spec, endpoint) or endpoint not in _OWN_API_UNLESS_SERVED


class UnifiedCall:
    __slots__ = ("endpoint", "outbound", "leaf", "body", "adapter", "stream", "translated", "as_sent", "native_errors",
                 "multi_step", "steps", "turn")

    def __init__(self, endpoint: Endpoint, outbound: Outbound, leaf: Leaf, body: dict[str, Any]) -> None:
        self.endpoint, self.outbound, self.leaf, self.body = endpoint, outbound, leaf, body
        spec = leaf.resolved.spec
        self.adapter = adapter_for(spec, endpoint)
        self.stream = bool(body.get("stream"))
        # Endpoints its adapter names ``sent_as_is`` (Azure's audio) go as sent, to the adapter's URL.
        self.as_sent = self.adapter is not None and endpoint in getattr(self.adapter, "sent_as_is", ())
        # Only endpoints the provider serves go through its adapter; the rest (e.g. a native /models) pass through.
        self.translated = self.adapter is not None and not self.as_sent and serves(spec, endpoint)
        # A provider's own Messages API already answers errors the way Anthropic-native clients expect.
        self.native_errors = endpoint == "messages" and endpoint in spec.unified
        # Several upstream requests per call (providers/base.py MultiStepAdapter), each through ``steps``.
        self.multi_step = self.translated and getattr(self.adapter, "multi_step", False)
        self.steps: Any = None
        # A Responses answer the gateway keeps (stored_responses.py), set by the attempt; None for the rest.
        self.turn: Turn | None = None

    @staticmethod
    def proxy_body(outbound: Outbound, leaf: Leaf) -> Any:
        if outbound.body is None:
            return outbound.body_stream
        if leaf.override_params and outbound.body:
            body = outbound.json.fields()
            if body:
                return orjson.dumps({**body, **leaf.override_params})
        return outbound.body or None  # no body: no "Content-Length: 0" the client never sent on a GET

    @classmethod
    def prepare(cls, endpoint: Endpoint, outbound: Outbound, leaf: Leaf, record: LogRecord) -> "UnifiedCall":
        spec = leaf.resolved.spec
        if spec.proxy_only:
            raise UnsupportedEndpoint(
                f"provider '{spec.id}' has no unified API for /v1{outbound.path}: call its own API through the "
                f"proxy route instead, where /v1/<path> goes to {spec.base_url}/<path>"
            )
        if not serves(spec, endpoint) and endpoint != "models":
            raise UnsupportedEndpoint(f"provider '{spec.id}' does not serve /v1{outbound.path} through the unified API; its own "
                                      f"API is on the proxy route, where /v1/<path> goes to {spec.base_url}/<path>")
        body: dict[str, Any] = {}
        if endpoint in MULTIPART_ENDPOINTS:
            body = _form_body(outbound, leaf)
        elif outbound.method == "POST" and (_needs_body(leaf, endpoint) or outbound.options.cache_ttl is not None):
            try:
                parsed = outbound.json.value()  # shared: the routing may have read it already
            except ValueError as exc:
                raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
            if not isinstance(parsed, dict):
                raise BadRequest("the request body must be a JSON object", code="invalid_json")
            body = {**parsed, **leaf.override_params} if leaf.override_params else parsed
        record.endpoint = endpoint
        record.model = body.get("model") if isinstance(body.get("model"), str) else record.model
        return cls(endpoint, outbound, leaf, body)

    def request(self) -> tuple[str, URL | str, dict[str, str], bytes | None]:
        """The upstream request, without its credential (forward.py ``send_to_provider`` adds it)."""
        outbound, resolved = self.outbound, self.leaf.resolved
        if not self.translated:
            body = outbound.body if not self.leaf.override_params else orjson.dumps(self.body)
            if body is None:  # a large upload streams through (gateway/pipeline.py ``_read``)
                body = outbound.body_stream
            if self.as_sent:
                url: URL | str = self._url_as_sent()
            else:
                url = upstream_url(resolved.target.base_url, outbound.path, outbound.query)
            return outbound.method, url, proxy_headers(outbound.options, resolved.spec, resolved.target), body
        try:
            built = self.adapter.build_request(self.endpoint, self.body, resolved.target, outbound.options.strict_compliance)
        except UnsupportedParameter as exc:
            raise BadRequest(str(exc), code="unsupported_parameter") from None
        except ValueError as exc:
            raise BadRequest(str(exc), code="untranslatable_request") from None
        headers = self.adapter_headers(built.headers)
        return built.method, URL(built.url, encoded=False), headers, built.body

    def _url_as_sent(self) -> URL:
        """The provider's own URL for a body it takes as sent; the model read from the JSON body or, for an
        upload, from the head of the held form (the deployment, where the provider names it by model)."""
        model = self.body.get("model")
        if model is None and self.endpoint in MULTIPART_ENDPOINTS:
            model = _form_model(self.outbound)
        try:
            url = self.adapter.url_as_sent(self.endpoint, self.leaf.resolved.target, model if isinstance(model, str) else None)
        except ValueError as exc:
            raise BadRequest(str(exc), code="untranslatable_request") from None
        return URL(url, encoded=False)

    async def begin(self, steps: Any) -> StepAnswer:
        """A multi-step call's requests up to the answer routing judges (gateway/steps.py gives ``steps``)."""
        self.steps = steps
        try:
            return await self.adapter.begin(self.endpoint, self.body, self.leaf.resolved.target,
                                            self.outbound.options.strict_compliance, steps)
        except UnsupportedParameter as exc:
            raise BadRequest(str(exc), code="unsupported_parameter") from None
        except ValueError as exc:
            raise BadRequest(str(exc), code="untranslatable_request") from None

    def adapter_headers(self, built: dict[str, str]) -> dict[str, str]:
        """An adapter's headers over the provider's defaults, with the caller's forwarded ones (no credential)."""
        spec, options = self.leaf.resolved.spec, self.outbound.options
        headers = dict(spec.headers_for(self.leaf.resolved.target.settings))
        headers.update({k.lower(): v for k, v in built.items()})
        forward = options.forward_headers | self.leaf.forward_headers | {h.encode() for h in spec.caller_headers}
        for name, value in options.upstream_headers:
            if name in forward:
                headers[name.decode("latin-1")] = value.decode("latin-1")
        return headers

    async def respond(self, send: Send, receive: Receive, upstream: aiohttp.ClientResponse, extra: Headers, cap: int) -> Relayed:
        if self.multi_step:
            return await self._finish_steps(send, receive, upstream, extra, cap)  # type: ignore[arg-type]
        if not self.translated:
            streamed = "event-stream" in upstream.headers.get("content-type", "")  # the body may be unread: no self.stream
            relayed = await relay(send, receive, upstream, extra, cap, keep_tail=USAGE_TAIL_BYTES if streamed else 0)
            if relayed.tail:  # a stream longer than the log's capture: its usage is at its end
                relayed.usage = usage_in_tail(relayed.tail)
            return relayed
        if upstream.status >= 300 and self.native_errors:
            return await relay(send, receive, upstream, extra, cap)
        if upstream.status >= 300:
            raw = await _read_to_translate(upstream)
            body = orjson.dumps(self.adapter.error_body(upstream.status, raw))
            return await _send_json(send, upstream, extra, body, raw[:cap])
        if self.stream and _is_stream(upstream.headers.get("content-type", "")):
            return await self._translate_stream(send, receive, upstream, extra, cap)
        raw = await _read_to_translate(upstream)
        try:
            body = self.adapter.parse_response(self.endpoint, upstream.status, raw, self.body)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # a 2xx body not in the provider's format
            raise BadUpstreamResponse(f"the provider answered {upstream.status} with a body not in its API's format "
                                      f"({type(exc).__name__}), which the gateway cannot translate",
                                      code="untranslatable_response") from None
        if self.turn is not None:
            body = await self.turn.kept_body(body)
        return await _send_json(send, upstream, extra, body, body[:cap])

    async def _translate_stream(self, send: Send, receive: Receive, upstream: aiohttp.ClientResponse, extra: Headers,
                                cap: int) -> Relayed:
        translator = self.adapter.stream_translator(self.endpoint, self.body)
        headers = response_headers(upstream, extra, frozenset({b"content-length", b"content-encoding", b"content-type"}))
        headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        result = Relayed(upstream.status, upstream.raw_headers, content_type="text/event-stream")
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        watcher = watch_client(receive)
        try:
            async for chunk in chunks_while_client_stays(upstream, watcher):
                out = translator.feed(chunk)
                if out:
                    if self.turn is not None:
                        result.error = await self.turn.keep_final(translator) or result.error
                    await _send_chunk(send, out, result, cap)
        except ClientGone:  # an endless stream was read on for as long as the provider sent it
            result.disconnected = True
            upstream.close()
            return result
        except STREAM_BROKE as exc:
            result.error = f"upstream stream broke after {result.size} bytes: {type(exc).__name__}"
            upstream.close()
            return result
        except EventTooLarge as exc:  # ended without its last chunk: the client sees a truncated stream
            upstream.close()
            result.error = f"the provider's stream sent {exc}, more than the gateway translates; stopped after {result.size} bytes"
            return result
        finally:
            watcher.cancel()
        out = translator.finish()
        if self.turn is not None:
            result.error = await self.turn.keep_final(translator) or result.error
        await _send_chunk(send, out, result, cap)
        await send({"type": "http.response.body", "body": b""})
        result.usage = translator.usage
        return result


    async def _finish_steps(self, send: Send, receive: Receive, first: StepAnswer, extra: Headers, cap: int) -> Relayed:
        """Answer a multi-step call: its first answer's error translated, or what its further steps make.
        A client that leaves meanwhile stops them, and the adapter abandons what they started."""
        if first.status >= 300:
            body = orjson.dumps(self.adapter.error_body(first.status, first.body))
            return await _send_ready(send, first.status, extra, body, first.body[:cap])
        target = self.leaf.resolved.target
        watcher = watch_client(receive)
        try:
            finishing = asyncio.ensure_future(self.adapter.finish(self.endpoint, first, self.body, target, self.steps))
            if not await _first_of(finishing, watcher):
                return await self._abandoned(first, Relayed(499, []))
            try:
                reply: Reply = finishing.result()
            except ProviderFailure as failure:
                body = orjson.dumps(failure.body)
                relayed = await _send_ready(send, failure.status, extra, body, body[:cap])
                relayed.error = str((failure.body.get("error") or {}).get("message") or "")[:2000] or None
                return relayed
            if reply.stream is None:
                if self.turn is not None and reply.body and reply.status < 300:
                    reply.body = await self.turn.kept_body(reply.body)
                relayed = await _send_ready(send, reply.status, extra, reply.body or b"", (reply.body or b"")[:cap])
                relayed.usage = reply.usage
                return relayed
            return await self._relay_steps(send, first, reply, extra, cap, watcher)
        finally:
            watcher.cancel()

    async def _relay_steps(self, send: Send, first: StepAnswer, reply: Reply, extra: Headers, cap: int,
                           watcher: asyncio.Future[None]) -> Relayed:
        headers = [*extra, (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        result = Relayed(reply.status, headers, content_type="text/event-stream")
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        chunks = reply.stream.__aiter__()  # type: ignore[union-attr]
        try:
            while True:
                produced = asyncio.ensure_future(chunks.__anext__())
                if not await _first_of(produced, watcher):
                    return await self._abandoned(first, result)
                try:
                    chunk = produced.result()
                except StopAsyncIteration:
                    break
                if self.turn is not None:
                    result.error = await self.turn.keep_final(reply.events) or result.error
                await _send_chunk(send, chunk, result, cap)
        except (*STREAM_BROKE, GatewayError, EventTooLarge) as exc:
            # The status line is gone: end without the last chunk, so the client sees a truncated stream.
            result.error = f"the provider's stream broke after {result.size} bytes: {getattr(exc, 'message', None) or type(exc).__name__}"
            return result
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()  # the upstream stream's connection goes now, not when it is collected
        await send({"type": "http.response.body", "body": b""})
        result.usage, result.error = reply.usage, reply.error or result.error
        return result

    async def _abandoned(self, first: StepAnswer, result: Relayed) -> Relayed:
        result.disconnected = True
        self.steps.extend(ABANDON_TIMEOUT)
        try:
            async with asyncio.timeout(ABANDON_TIMEOUT):
                await self.adapter.abandon(first, self.leaf.resolved.target, self.steps)
        except (GatewayError, TimeoutError) as exc:
            result.error = f"the client left, and what the call started could not be stopped: {getattr(exc, 'message', None) or 'timed out'}"
        return result


def _is_stream(content_type: str) -> bool:
    """A streamed answer to translate: SSE, or AWS's binary event stream (Bedrock's ConverseStream)."""
    return "event-stream" in content_type or "vnd.amazon.eventstream" in content_type


def _form_body(outbound: Outbound, leaf: Leaf) -> dict[str, Any]:
    """A multipart upload goes as sent: nothing is merged into it, and its model is read (from the head of
    a held body) only when an allow-list needs it, which refuses an upload whose model it cannot read."""
    if leaf.override_params:
        raise BadRequest(f"override_params cannot be applied to /v1{outbound.path}: its body is a multipart upload, "
                         "which the gateway passes on as sent; set the fields in the request itself",
                         code="unsupported_parameter")
    resolved = leaf.resolved
    if resolved.allowed_models is None:
        return {}
    model = _form_model(outbound)
    if not model:
        raise Forbidden(f"provider @{resolved.target.slug} allows only some models, and this upload does not say which "
                        f"model it runs where the gateway reads it: a 'model' form field within its first "
                        f"{FORM_HEAD_BYTES // 1024} KiB, in a body of at most 4 MiB")
    return {"model": model}


def _form_model(outbound: Outbound) -> str | None:
    """An upload's ``model`` form field, read from the head of the held body (None when not there)."""
    head = outbound.body[:FORM_HEAD_BYTES] if outbound.body is not None else b""
    return form_fields(head, outbound.options.content_type.decode("latin-1"), until_file=True).get("model")


async def _first_of(work: asyncio.Future[Any], watcher: asyncio.Future[None]) -> bool:
    """Wait for ``work`` or the client's disconnect; False (``work`` cancelled) when the client left first."""
    done, _ = await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        return True
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)  # let it unwind (close its upstream response)
    return False


async def _send_ready(send: Send, status: int, extra: Headers, body: bytes, captured: bytes) -> Relayed:
    """A JSON answer the gateway built (no upstream response to copy headers from)."""
    headers = [*extra, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    result = Relayed(status, headers, size=len(body), content_type="application/json")
    result.captured += captured
    return result


async def _read_to_translate(upstream: aiohttp.ClientResponse) -> bytes:
    """The whole body, opened if compressed, which translation needs; past WHOLE_LIMIT (read or opened)
    a 502, as no client could read the provider's own format in its place. A gzip body was once parsed
    as it came, and its bytes failed as a 500."""
    raw = await read_at_most(upstream, WHOLE_LIMIT)
    too_large = BadUpstreamResponse(f"the provider's response is larger than the {WHOLE_LIMIT:,} bytes the gateway "
                                    "translates", code="upstream_response_too_large")
    if len(raw) > WHOLE_LIMIT:
        upstream.close()
        raise too_large
    encoding = upstream.headers.get("content-encoding", "").lower()
    try:
        opened = decode_content(raw, encoding, WHOLE_LIMIT)
    except BodyTooLarge:
        raise too_large from None
    if opened is None:
        raise BadUpstreamResponse(f"the provider's response is encoded as {quoted(encoding)}, which the gateway "
                                  "cannot open to translate", code="upstream_invalid_response")
    return opened


async def _send_chunk(send: Send, data: bytes, result: Relayed, cap: int) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})
    result.size += len(data)
    if len(result.captured) < cap:
        result.captured += data[: cap - len(result.captured)]


async def _send_json(send: Send, upstream: aiohttp.ClientResponse, extra: Headers, body: bytes, captured: bytes) -> Relayed:
    headers = response_headers(upstream, extra, frozenset({b"content-length", b"content-encoding", b"content-type"}))
    headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    result = Relayed(upstream.status, upstream.raw_headers, size=len(body), content_type="application/json")
    result.captured += captured
    return result
