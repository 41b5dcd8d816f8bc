"""Drive a provider adapter against its fake upstream over a real socket: build → send → translate."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson

from modelport.providers.base import Adapter, AuthScheme, Target, UpstreamRequest
from modelport.sse import SSEParser


class AdapterDriver:
    """``piece``: stream bytes are fed to the translator in reads of this size, so events straddle reads."""

    def __init__(self, adapter: Adapter, auth: AuthScheme, piece: int) -> None:
        self.adapter, self.auth, self.piece = adapter, auth, piece

    async def send(self, request: UpstreamRequest, key: str | None) -> tuple[int, bytes]:
        headers = {**request.headers, **self.auth.headers_for(key)}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, request.url, headers=headers, data=request.body) as response:
                return response.status, await response.read()

    async def call(self, endpoint: str, body: dict[str, Any], target: Target, strict: bool = False) -> tuple[int, dict[str, Any]]:
        status, raw = await self.send(self.adapter.build_request(endpoint, body, target, strict), target.api_key)
        if status >= 300:
            return status, self.adapter.error_body(status, raw)
        return status, orjson.loads(self.adapter.parse_response(endpoint, status, raw, body))

    async def stream(self, body: dict[str, Any], target: Target) -> tuple[list[Any], Any]:
        """OpenAI chunks (and the final ``[DONE]``) as the translator emits them, and its usage."""
        request = self.adapter.build_request("chat", {**body, "stream": True}, target, False)
        translator = self.adapter.stream_translator("chat", body)
        out = b""
        headers = {**request.headers, **self.auth.headers_for(target.api_key)}
        async with aiohttp.ClientSession() as session:
            async with session.post(request.url, headers=headers, data=request.body) as response:
                assert response.status == 200
                async for piece in response.content.iter_chunked(self.piece):
                    out += translator.feed(piece)
        out += translator.finish()
        events = SSEParser().feed(out)
        return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events], translator.usage
