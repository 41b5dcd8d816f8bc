"""Step 5, forward: build the upstream request for one target and open it.

Header rules (research/portkey.md §3.2, with Portkey's leaks fixed): the client's headers pass except
hop-by-hop, ``host``, ``content-length`` and every ``x-portkey-*``; the provider's default headers fill
gaps; provider auth is added last (``send_to_provider``, the provider's ``ProviderAuth``), so a stored
credential replaces whatever the client sent.
"""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
from yarl import URL

from ..providers.base import ProviderSpec, Target, Transport, UpstreamRequest
from ..asgi import ClientDisconnected
from ..errors import ForbiddenHost, GatewayError, UpstreamTimeout, UpstreamUnreachable
from .headers import RequestOptions
from .resolve import Resolved
from ..transport.sessions import Upstreams

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
    return await open_upstream(upstreams, resolved, method, url, request.headers, body, timeout)


async def open_upstream(
    upstreams: Upstreams,
    resolved: Resolved,
    method: str,
    url: URL,
    headers: list[tuple[str, str]] | dict[str, str],
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
    except (aiohttp.ClientError, OSError) as exc:
        # aiohttp's and asyncio's connection errors sit in reference cycles with the frames they passed
        # (freed only by a full garbage collection, rare in a worker: gctune.py), and those frames
        # hold this request's headers and body: let the frames go now. 100 failed calls carrying 1 MB of
        # headers each held 112 MB.
        release_frames(exc)
        own = _own_error(exc)
        if own is not None:  # the gateway stopped sending the body (too large, the client left): say so
            raise own from None
        if isinstance(exc, aiohttp.ClientConnectorError):
            # Distinct code: the request never left, so even a non-idempotent POST may be retried.
            raise UpstreamUnreachable(f"could not connect to {resolved.spec.id} at {url.host}:{url.port}: "
                                      f"{_transport_failure(exc)}", code=NOT_CONNECTED) from None
        raise UpstreamUnreachable(f"the connection to {resolved.spec.id} at {url.host} failed: {_transport_failure(exc)}") from None


def release_frames(exc: BaseException) -> None:
    """Clear the local variables of every frame in ``exc``'s tracebacks, its causes' included."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips the frames still running (this one)
        pending.extend((current.__cause__, current.__context__))


def _own_error(exc: BaseException) -> Exception | None:
    """The gateway's own exception that aiohttp wrapped: raised by the body it was sending (a streamed
    body over MODELPORT_MAX_BODY_BYTES, a client gone mid-upload) or by the SSRF-checking resolver."""
    for inner in (exc.__cause__, exc.__context__, getattr(exc, "os_error", None)):
        if isinstance(inner, (GatewayError, ClientDisconnected)):
            return inner
    return None


def _transport_failure(exc: BaseException) -> str:
    """What failed, in words. aiohttp's own messages name its internals (``Connection<ConnectionKey(...)>``),
    which tell a caller nothing; the OS's reason (``Connection refused``) does."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "it closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None)
        return f"its TLS certificate was refused{f' ({reason})' if reason else ''}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    os_error = getattr(exc, "os_error", exc)
    strerror = getattr(os_error, "strerror", None)
    return strerror or "the connection broke"
