"""A caller's webhook endpoint: records every POST it gets and answers what the test scripts.

    receiver = WebhookReceiver().start()
    receiver.answer_next(503, times=2)      # then 200 again
    receiver.wait_for(lambda got: len(got) >= 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class WebhookReceiver(FakeServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        super().__init__(app)
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answered in order, then 200

    def answer_next(self, status: int, times: int = 1) -> None:
        self.statuses.extend([status] * times)

    def hook(self, name: str = "hook") -> str:
        return f"{self.url}/{name}"

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not done(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(f"webhooks received: {[(r.path, r.body[:200]) for r in self.received]}")
            time.sleep(0.02)
        return self.received
