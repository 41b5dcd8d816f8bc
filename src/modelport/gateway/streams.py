"""Signed, expiring references to upstream stream URLs: ``{gateway}/v1/streams/<token>``.

Replicate's ``urls.stream`` is a capability URL that JS and Go clients fetch with no auth header, so the
gateway route that relays it must work without one; it serves only what the gateway itself signed.
Token = base64url(JSON payload) "." base64url(HMAC-SHA256(payload)). The payload names the upstream
URL, the expiry, whether the host was caller-chosen (then the SSRF-guarded session is used) and the
trace/provider so the relayed stream is logged against the prediction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson

STREAM_ROUTE = "/v1/streams/"


class InvalidStreamToken(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamSigner:
    def __init__(self, key: bytes, ttl: int) -> None:
        # Keyed once and copied per token: with OpenSSL 3, hmac.new() fetches SHA-256 by name on every
        # call (~30k instructions, callgrind), more than the rest of a Replicate response's rewrite.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self._ttl = ttl

    def _mac(self, payload: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(payload)
        return mac.digest()

    def link(self, gateway_base: str, upstream_url: str, **claims: Any) -> str:
        """The gateway stream route (under ``gateway_base``, its public ``/v1`` root) for ``upstream_url``."""
        return f"{gateway_base}{STREAM_ROUTE[3:]}{self.sign(upstream_url, **claims)}"

    def sign(self, upstream_url: str, **claims: Any) -> str:
        payload = orjson.dumps({"u": upstream_url, "e": int(time.time()) + self._ttl, **claims})
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str) -> dict[str, Any]:
        """Only the token exactly as signed verifies. Comparing decoded bytes is not enough: base64
        decoding skips characters outside its alphabet and surplus padding, so ``<token>!!`` or
        ``<token>==`` decoded to the signed bytes."""
        body, _, mac = token.partition(".")
        try:
            payload = _unb64(body)
            expected = _b64(self._mac(payload)).encode()
            if _b64(payload) != body or not hmac.compare_digest(expected, mac.encode("utf-8", "replace")):
                raise InvalidStreamToken("signature mismatch")
            claims = orjson.loads(payload)
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise InvalidStreamToken(str(exc)) from None
        if claims.get("e", 0) < time.time():
            raise InvalidStreamToken("expired")
        return claims
