"""Event streams: every Server-Sent Event, named or not, and OpenAI/Anthropic chunk streams on top.

Portkey's SDK yields only unnamed events and drops the rest (research/portkey.md §5.2), which
loses all of Replicate's stream: it sends ``event: output`` / ``event: done`` / ``event: error``
(research/replicate.md). Here ``Stream`` yields each event as it was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from modelport import sse

from ._errors import APIStreamError, connection_error, error_message
from ._headers import HEADER_PREFIX
from ._response import APIObject, portkey_headers


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def _events(parsed: list[sse.ServerSentEvent]) -> list[ServerSentEvent]:
    return [ServerSentEvent(e.event, e.data, e.id, e.retry) for e in parsed]


class _StreamBase:
    def __init__(self, http_response: httpx.Response) -> None:
        self.http_response = http_response

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def trace_id(self) -> str | None:
        return self.headers.get(HEADER_PREFIX + "trace-id") or None

    def portkey_headers(self) -> dict[str, str]:
        return portkey_headers(self.headers)


class Stream(_StreamBase):
    """Iterate to get each ``ServerSentEvent``; the connection closes at the end or on ``close()``."""

    def __iter__(self) -> Iterator[ServerSentEvent]:
        parser = sse.SSEParser()
        try:
            for chunk in self.http_response.iter_bytes():
                yield from _events(parser.feed(chunk))
            yield from _events(parser.finish())
        except httpx.TransportError as error:
            raise connection_error(error, self.http_response.request) from error
        finally:
            self.http_response.close()

    def close(self) -> None:
        self.http_response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """``async for`` each ``ServerSentEvent``; closes at the end or on ``await close()``."""

    async def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        parser = sse.SSEParser()
        try:
            async for chunk in self.http_response.aiter_bytes():
                for event in _events(parser.feed(chunk)):
                    yield event
            for event in _events(parser.finish()):
                yield event
        except httpx.TransportError as error:
            raise connection_error(error, self.http_response.request) from error
        finally:
            await self.http_response.aclose()

    async def close(self) -> None:
        await self.http_response.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


END_OF_STREAM = "[DONE]"  # OpenAI's last event; anything after it is not part of the answer


def chunk_of(event: ServerSentEvent) -> APIObject | None:
    """An OpenAI or Anthropic stream event as an object; ``None`` for ones that carry nothing.

    Both report a failure mid-stream, after the 200 status was sent, as a JSON body with an
    ``error`` member (Anthropic also names the event ``error``).
    """
    if not event.data:
        return None
    try:
        body = event.json()
    except ValueError:
        body = event.data
    if event.event == "error" or (isinstance(body, dict) and body.get("error")):
        raise APIStreamError(error_message(body), body=body)
    return APIObject(body) if isinstance(body, dict) else None


class ChunkStream:
    """The chunks of ``chat.completions.create(stream=True)`` and friends, as ``APIObject``s."""

    def __init__(self, events: Stream) -> None:
        self.events = events

    def __iter__(self) -> Iterator[APIObject]:
        for event in self.events:
            if event.data == END_OF_STREAM:
                self.close()
                return
            chunk = chunk_of(event)
            if chunk is not None:
                yield chunk

    def close(self) -> None:
        self.events.close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChunkStream:
    def __init__(self, events: AsyncStream) -> None:
        self.events = events

    async def __aiter__(self) -> AsyncIterator[APIObject]:
        async for event in self.events:
            if event.data == END_OF_STREAM:
                await self.close()
                return
            chunk = chunk_of(event)
            if chunk is not None:
                yield chunk

    async def close(self) -> None:
        await self.events.close()

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
