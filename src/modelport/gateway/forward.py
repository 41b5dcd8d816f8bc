"""Step 5, forward: build the upstream request for one target and open it.

Header rules (research/portkey.md §3.2, with Portkey's leaks fixed): the client's headers pass except
hop-by-hop, ``host``, ``content-length`` and every ``x-portkey-*``; the provider's default headers fill
gaps; provider auth is injected last, so a stored credential replaces whatever the client sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
from yarl import URL

from ..providers.base import ProviderSpec, Target
from .errors import ForbiddenHost, GatewayError, UpstreamTimeout, UpstreamUnreachable
from .headers import RequestOptions
from .resolve import Resolved
from .upstream import Upstreams

NOT_CONNECTED = "upstream_connect_failed"
AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})


@dataclass(slots=True)
class Outbound:
    """The client's request as received: what every attempt is built from."""

    method: str
    path: str  # after "/v1", still percent-encoded exactly as the client sent it; starts with "/"
    query: str  # raw query string without "?"
    options: RequestOptions
    body: bytes | None  # the whole body, when it was small enough to hold (and so can be replayed)
    body_stream: AsyncIterator[bytes] | None = None  # a large body, streamed once (no retries)
    parsed: Any = None  # the JSON body, parsed at most once (see UnifiedCall.peek_json)
    endpoint: Any = None  # the unified endpoint this method and path name, if any (computed once)


def upstream_url(base_url: str, path: str, query: str) -> URL:
    url = base_url + path
    if query:
        url += "?" + query
    return URL(url, encoded=True)  # byte for byte: percent-encodings reach the provider unchanged


def proxy_headers(options: RequestOptions, spec: ProviderSpec, target: Target) -> list[tuple[str, str]]:
    auth = spec.auth.headers_for(target.api_key)
    stored = target.slug is not None
    headers: list[tuple[str, str]] = []
    present: set[str] = set()
    for raw_name, raw_value in options.upstream_headers:
        name = raw_name.decode("latin-1")
        if name in auth or (stored and name in AUTH_HEADERS):
            continue
        headers.append((name, raw_value.decode("latin-1")))
        present.add(name)
    for name, value in spec.default_headers.items():
        if name not in present:
            headers.append((name, value))
    headers.extend(auth.items())
    return headers


async def open_upstream(
    upstreams: Upstreams,
    resolved: Resolved,
    method: str,
    url: URL,
    headers: list[tuple[str, str]],
    body: Any,
    timeout: float | None,
) -> aiohttp.ClientResponse:
    """Send the request and wait for the response head; map transport failures to gateway errors."""
    session = upstreams.session(resolved.caller_chosen_host)
    try:
        request = session.request(method, url, headers=headers, data=body, allow_redirects=False,
                                  timeout=upstreams.read_timeout)
        if timeout is None:
            return await request
        async with asyncio.timeout(timeout):
            return await request
    except TimeoutError:
        if timeout is None:  # aiohttp's read timeout: the upstream went silent
            limit = upstreams.read_timeout.sock_read
            raise UpstreamTimeout(f"{resolved.spec.id} sent nothing for {limit:g} s (MODELPORT_UPSTREAM_TIMEOUT)") from None
        raise UpstreamTimeout(
            f"{resolved.spec.id} did not answer within {timeout:g} s (x-portkey-request-timeout / request_timeout)"
        ) from None
    except GatewayError:
        raise
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.__cause__, ForbiddenHost) or isinstance(getattr(exc, "os_error", None), ForbiddenHost):
            raise exc.__cause__ if isinstance(exc.__cause__, ForbiddenHost) else ForbiddenHost(str(exc)) from None
        # Distinct code: the request never left, so even a non-idempotent POST may be retried.
        raise UpstreamUnreachable(f"could not connect to {resolved.spec.id} at {url.host}:{url.port}: {exc.os_error.strerror or exc}",
                                  code=NOT_CONNECTED) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnreachable(f"the connection to {resolved.spec.id} at {url.host} failed: {type(exc).__name__}: {exc}") from None
