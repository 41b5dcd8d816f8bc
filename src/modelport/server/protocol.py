"""The HTTP/1.1 connection: uvicorn's httptools protocol, with the request head bounded as it arrives
and clients that stop half-way timed out.

httptools holds a header whole before it reports it, and uvicorn keeps every header, so a 50 MB
header or 20,000 headers were held, passed to the app and stored in the logs. Here the request
line and headers together are held to ``max_header_bytes`` and to ``max_headers`` headers, before
anything authenticates the request:

- a head still arriving past the limit is answered 431 at once and the connection closed (the
  server log says so: there is no request yet to record);
- a complete head over a limit reaches the app without its headers and with the refusal in
  ``scope["extensions"][REFUSED]``, so the app answers 431 and records it like any other request.

Half-sent requests once held their connections forever (20 of 20 still open after 88 s). A client
has ``header_timeout`` seconds from its first byte (or from connecting) to finish a head, else 408
and the connection closes; one that stays silent for ``body_timeout`` seconds in the middle of a
body is disconnected, which the app records as 499. (Between requests, uvicorn's keep-alive timeout
applies.) One watchdog timer per connection checks both, in ticks, rather than a timer or a clock
read per request: what a request adds is a few attribute writes, and nothing per header.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..errors import GatewayError, HeadersTooLarge, RequestTimeout
from ..settings import Settings

log = logging.getLogger("modelport")

REFUSED = "modelport.refused"
# What the wire adds to each header beyond its name and value (": " and CRLF), and to the request line.
_HEADER_FRAMING = 4
_REQUEST_LINE_FRAMING = 64
# After refusing a head that is still arriving, read and drop what the client still sends for a while
# before closing: closing a socket with unread input resets the connection, and the client may then
# lose the 431 before reading it (a lingering close, as nginx does).
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024


def bounded_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, bound to these limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {
        "max_header_bytes": settings.max_header_bytes, "max_headers": settings.max_headers,
        "header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout})


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: int  # set by bounded_protocol
    max_headers: int
    header_timeout: float
    body_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests too: what arrives next is a head
        self._head_received = 0  # bytes fed in earlier chunks while the head was arriving, framing included
        self._feeding = 0  # the size of the chunk being fed
        self._received = 0  # bytes received on the connection: the watchdog sees progress by it
        self._discard: int | None = None  # bytes still to drop once refused mid-head
        # What the watchdog waits for: a head ("head", or "began" once a byte of it came), a body, or
        # nothing (between requests); ``_serial`` counts requests, so a tick tells a new one apart.
        self._awaiting = "head"
        self._serial = 0
        self._watchdog: Any = None
        self._seen: tuple[str, int, int] = ("", -1, -1)  # (awaiting, serial, received) at the last tick
        self._waited = 0.0  # seconds the same head has been awaited, or the same body silent

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._seen = (self._awaiting, self._serial, self._received)  # the first tick counts
        interval = min(self.header_timeout, self.body_timeout) / 2
        self._watchdog = self.loop.call_later(interval, self._watch, interval)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        super().connection_lost(exc)

    def _watch(self, interval: float) -> None:
        if self.transport.is_closing():
            return
        awaiting, serial, received = self._awaiting, self._serial, self._received
        seen_awaiting, seen_serial, seen_received = self._seen
        same_head = awaiting in ("head", "began") and seen_awaiting in ("head", "began") and serial == seen_serial
        silent_body = awaiting == "body" and seen_awaiting == "body" and serial == seen_serial and received == seen_received
        if self.flow.read_paused:
            silent_body = False  # the gateway is not reading: the client is not the one waiting
        self._waited = self._waited + interval if same_head or silent_body else 0.0
        self._seen = (awaiting, serial, received)
        if same_head and self._waited >= self.header_timeout:
            self._time_out_head()
            return
        if silent_body and self._waited >= self.body_timeout:
            peer = "%s:%d" % self.client if self.client else "a client"
            log.warning("closed the connection of %s: it sent no part of the request body for %g s "
                        "(MODELPORT_BODY_TIMEOUT)", peer, self.body_timeout)
            self.transport.close()  # the app's receive() then reports a disconnect: recorded as 499
            return
        self._watchdog = self.loop.call_later(interval, self._watch, interval)

    def _time_out_head(self) -> None:
        if self._awaiting == "head":
            self.transport.close()  # connected and sent nothing: nothing to answer
            return
        self._refuse_now(RequestTimeout(
            f"the request line and headers did not arrive within {self.header_timeout:g} s (MODELPORT_HEADER_TIMEOUT)",
            headers={"connection": "close"}))

    def data_received(self, data: bytes) -> None:
        if self._discard is not None:
            self._discard -= len(data)
            if self._discard < 0:
                self.transport.close()
            return
        self._received += len(data)
        in_head = self._in_head
        self._feeding = len(data)
        super().data_received(data)
        if not (in_head and self._in_head) or self.transport.is_closing():
            return  # the head ended in this chunk: on_headers_complete has measured it
        self._head_received += len(data)
        framing = _REQUEST_LINE_FRAMING + _HEADER_FRAMING * self.max_headers
        if self._head_received > self.max_header_bytes + framing:
            self._refuse_now(self._too_large(f"more than {self.max_header_bytes:,} bytes"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_received = True, 0
        self._awaiting, self._serial = "began", self._serial + 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._awaiting = "body"  # until on_message_complete, which follows at once when there is none
        refusal = self._refusal()
        if refusal is not None:
            self.headers.clear()  # neither the app nor the log store holds what was refused
            self.scope.setdefault("extensions", {})[REFUSED] = refusal  # type: ignore[typeddict-item]
        super().on_headers_complete()

    def _refusal(self) -> HeadersTooLarge | None:
        if len(self.headers) > self.max_headers:
            return self._too_large(f"more than {self.max_headers} headers")
        if self._head_received + self._feeding <= self.max_header_bytes:
            return None  # all the bytes fed since the head began fit: no need to measure it (most requests)
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        return self._too_large(f"{size:,} bytes") if size > self.max_header_bytes else None

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._awaiting = "idle"

    def _too_large(self, what: str) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"the request line and headers are {what}; the gateway accepts at most {self.max_header_bytes:,} bytes "
            f"in at most {self.max_headers} headers (MODELPORT_MAX_HEADER_BYTES, MODELPORT_MAX_HEADERS)",
            headers={"connection": "close"})

    def _refuse_now(self, error: GatewayError) -> None:
        peer = "%s:%d" % self.client if self.client else "a client"
        log.warning("refused a request from %s: %s", peer, error.message)
        self._discard = LINGER_BYTES
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a request still being answered: that answer goes first, alone (a
            # response must not be written over or before it); the connection then closes.
            self.cycle.keep_alive = False
            return
        body = error.body()
        head = (STATUS_LINE[error.status] + b"content-type: application/json\r\nx-portkey-gateway-exception: true\r\n"
                b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
        self.transport.write(head + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
