"""Sending a request upstream and reading its answer: the one place aiohttp's and the OS's failures
become the gateway's errors (errors.py), for the request path (the proxy route, translated calls, a
multi-step call's steps, the stream relay) and every background call (auth hooks' token exchanges, the
log service's autopoll and lookups, the OTLP exporter, the webhook relay) alike.

- ``open_upstream``: send, wait for the response head. A connection that never opened is
  ``UpstreamUnreachable`` with code ``upstream_connect_failed`` (the request never left, so even a POST
  may be retried); one that broke after, ``UpstreamUnreachable``; a silent upstream, ``UpstreamTimeout``.
- ``read_whole`` / ``read_at_most``: a body read whole that breaks off is a 502 (504 when it went silent).
- ``UpstreamClient.fetch``: both, within one deadline, for a request whose answer is read whole.
A body relayed as it comes cannot turn into an error (its status is sent): its readers catch
``STREAM_BROKE`` and end the client's response short.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import aiohttp
from yarl import URL

from ..asgi import ClientDisconnected
from ..errors import BadUpstreamResponse, GatewayError, UpstreamTimeout, UpstreamUnreachable
from ..hosts import check_custom_host
from ..providers.rewrite import BodyTooLarge, decode_content
from .messages import StepAnswer, UpstreamRequest
from .sessions import Upstreams

NOT_CONNECTED = "upstream_connect_failed"
# What reading a body as it arrives may raise once the upstream breaks or goes silent.
STREAM_BROKE = (aiohttp.ClientError, TimeoutError)


async def open_upstream(
    upstreams: Upstreams,
    guarded: bool,
    who: str,
    method: str,
    url: URL,
    headers: list[tuple[str, str]] | dict[str, str],
    body: Any,
    timeout: float | None,
) -> aiohttp.ClientResponse:
    """Send the request on the guarded (SSRF-checked) or trusted session and wait for the response head.
    ``who`` names the upstream in messages (a provider id); ``timeout`` is the caller's whole budget
    for the head (None: only the session's silence limit, MODELPORT_UPSTREAM_TIMEOUT)."""
    session = upstreams.session(guarded)
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
            raise UpstreamTimeout(f"{who} sent nothing for {limit:g} s (MODELPORT_UPSTREAM_TIMEOUT)") from None
        raise UpstreamTimeout(
            f"{who} did not answer within {timeout:g} s (x-portkey-request-timeout / request_timeout)"
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
            raise UpstreamUnreachable(f"could not connect to {who} at {url.host}:{url.port}: "
                                      f"{_transport_failure(exc)}", code=NOT_CONNECTED) from None
        raise UpstreamUnreachable(f"the connection to {who} at {url.host} failed: {_transport_failure(exc)}") from None


async def read_whole(upstream: aiohttp.ClientResponse) -> bytes:
    """A body whose length is known and fits what the gateway holds (the usual small answer)."""
    try:
        return await upstream.read()
    except STREAM_BROKE as exc:
        raise broken_off(upstream, exc) from None


async def read_at_most(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or, once it passes ``limit``, what was read so far (``limit`` + one chunk at most): the
    caller tells which by its length."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in upstream.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
    except STREAM_BROKE as exc:
        chunks.clear()
        raise broken_off(upstream, exc) from None
    return b"".join(chunks)


def broken_off(upstream: aiohttp.ClientResponse, exc: BaseException) -> GatewayError:
    """A body being read whole broke off before its end (the upstream reset, went silent or sent less
    than its Content-Length). Nothing has been sent to the client yet, so it gets the upstream's fault:
    502, or 504 when it went silent. Uncaught, it was a plain 500 and a record with status 0."""
    # aiohttp keeps the error (and so the traceback through the reader's frame and what it read) in a
    # cycle until a full collection: let the frames go now, as for a failed connection.
    release_frames(exc)
    upstream.close()
    if isinstance(exc, TimeoutError):  # aiohttp's sock_read timeout is one (MODELPORT_UPSTREAM_TIMEOUT)
        return UpstreamTimeout("the provider went silent in the middle of its response (MODELPORT_UPSTREAM_TIMEOUT)")
    return BadUpstreamResponse(f"the provider's response broke off before its end: {type(exc).__name__}")


def whole_answer(response: aiohttp.ClientResponse, raw: bytes, limit: int, who: str) -> StepAnswer:
    """A response read whole (``raw``, up to one byte past ``limit``): its status, lower-cased headers and
    body, opened if compressed; a 502 past ``limit``. ``who`` starts the message ("replicate answered ...")."""
    if len(raw) > limit:
        raise BadUpstreamResponse(f"{who} with more than the {limit:,} bytes the gateway reads for this step",
                                  code="upstream_response_too_large")
    headers = {name.lower(): value for name, value in response.headers.items()}
    if headers.get("content-encoding"):  # none is asked for, but a caller's forwarded header might
        try:
            raw = decode_content(raw, headers["content-encoding"].lower(), limit) or raw
        except BodyTooLarge:
            raise BadUpstreamResponse(f"{who} with a body that opens to more than {limit:,} bytes",
                                      code="upstream_response_too_large") from None
    return StepAnswer(response.status, headers, raw)


class UpstreamClient:
    """``Transport`` (transport/messages.py) on one side of the pool: ``fetch`` sends a request as given
    (no credential added) and reads its whole answer within ``timeout``, failing with the gateway's
    errors. ``guarded``: the SSRF-checked session, and IP literals checked first (aiohttp never resolves
    them). ``purpose`` names who calls in every message ("bedrock's auth")."""

    def __init__(self, upstreams: Upstreams, purpose: str, timeout: float, *, guarded: bool,
                 allow_private: bool = False, timeout_name: str = "MODELPORT_UPSTREAM_TIMEOUT") -> None:
        self.upstreams, self.purpose, self.timeout, self.timeout_name = upstreams, purpose, timeout, timeout_name
        self.guarded, self.allow_private = guarded, allow_private

    async def fetch(self, request: UpstreamRequest, limit: int, timeout: float | None = None) -> StepAnswer:
        """``timeout``: this call's own deadline instead of the client's."""
        url = URL(request.url, encoded=False)
        where = f"{self.purpose} could not call {url.host}"
        timeout = self.timeout if timeout is None else timeout
        try:
            if self.guarded:
                check_custom_host(request.url, self.allow_private)
            async with asyncio.timeout(timeout):
                response = await open_upstream(self.upstreams, self.guarded, str(url.host), request.method, url,
                                               request.headers, request.body, None)
                try:
                    raw = await read_at_most(response, limit)
                finally:
                    response.release()
        except TimeoutError:
            raise UpstreamTimeout(f"{where}: no answer within {timeout:g} s ({self.timeout_name})") from None
        except GatewayError as error:  # said as this caller's call, not as a request to a provider's API
            error.message = f"{where}: {error.message}"
            raise
        return whole_answer(response, raw, limit, f"{url.host} answered {self.purpose}")


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
