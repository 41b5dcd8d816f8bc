"""The link to Redis that a process's shared counters and response cache go through (``redis_url``).

One ``RedisLink`` per process: a synchronous client (the log service's settlements, control-plane
usage reads) and an asyncio client (the request path), both with short timeouts and no retries, so a
Redis that is down or stalled costs a request at most ``TIMEOUT_SECONDS``, never the event loop. The
link remembers the last outage: for ``BACKOFF_SECONDS`` after a failure every call fails at once
without a round trip (a stalled Redis would otherwise hold every request for the whole timeout),
and ``/health`` reads that state, refreshed by at most one ping a second.

Every key is ``redis_key_prefix`` + a name, so gateways (or test runs) can share one Redis apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

from .counters import CountersUnavailable

log = logging.getLogger("modelport.redis")

# Short: an answer from a healthy Redis on the same network takes well under a millisecond.
TIMEOUT_SECONDS = 0.25
BACKOFF_SECONDS = 1.0
PROBE_SECONDS = 1.0

T = TypeVar("T")


class RedisUnavailable(CountersUnavailable):
    """Redis did not answer (refused, timed out, lost): what needed it goes without or fails closed."""


class RedisLink:
    def __init__(self, url: str, prefix: str) -> None:
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
        options: dict[str, Any] = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
        self.sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=lost), **options)
        self.aio = redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 1, supported_errors=lost), **options)
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._down_since: float | None = None
        self._cause = ""
        self._retry_at = 0.0
        self._probed_at = 0.0
        self._probe: asyncio.Task[None] | None = None
        self.outages = 0  # how many times this process saw Redis go away

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
        cause = _cause(exc)
        if self._down_since is None:
            self._down_since = time.time()
            self.outages += 1
            log.warning("Redis at %s is unreachable (%s)", self.where, cause)
        self._cause = cause
        self._retry_at = time.monotonic() + BACKOFF_SECONDS
        return RedisUnavailable(self.describe())

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("Redis at %s answers again after %.1f s", self.where, time.time() - self._down_since)
            self._down_since = None

    def describe(self) -> str:
        return f"Redis at {self.where} is unreachable ({self._cause})"

    def close(self) -> None:
        self.sync.close()


def _where(url: str) -> str:
    """host:port/db of the URL, without any password in it (it goes into logs and errors)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}{parts.path if parts.path not in ('', '/') else ''}"


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in type(exc).__name__:
        return f"no answer within {int(TIMEOUT_SECONDS * 1000)} ms"
    return text[:200]


_links: dict[tuple[str, str], RedisLink] = {}


def open_redis(url: str, prefix: str) -> RedisLink:
    """The process's one link to ``url`` (counters and cache share it, and so its health)."""
    link = _links.get((url, prefix))
    if link is None:
        link = _links[(url, prefix)] = RedisLink(url, prefix)
    return link
