"""The few ASGI primitives the gateway needs: read a body, stream a body, send a response."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import orjson

from .errors import GatewayError, PayloadTooLarge
from .ids import new_time_ordered_id

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


class ClientDisconnected(Exception):
    """The client went away before the request body was complete."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes. The usual one-message body is read
    without going through ``stream_body``: an async generator per request measured ~4 µs."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()
    first = message.get("body", b"")
    if not message.get("more_body", False):
        if len(first) > limit:
            raise PayloadTooLarge(f"request body exceeds the gateway limit of {limit} bytes (MODELPORT_MAX_BODY_BYTES)")
        return first
    chunks = [first]
    async for chunk in stream_body(receive, limit - len(first)):
        chunks.append(chunk)
    return b"".join(chunks)


async def stream_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives (never held whole in memory), refusing more than ``limit``."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the gateway limit of {limit} bytes (MODELPORT_MAX_BODY_BYTES)")
            yield chunk
        if not message.get("more_body", False):
            return


async def send_response(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, extra: Headers | None = None) -> None:
    headers: Headers = [(b"content-type", JSON)]
    if extra:
        headers.extend(extra)
    await send_response(send, status, headers, orjson.dumps(payload))


def error_headers(error: GatewayError, trace_id: str) -> Headers:
    """An error's headers. Every error carries a trace id: the request's, else the one the error was
    given while the headers were parsed, else a new one (a caller quoting it can be told it is unknown)."""
    trace_id = trace_id or error.trace_id or new_time_ordered_id()
    headers: Headers = [
        (b"content-type", JSON),
        (b"x-portkey-gateway-exception", b"true"),
        (b"x-portkey-trace-id", trace_id.encode("latin-1")),
    ]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())
    return headers


async def send_error(send: Send, error: GatewayError, trace_id: str) -> None:
    await send_response(send, error.status, error_headers(error, trace_id), error.body())
