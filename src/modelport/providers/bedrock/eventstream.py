"""AWS event-stream framing (``application/vnd.amazon.eventstream``), as ConverseStream answers.

One message::

    total length (u32) | headers length (u32) | prelude CRC32 (u32, of the 8 bytes before it)
    headers: name length (u8), name, value type (u8), value      (type 7, a string: u16 length, bytes)
    payload
    message CRC32 (u32, of every byte before it)

All integers big-endian; the CRC is CRC-32 (zlib's). Format: AWS SDK "event stream encoding"
(smithy-lang, aws-c-event-stream). ``Decoder`` takes the bytes as they arrive, split anywhere.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

PRELUDE = 12  # two lengths and the prelude CRC
_CRC = 4
# Bedrock's events are small (a text delta, a usage block); a bound keeps a broken length from
# making the decoder buffer without end. The SDKs' limit is 16 MiB.
MAX_MESSAGE = 16 * 1024 * 1024
_STRING, _BYTES = 7, 6
# value type -> fixed size of its value (the rest: a u16 length first)
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class FramingError(ValueError):
    """Bytes that are not an event stream: a bad CRC, a length out of bounds, a header cut short."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, Any]
    payload: bytes

    @property
    def event_type(self) -> str | None:
        """``:event-type`` of an event, ``:exception-type`` of an exception, ``:error-code`` of an error."""
        for name in (":event-type", ":exception-type", ":error-code"):
            if name in self.headers:
                return self.headers[name]
        return None

    @property
    def message_type(self) -> str:
        return self.headers.get(":message-type", "event")


class Decoder:
    """Messages out of bytes fed in any split; a message is yielded only once whole and CRC-checked."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._max = max_message

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        messages = []
        while len(self._buffer) >= PRELUDE:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise FramingError("event stream prelude CRC mismatch")
            if not PRELUDE + headers_length + _CRC <= total <= self._max:
                raise FramingError(f"event stream message length {total} out of bounds")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            if zlib.crc32(frame[:-_CRC]) != struct.unpack_from(">I", frame, total - _CRC)[0]:
                raise FramingError("event stream message CRC mismatch")
            headers = _read_headers(frame[PRELUDE:PRELUDE + headers_length])
            messages.append(Message(headers, frame[PRELUDE + headers_length:-_CRC]))
        return messages

    @property
    def pending(self) -> int:
        """Bytes of a message not yet whole (a stream that ends with some was cut short)."""
        return len(self._buffer)


def _read_headers(raw: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    at = 0
    try:
        while at < len(raw):
            size = raw[at]
            name = raw[at + 1:at + 1 + size].decode()
            at += 1 + size
            kind = raw[at]
            at += 1
            if kind in _FIXED:
                width = _FIXED[kind]
                value: Any = {0: True, 1: False}.get(kind, raw[at:at + width])
                if kind in (2, 3, 4, 5, 8):
                    value = int.from_bytes(raw[at:at + width], "big", signed=True)
            elif kind in (_BYTES, _STRING):
                width = struct.unpack_from(">H", raw, at)[0]
                at += 2
                value = raw[at:at + width]
                if kind == _STRING:
                    value = value.decode()
            else:
                raise FramingError(f"unknown event stream header type {kind}")
            if at + width > len(raw):
                raise FramingError("event stream header cut short")
            at += width
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise FramingError(f"malformed event stream headers: {error}") from None
    return headers


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (all that Bedrock's events carry)."""
    raw = b"".join(_string_header(name, value) for name, value in headers.items())
    total = PRELUDE + len(raw) + len(payload) + _CRC
    prelude = struct.pack(">II", total, len(raw))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _string_header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return bytes((len(name_bytes),)) + name_bytes + bytes((_STRING,)) + struct.pack(">H", len(value_bytes)) + value_bytes


def event(event_type: str, payload: bytes) -> bytes:
    """An event as Bedrock frames it."""
    return encode({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An exception in the stream (a throttle or a validation error after the 200)."""
    return encode({":exception-type": exception_type, ":content-type": "application/json",
                   ":message-type": "exception"}, payload)
