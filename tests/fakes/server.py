"""Run a fake upstream as a real HTTP server on a loopback port.

Each fake is an ``aiohttp.web.Application``. ``FakeServer`` serves it from a background thread with
its own event loop, so tests (sync or async) talk to it over a real socket exactly as the gateway
would talk to the real provider.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class FakeServer:
    """Serve ``app`` on 127.0.0.1 at a free port until ``stop()``; usable as a context manager."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-upstream")
        self.port = 0

    @property
    def url(self) -> str:
        """Origin of the server, e.g. ``http://127.0.0.1:43121`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, coro: Any, timeout: float = 10) -> Any:
        """Run a coroutine on the server's loop (to inspect or script the fake's state)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
