"""The link to Redis that a process's shared counters and response cache go through (``redis_url``).

One ``RedisLink`` per process: a synchronous client (the log service's settlements, control-plane
usage reads) and an asyncio client (the request path), both with a short timeout (``redis_timeout``,
250 ms by default) and no retry but one on a lost connection, so a Redis that is down or stalled costs
a request at most that timeout, never the event loop. A refused or lost connection marks Redis down at
once; timeouts do after ``TIMEOUTS_TO_DOWN`` in a row (one slow answer on a busy host is not an
outage). While down, every call fails at once without a round trip for ``BACKOFF_SECONDS`` (a stalled
Redis would otherwise hold every request for the whole timeout), then the next call tries again;
``/health`` reads that state, refreshed by at most one ping a second.

Every key is ``redis_key_prefix`` + a name, so gateways (or test runs) can share one Redis apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

from .counters import CountersUnavailable
from .resp import BlockingConnection, BlockingScript, PinnedConnection, ReplyError, Script

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("modelport.redis")

BACKOFF_SECONDS = 1.0
TIMEOUTS_TO_DOWN = 3
PROBE_SECONDS = 1.0

T = TypeVar("T")


class RedisUnavailable(CountersUnavailable):
    """Redis did not answer (refused, timed out, lost): what needed it goes without or fails closed."""


class RedisLink:
    def __init__(self, url: str, prefix: str, timeout: float = 0.25) -> None:
        import redis
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.where = _where(url)
        self.prefix = prefix.encode()
        # One immediate retry on a lost connection only: after Redis restarts, each pooled connection fails
        # once when next used. A timeout is not retried (it would double the wait).
        lost = (redis.ConnectionError,)
        self.timeout = timeout
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        self.sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=lost), **options)
        self.aio = redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 1, supported_errors=lost), **options)
        # The request path's scripts: pipelined on one pinned connection (store/resp.py), redis-py for TLS.
        self.pinned = PinnedConnection.for_url(url, timeout)
        self.blocking = BlockingConnection.for_url(url, timeout)  # the log service's settlements, likewise
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError, ReplyError)
        self._down_since: float | None = None
        self._cause = ""
        self._retry_at = 0.0
        self._timeouts = 0  # in a row
        self._probed_at = 0.0
        self._probe: asyncio.Task[None] | None = None
        self.outages = 0  # how many times this process saw Redis go away

    def script(self, body: str) -> Callable[..., Awaitable[Any]]:
        """An asyncio callable ``(keys=, args=)`` running the Lua script ``body``."""
        if self.pinned is not None:
            return Script(self.pinned, body)
        return self.aio.register_script(body)

    def sync_script(self, body: str) -> Callable[..., Any]:
        """A blocking callable ``(keys=, args=)`` running the Lua script ``body`` (for a thread)."""
        if self.blocking is not None:
            return BlockingScript(self.blocking, body)
        return self.sync.register_script(body)

    def key(self, kind: str, name: bytes | str) -> bytes:
        return self.prefix + kind.encode() + b":" + (name.encode() if isinstance(name, str) else name)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` on the asyncio client, or raise ``RedisUnavailable`` naming why."""
        self._check_backoff()
        try:
            result = await operation()
        except self._errors as exc:
            raise self._failed(exc) from None
        self._up()
        return result

    def call_sync(self, operation: Callable[[], T]) -> T:
        self._check_backoff()
        try:
            result = operation()
        except self._errors as exc:
            raise self._failed(exc) from None
        self._up()
        return result

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def outage(self) -> str | None:
        """Why this process cannot use Redis (None when it can), from the last known state; starts one
        background ping when that state is more than a second old, so a health check never waits on it."""
        now = time.monotonic()
        if now - self._probed_at >= PROBE_SECONDS and (self._probe is None or self._probe.done()):
            self._probed_at = now
            self._probe = asyncio.get_running_loop().create_task(self._ping())
        return self.describe() if self._down_since is not None else None

    async def _ping(self) -> None:
        self._retry_at = 0.0  # a probe always tries
        try:
            await self.call(self.aio.ping)
        except RedisUnavailable:
            pass

    def _check_backoff(self) -> None:
        if self._down_since is not None and time.monotonic() < self._retry_at:
            raise RedisUnavailable(self.describe())

    def _failed(self, exc: BaseException) -> RedisUnavailable:
        cause = _cause(exc, self.timeout)
        if cause.startswith("no answer"):
            self._timeouts += 1
            if self._down_since is None and self._timeouts < TIMEOUTS_TO_DOWN:
                return RedisUnavailable(f"Redis at {self.where} did not answer in time ({cause})")
        if self._down_since is None:
            self._down_since = time.time()
            self.outages += 1
            log.warning("Redis at %s is unreachable (%s)", self.where, cause)
        self._cause = cause
        self._retry_at = time.monotonic() + BACKOFF_SECONDS
        return RedisUnavailable(self.describe())

    def _up(self) -> None:
        self._timeouts = 0
        if self._down_since is not None:
            log.warning("Redis at %s answers again after %.1f s", self.where, time.time() - self._down_since)
            self._down_since = None

    def describe(self) -> str:
        return f"Redis at {self.where} is unreachable ({self._cause})"

    def close(self) -> None:
        self.sync.close()
        if self.pinned is not None:
            self.pinned.close()
        if self.blocking is not None:
            self.blocking.close()


def _where(url: str) -> str:
    """host:port/db of the URL, without any password in it (it goes into logs and errors)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}{parts.path if parts.path not in ('', '/') else ''}"


def _cause(exc: BaseException, timeout: float) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in type(exc).__name__:
        return f"no answer within {int(timeout * 1000)} ms"
    return text[:200]


_links: dict[tuple[str, str], RedisLink] = {}


def open_redis(settings: "Settings") -> RedisLink:
    """The process's one link to ``redis_url`` (counters and cache share it, and so its health)."""
    assert settings.redis_url
    key = (settings.redis_url, settings.redis_key_prefix, settings.redis_timeout)
    link = _links.get(key)
    if link is None:
        link = _links[key] = RedisLink(*key)
    return link
