"""Step 5, forward: build the upstream request for one target and open it.

Header rules (research/portkey.md §3.2, with Portkey's leaks fixed): the client's headers pass except
hop-by-hop, ``host``, ``content-length`` and every ``x-portkey-*``; the provider's default headers fill
gaps; provider auth is added last (``send_to_provider``, the provider's ``ProviderAuth``), so a stored
credential replaces whatever the client sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
from yarl import URL

from ..body_json import BodyJson
from ..providers.base import ProviderSpec, Target, Transport, UpstreamRequest
from ..transport.send import open_upstream
from ..transport.sessions import Upstreams
from .headers import RequestOptions
from .resolve import Resolved

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
    endpoint: Any = None  # the unified endpoint this method and path name, if any (computed once)
    _json: BodyJson | None = None

    @property
    def json(self) -> BodyJson:
        """The body's JSON, decoded at most once for every step that reads it (modelport/body_json.py)."""
        if self._json is None:
            self._json = BodyJson(self.body)
        return self._json


def upstream_url(base_url: str, path: str, query: str) -> str:
    """The proxied request's URL, already encoded: sent byte for byte (percent-encodings unchanged)."""
    url = base_url + path
    if query:
        url += "?" + query
    return url


def proxy_headers(options: RequestOptions, spec: ProviderSpec, target: Target) -> dict[str, str]:
    """The client's headers as they go to the provider, before its auth (``send_to_provider``) adds the
    credential: a stored provider's credential replaces every auth header the client sent."""
    stored = target.slug is not None
    headers: dict[str, str] = {}
    for raw_name, raw_value in options.upstream_headers:
        name = raw_name.decode("latin-1")
        if stored and name in AUTH_HEADERS:
            continue
        value = raw_value.decode("latin-1")
        if name in headers:  # a repeated header, joined as HTTP allows (RFC 9110 §5.3; cookies with "; ")
            value = f"{headers[name]}{'; ' if name == 'cookie' else ', '}{value}"
        headers[name] = value
    for name, value in spec.headers_for(target.settings).items():  # defaults and settings fill gaps
        headers.setdefault(name, value)
    return headers


async def send_to_provider(
    upstreams: Upstreams,
    transport: Transport,
    resolved: Resolved,
    method: str,
    url: URL | str,
    headers: dict[str, str],
    body: Any,
    timeout: float | None,
) -> aiohttp.ClientResponse:
    """The one place a request to the provider's API goes out (proxied, translated, each step of a
    multi-step call): the provider's ``ProviderAuth`` sees it whole, with every other header final and
    the URL and body bytes as sent (``url`` a ``URL``, or the encoded text of one), adds its credential,
    and the request is opened. A body that streams
    through (an ``AsyncIterator``) is not seen: ``stream_body`` says so."""
    if isinstance(url, str):  # encoded already (``upstream_url``): its text is what is sent, no str(URL) (~2 µs)
        text, url = url, URL(url, encoded=True)
    else:
        text = str(url)
    streamed = hasattr(body, "__aiter__")
    request = UpstreamRequest(method, text, headers, None if streamed else body, stream_body=streamed)
    await resolved.spec.auth.authorize(request, resolved.target, transport)
    return await open_upstream(upstreams, resolved.caller_chosen_host, resolved.spec.id, method, url, request.headers,
                               body, timeout)
