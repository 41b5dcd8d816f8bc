"""Pooled aiohttp client sessions to upstreams: one for operator-trusted hosts, one for caller-chosen.

``auto_decompress=False`` so compressed bodies pass through byte for byte with their own
``Content-Encoding`` and length; we only decode where we must rewrite (Replicate's absolute URLs).
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict

from ..settings import Settings
from ..errors import ForbiddenHost, quoted
from ..hosts import is_public_address

# Headers aiohttp would add when the client did not send them. Accept-Encoding above all: with
# auto_decompress off, the client would get a compressed body it never asked for.
_NEVER_ADDED = CIMultiDict((name, None) for name in ("Accept", "Accept-Encoding", "Content-Type", "User-Agent"))


class VerbatimRequest(aiohttp.ClientRequest):
    """A request that carries the client's headers and adds none of aiohttp's defaults.

    Same effect as ``skip_auto_headers``, which rebuilds and sorts a multidict of the names on every
    request (~12k instructions, 2 % of the request path, measured with callgrind)."""

    def update_auto_headers(self, skip_auto_headers: object) -> None:
        # aiohttp's own attribute (3.14), also read when the body's headers are copied: pinned in
        # pyproject.toml, and tests/test_provider_registry.py fails if the default headers come back.
        self._skip_auto_headers = _NEVER_ADDED


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, then refuses any non-public address (the rules: gateway/hosts.py).
    Here beside its one user, so that hosts.py, which the CLI imports, does not import aiohttp."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if is_public_address(a["host"])]
        if not allowed:
            raise ForbiddenHost(
                f"custom host {quoted(host)} resolves to a private or local address; an operator can allow this "
                "with MODELPORT_ALLOW_PRIVATE_HOSTS=1 (or, for a stored provider's host, MODELPORT_TRUSTED_HOSTS)"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


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
            request_class=VerbatimRequest,
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
