"""Step 6, respond: relay an upstream response to the client (status, headers, body) as it arrives.

Small bodies with a known length are read and sent in one piece (fewest event-loop round trips);
everything else — SSE above all — is relayed chunk by chunk as it arrives, with no added delay. While a
body streams, a watcher notices a client that goes away and cancels the upstream read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp

from ..log_record import LogRecord
from ..asgi import Headers, Receive, Send
from ..errors import BadUpstreamResponse
from ..transport.send import STREAM_BROKE, read_at_most, read_whole
from ..providers.rewrite import BodyTooLarge, UrlRewrite, decode_content

ONE_PIECE_LIMIT = 1024 * 1024
# The largest body read whole to be rewritten or screened, compressed or opened (and to be translated):
# past it, a body to rewrite is relayed as it is, one to screen or translate is a 502. Reading whole
# bodies with no length cost the worker 343 MB for 200 MiB of chunked JSON.
WHOLE_LIMIT = 32 * ONE_PIECE_LIMIT
# A provider policy's look at a response before it is relayed: (status, decoded body) → body to send.
Screen = Callable[[int, bytes], Awaitable[bytes]]
# Hop-by-hop headers, and ``date``: the gateway's HTTP server dates every response it sends, and a
# second Date from the provider would make two (RFC 9110 §6.6.1 allows one).
_DROP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"proxy-authenticate", b"trailer", b"upgrade", b"te",
                   b"date"})


@dataclass(slots=True)
class Relayed:
    """What the client got, for the log record."""

    status: int
    headers: Any  # the upstream's raw header pairs, decoded later by the log writer
    size: int = 0
    captured: bytearray = field(default_factory=bytearray)
    disconnected: bool = False
    content_type: str = ""
    error: str | None = None
    usage: dict | None = None  # set where the gateway read a stream's usage (translating it, or from its tail)
    tail: bytes = b""  # a stream's last bytes, when asked for (``keep_tail``) and it outgrew ``captured``

    def fill(self, record: LogRecord, log_headers: bool) -> None:
        """The record's outcome from what the client got (``LogRecord.answered``; 499 if it left first)."""
        record.answered(499 if self.disconnected else self.status, self.size, self.content_type, bytes(self.captured),
                        headers=self.headers if log_headers else None, error=self.error, usage=self.usage)


@dataclass(slots=True)
class Rewriting:
    rule: UrlRewrite
    upstream_base: str
    gateway_base: str
    sign_stream: Callable[[str, str | None], str]


def response_headers(upstream: aiohttp.ClientResponse, extra: Headers, drop: frozenset[bytes] = frozenset()) -> Headers:
    """The upstream's headers less hop-by-hop ones and ``drop`` (lower-case bytes), plus ``extra``."""
    drop = _DROP | drop if drop else _DROP
    headers: Headers = [(name, value) for name, value in upstream.raw_headers if name.lower() not in drop]
    headers.extend(extra)
    return headers


async def relay(
    send: Send,
    receive: Receive,
    upstream: aiohttp.ClientResponse,
    extra_headers: Headers,
    capture_limit: int,
    rewriting: Rewriting | None = None,
    screen: Screen | None = None,
    keep_tail: int = 0,
) -> Relayed:
    """``screen``, when given, sees every body before it is sent (so it is read whole, JSON or not), and
    a body it cannot see is withheld (502) rather than relayed unscreened. ``keep_tail``: keep about that
    many of a streamed body's last bytes in ``tail`` once it outgrows the capture (where usage is)."""
    content_type = upstream.headers.get("content-type", "")
    result = Relayed(upstream.status, upstream.raw_headers, content_type=content_type)
    length = upstream.content_length
    drop: frozenset[bytes] = frozenset()
    if rewriting is not None and "location" in upstream.headers:
        location = rewriting.rule.location(upstream.headers["location"], rewriting.upstream_base, rewriting.gateway_base)
        extra_headers.append((b"location", _header_value(upstream, "location", location)))
        drop = frozenset({b"location"})
    fits = length is None or length <= WHOLE_LIMIT
    if screen is not None and not fits:
        upstream.close()
        raise BadUpstreamResponse(f"the provider's response ({length} bytes) is over the {WHOLE_LIMIT} bytes the "
                                  "gateway reads whole, and this request's provider policy must read it before it is relayed")
    if screen is not None or (rewriting is not None and "json" in content_type and fits):
        raw = await read_whole(upstream) if length is not None else await read_at_most(upstream, WHOLE_LIMIT)
        encoding = upstream.headers.get("content-encoding", "").lower()
        if len(raw) > WHOLE_LIMIT:  # no length, and more than the gateway holds
            if screen is not None:
                upstream.close()
                raise BadUpstreamResponse(f"the provider's response is over the {WHOLE_LIMIT} bytes the gateway reads "
                                          "whole, and this request's provider policy must read it before it is relayed")
            result.error = f"relayed without rewriting its URLs: the body is larger than {WHOLE_LIMIT:,} bytes"
            headers = response_headers(upstream, extra_headers, drop)
            return await _stream(send, receive, upstream, headers, result, capture_limit, prefix=raw)
        try:
            decoded = decode_content(raw, encoding, WHOLE_LIMIT)
        except BodyTooLarge:
            if screen is not None:
                raise BadUpstreamResponse(f"the provider's response opens to more than the {WHOLE_LIMIT} bytes the gateway "
                                          "reads whole, and this request's provider policy must read it before it is relayed") from None
            decoded = None
            result.error = f"relayed without rewriting its URLs: the body opens to more than {WHOLE_LIMIT:,} bytes"
        if decoded is None and screen is not None:
            raise BadUpstreamResponse(f"the provider's response is encoded as '{encoding}', which the gateway cannot read, "
                                      "and this request's provider policy must read it before it is relayed")
        if decoded is None:  # an encoding we cannot open, or too much: relay it untouched
            return await _send_whole(send, upstream, extra_headers, raw, result, capture_limit, drop=drop)
        if screen is not None:
            decoded = await screen(upstream.status, decoded)
        body = decoded
        if rewriting is not None and "json" in content_type:
            body = rewriting.rule.body(decoded, rewriting.upstream_base, rewriting.gateway_base, rewriting.sign_stream)
        return await _send_whole(send, upstream, extra_headers, body, result, capture_limit, drop=drop | {b"content-encoding"})
    if length is not None and length <= ONE_PIECE_LIMIT:
        body = await read_whole(upstream)
        return await _send_whole(send, upstream, extra_headers, body, result, capture_limit, drop=drop)
    return await _stream(send, receive, upstream, response_headers(upstream, extra_headers, drop), result, capture_limit,
                         keep_tail=keep_tail)


def _header_value(upstream: aiohttp.ClientResponse, name: str, value: str) -> bytes:
    """A rewritten header as bytes; a value that is not Latin-1 (HTTP's header charset, and a URL is
    ASCII) is the upstream's fault, and a 502 says so instead of a crash."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        upstream.close()
        raise BadUpstreamResponse(f"the upstream sent a {name} header that is not a valid URL (characters outside "
                                  "Latin-1); the gateway cannot rewrite it", code="upstream_invalid_response") from None


async def _send_whole(
    send: Send,
    upstream: aiohttp.ClientResponse,
    extra: Headers,
    body: bytes,
    result: Relayed,
    capture_limit: int,
    drop: frozenset[bytes] = frozenset(),
) -> Relayed:
    headers = response_headers(upstream, extra, drop | {b"content-length"})
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    result.size = len(body)
    result.captured += body[:capture_limit]
    return result


async def _stream(
    send: Send, receive: Receive, upstream: aiohttp.ClientResponse, headers: Headers, result: Relayed, capture_limit: int,
    prefix: bytes = b"", keep_tail: int = 0,
) -> Relayed:
    """Relay the body chunk by chunk, after ``prefix`` (what was already read of it)."""
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    watcher = watch_client(receive)
    tail = bytearray()
    try:
        chunks = chunks_while_client_stays(upstream, watcher)
        async for chunk in _prefixed(prefix, chunks) if prefix else chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            result.size += len(chunk)
            if len(result.captured) + len(chunk) <= capture_limit:
                result.captured += chunk
                continue
            result.captured += chunk[: max(capture_limit - len(result.captured), 0)]
            if keep_tail:  # whole chunks, so the tail joins the capture with no gap
                tail += chunk
                if len(tail) > 2 * keep_tail:  # trimmed now and then, not per chunk
                    del tail[:-keep_tail]
        await send({"type": "http.response.body", "body": b""})
        result.tail = bytes(tail[-keep_tail:]) if tail else b""
    except ClientGone:
        result.disconnected = True
        upstream.close()  # drops the upstream connection: the provider sees the cancel
    except STREAM_BROKE as exc:
        # The upstream broke mid-body. The status line is gone already, so the honest signal is to end
        # the client's connection without the final chunk: the client sees a truncated response.
        result.error = f"upstream stream broke after {result.size} bytes: {type(exc).__name__}"
        upstream.close()
    finally:
        watcher.cancel()
    return result


class ClientGone(Exception):
    """The client went away while the body was relayed (``chunks_while_client_stays``)."""


async def _prefixed(prefix: bytes, chunks: Any) -> Any:
    yield prefix
    async for chunk in chunks:
        yield chunk


def watch_client(receive: Receive) -> asyncio.Future[None]:
    """A task done once the client disconnects; cancel it when the response ends. Needed because the
    server's ``send`` to a client gone returns as if sent, so without it an endless upstream body is
    read for as long as the upstream sends it."""
    return asyncio.ensure_future(_wait_for_disconnect(receive))


async def chunks_while_client_stays(upstream: aiohttp.ClientResponse, watcher: asyncio.Future[None]):
    """The upstream's body as it arrives; ``ClientGone`` once ``watcher`` (``watch_client``) is done."""
    content = upstream.content
    while True:
        read = asyncio.ensure_future(content.readany())
        done, _ = await asyncio.wait((read, watcher), return_when=asyncio.FIRST_COMPLETED)
        if watcher in done:
            read.cancel()
            raise ClientGone()
        chunk = read.result()
        if not chunk:
            return
        yield chunk


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
