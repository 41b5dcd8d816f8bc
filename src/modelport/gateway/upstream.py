"""Pooled aiohttp client sessions to upstreams: one for operator-trusted hosts, one for caller-chosen.

``auto_decompress=False`` so compressed bodies pass through byte for byte with their own
``Content-Encoding`` and length; we only decode where we must rewrite (Replicate's absolute URLs).
"""

from __future__ import annotations

import aiohttp

from ..settings import Settings
from .hosts import PublicOnlyResolver


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Built once: no overall limit (streams may last), but an upstream silent this long mid-response is dead.
        self.read_timeout = aiohttp.ClientTimeout(total=None, sock_read=settings.upstream_timeout)
        self.trusted: aiohttp.ClientSession | None = None
        self.guarded: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.trusted = self._session(resolver=None)
        self.guarded = self.trusted if self._settings.allow_private_hosts else self._session(PublicOnlyResolver())

    def _session(self, resolver: PublicOnlyResolver | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,  # no pool cap: concurrency is bounded by the server, not by a hidden queue here
            limit_per_host=0,
            ttl_dns_cache=60,
            keepalive_timeout=30,
            resolver=resolver,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, connect=self._settings.connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def session(self, caller_chosen_host: bool) -> aiohttp.ClientSession:
        session = self.guarded if caller_chosen_host else self.trusted
        assert session is not None, "Upstreams.start() was not awaited"
        return session

    async def close(self) -> None:
        for session in {id(s): s for s in (self.trusted, self.guarded) if s is not None}.values():
            await session.close()
