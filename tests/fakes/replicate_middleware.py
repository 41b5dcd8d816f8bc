"""What wraps every request to the fake: recording, scripted faults, auth, errors, response headers.

Order, outermost first: ``record`` → ``decorate`` → ``inject_faults`` → ``problems`` →
``authenticate`` → handler. So every request is recorded, every API response (faults and errors
included) gets the headers real Replicate sends, and scripted faults fire even without a valid token.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from http import HTTPStatus

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.replicate_state import (
    ORIGIN,
    RECORD,
    UNAUTHENTICATED,
    Fault,
    ProblemError,
    RecordedRequest,
    problem,
    state_of,
)

# Routes real Replicate serves without a bearer token: delivery stands in for the replicate.delivery CDN.
PUBLIC_PREFIXES = ("/delivery/",)


def reset_connection(request: web.Request) -> None:
    """Drop the TCP connection with a RST, so the client sees 'connection reset by peer'."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@web.middleware
async def record(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    entry = RecordedRequest(
        request.method, request.raw_path, CIMultiDict(request.headers), origin=request.app[ORIGIN]
    )
    state_of(request).requests.append(entry)
    request[RECORD] = entry
    try:
        return await handler(request)
    finally:
        declared = int(request.headers.get("Content-Length") or 0)
        entry.body_size = max(request.content.total_bytes, declared)


@web.middleware
async def decorate(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.prepared:
        return response
    creates = request.method == "POST" and request.path.endswith("/predictions")
    # Recorded values: 599 left on creates (600/min), 2999 elsewhere (3000/min), reset in 1 s.
    response.headers.setdefault("ratelimit-remaining", "599" if creates else "2999")
    response.headers.setdefault("ratelimit-reset", "1")
    if request.path == "/v1/models":
        response.headers["Allow"] = "GET, POST, QUERY"
    wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    if request.method == "GET" and wants_gzip and "json" in response.content_type and response.status != 204:
        # Real GET responses arrive gzip-encoded; a proxy must keep Content-Encoding consistent.
        response.enable_compression(web.ContentCoding.gzip)
    return response


@web.middleware
async def inject_faults(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    fault = state_of(request).take_fault(request.method, request.path)
    if fault is None:
        return await handler(request)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.reset:
        reset_connection(request)
        return web.Response()
    if fault.status:
        return fault_response(fault).response()
    return await handler(request)


def fault_response(fault: Fault) -> ProblemError:
    status = fault.status or 500
    if status == 429:
        # Body as reported in public issues; the Retry-After header is what clients honour.
        detail = fault.detail or f"Request was throttled. Your rate limit resets in ~{fault.retry_after}s."
        error = problem(429, detail, retry_after=fault.retry_after)
        error.headers["Retry-After"] = str(fault.retry_after)
        return error
    phrase = HTTPStatus(status).phrase
    return problem(status, fault.detail or phrase, phrase)


@web.middleware
async def problems(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Answer every error as ``application/problem+json``, aiohttp's own 404/405 included."""
    try:
        return await handler(request)
    except ProblemError as error:
        return error.response()
    except web.HTTPNotFound:
        return problem(404, "Not found.").response()
    except web.HTTPMethodNotAllowed as error:
        response = problem(405, f'Method "{request.method}" not allowed.', "Method Not Allowed").response()
        response.headers["Allow"] = ", ".join(sorted(error.allowed_methods))
        return response


@web.middleware
async def authenticate(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    if not request.path.startswith(PUBLIC_PREFIXES):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # "Token" is the pre-2024 scheme, still accepted [docs changelog 2024-04-03].
        if scheme not in ("Bearer", "Token") or token != state_of(request).token:
            raise ProblemError(401, dict(UNAUTHENTICATED))
    return await handler(request)
