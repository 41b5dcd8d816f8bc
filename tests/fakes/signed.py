"""A fake upstream that accepts only requests signed over their exact bytes, as AWS SigV4 does.

The gateway's side is tests/signed_provider/sitecustomize.py (``HmacSigner``). A request carries
``x-test-signed-headers`` (the names it signed, ``;``-separated), ``x-test-token`` (a session token the
signer fetched from ``POST /token`` through the gateway's ``Transport``) and ``x-test-signature``: an
HMAC-SHA256, keyed with the provider key, of the method, the URL as sent, each signed header as
``name:value`` and the body's SHA-256 (``UNSIGNED-PAYLOAD`` for a body the signer could not see).
Anything that changes a signed byte after signing (a header, the body, the URL) fails with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

UNSIGNED = "UNSIGNED-PAYLOAD"


def canonical(method: str, url: str, headers: dict[str, str], names: list[str], payload: str) -> bytes:
    lines = [method, url, *(f"{name}:{headers.get(name, '')}" for name in names), payload]
    return "\n".join(lines).encode()


def signature(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class SignedState:
    tokens: set[str] = field(default_factory=set)
    verified: list[dict] = field(default_factory=list)  # one per request that passed: path, payload mode, size
    refused: list[str] = field(default_factory=list)


SIGNED = web.AppKey("signed", SignedState)


def signature_check(api_key: str, state: SignedState) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware for any fake app: serves ``POST /token``, refuses (403) every other request whose
    signature does not match it as received, and records those that pass before its handler runs."""
    counter = itertools.count(1)

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/token":
            issued = f"session-{next(counter)}"
            state.tokens.add(issued)
            return web.json_response({"token": issued})
        body = await request.read()  # kept by aiohttp: the handler reads it again
        headers = {name.lower(): value for name, value in request.headers.items()}
        names = [name for name in headers.get("x-test-signed-headers", "").split(";") if name]
        payload = headers.get("x-test-payload", "")
        if payload != UNSIGNED:
            payload = hashlib.sha256(body).hexdigest()
        url = f"http://{request.host}{request.raw_path}"
        expected = signature(api_key, canonical(request.method, url, headers, names, payload))
        problem = ("no session token from POST /token" if headers.get("x-test-token") not in state.tokens
                   else "the token is not signed" if "x-test-token" not in names
                   else "the signature does not match the request as received"
                   if not hmac.compare_digest(expected, headers.get("x-test-signature", "")) else None)
        if problem:
            state.refused.append(problem)
            return web.json_response({"error": {"message": problem, "type": "invalid_request_error"}}, status=403)
        state.verified.append({"path": request.path, "payload": "unsigned" if payload == UNSIGNED else "signed",
                               "bytes": len(body)})
        return await handler(request)

    return check


def make_signed_app(api_key: str) -> web.Application:
    """An upstream of its own behind the check: chat answers "signed ok"; any other path says what it got."""
    state = SignedState()

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith("/chat/completions"):
            return web.json_response({"id": "chatcmpl-signed", "object": "chat.completion", "model": "signed-model",
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": "signed ok"}}],
                                      "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        return web.json_response({"received": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[signature_check(api_key, state)])
    app[SIGNED] = state
    app.router.add_route("*", "/{tail:.*}", answer)
    return app
