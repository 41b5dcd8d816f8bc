"""Incremental Server-Sent Events parsing and encoding (WHATWG "event stream" format).

Used wherever the gateway must look inside a stream: translating provider streams, assembling a
streamed body for the log, reading usage from the last chunk. Bytes may arrive split anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

# The most of one event (its data, or a line still without its end) the gateway holds of an upstream's
# stream: one that never ended a line grew the buffer without bound, and rescanned it on every chunk.
MAX_EVENT_BYTES = 8 * 1024 * 1024


class EventTooLarge(ValueError):
    """An event, or a line of one, passed MAX_EVENT_BYTES."""


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed raw bytes; get complete events back. Comments (``: hi``) are skipped. With ``max_bytes``
    (the gateway reading an upstream), raises ``EventTooLarge`` once an event passes it."""

    __slots__ = ("_buffer", "_scanned", "_held", "_max", "_event", "_data", "_id", "_retry")

    def __init__(self, max_bytes: int | None = None) -> None:
        self._buffer = b""
        self._scanned = 0  # bytes of the buffer known to hold no line end
        self._held = 0  # bytes of data lines of the event being read
        self._max = max_bytes if max_bytes is not None else float("inf")
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._held = 0
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            cut = _next_line_end(self._buffer, self._scanned)
            if cut is None:
                self._scanned = max(0, len(self._buffer) - 1)  # a CR at the end may start a CRLF
                if len(self._buffer) + self._held > self._max:
                    raise EventTooLarge(f"an event of more than {self._max:,} bytes")
                return events
            end, width = cut
            line = self._buffer[:end].decode("utf-8", "replace")
            self._buffer = self._buffer[end + width :]
            self._scanned = 0
            event = self._take_line(line)
            if event is not None:
                events.append(event)

    def finish(self) -> list[ServerSentEvent]:
        """Flush an event the stream ended without a blank line after."""
        events = self.feed(b"\n\n") if self._buffer or self._data or self._event else []
        return events

    def _take_line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data and not self._event:
                self._reset()
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._held += len(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def _next_line_end(buffer: bytes, start: int = 0) -> tuple[int, int] | None:
    """Position and width of the first line terminator (CRLF, LF or CR) at or after ``start``, if
    complete."""
    lf = buffer.find(b"\n", start)
    cr = buffer.find(b"\r", start)
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, 1)
    if cr == len(buffer) - 1:
        return None  # a CR at the end may be the first half of CRLF
    return (cr, 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, 1)


def encode_event(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event as bytes; multi-line data becomes several ``data:`` lines."""
    lines = []
    if event:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {part}" for part in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()
