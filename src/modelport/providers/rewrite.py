"""Keep clients on the gateway: rewrite absolute upstream URLs in proxied responses.

Configured per provider by ``UrlRewrite`` in its spec (Replicate: research/replicate.md §3). API URLs
under the upstream base become gateway URLs (``next``/``previous`` are followed literally by every
Replicate client; left alone, page 2 would carry the gateway key to the provider). Paths listed in
``keep`` are left alone (Replicate file URLs go into prediction inputs, which the provider's workers
fetch). URLs in ``stream_field`` become signed gateway stream routes. The JSON bytes are edited in
place, never re-encoded, so everything else reaches the client exactly as the provider sent it.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from ..errors import BadRequest

_ID_FIELD = re.compile(rb'"id"\s*:\s*"([^"\\]+)"')


@dataclass(frozen=True, slots=True)
class UrlRewrite:
    keep: tuple[str, ...] = ()  # paths under the base that stay upstream URLs, e.g. "/files/"
    stream_field: str | None = None  # JSON key whose URL value becomes a signed gateway stream route

    def body(self, body: bytes, upstream_base: str, gateway_base: str,
             sign_stream: Callable[[str, str | None], str]) -> bytes:
        upstream = upstream_base.rstrip("/").encode()
        if self.stream_field:
            body = self._streams(body, sign_stream)
        if upstream not in body:
            return body
        # A template, so the substitution runs in C; in a template only the backslash is special.
        replacement = b'"' + _json_text(gateway_base.rstrip("/")).replace(b"\\", b"\\\\")
        return _api_urls(upstream, self.keep).sub(replacement, body)

    def _streams(self, body: bytes, sign_stream: Callable[[str, str | None], str]) -> bytes:
        """Sign each stream URL together with the id of the object it belongs to (the nearest ``"id"``
        before it), so the relayed stream is logged against its prediction."""
        field = f'"{self.stream_field}"'.encode()
        if field not in body:
            return body
        pattern = _stream_urls(field)

        def signed(match: re.Match[bytes]) -> bytes:
            owner = _last_id(body, match.start())
            return match.group(1) + _json_text(sign_stream(match.group(2).decode(), owner)) + match.group(3)

        return pattern.sub(signed, body)

    def location(self, value: str, upstream_base: str, gateway_base: str) -> str:
        upstream = upstream_base.rstrip("/")
        if value.startswith(upstream + "/") and not any(value.startswith(upstream + k) for k in self.keep):
            return gateway_base.rstrip("/") + value[len(upstream):]
        return value


def _json_text(text: str) -> bytes:
    """``text`` as the inside of a JSON string: whatever the gateway's origin holds cannot end the string."""
    return orjson.dumps(text)[1:-1]


class InvalidHost(BadRequest):
    code = "invalid_host"


# RFC 9110 §7.2: Host is uri-host[:port]. Names, IPv4 and bracketed IPv6 only: nothing that could end a
# JSON string or a header when the gateway writes its own origin into a response.
_HOST = re.compile(r"(?:[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63}){0,126}\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def public_base(public_url: str | None, scope: dict[str, Any]) -> str:
    """The gateway's public ``/v1`` root: ``MODELPORT_PUBLIC_URL`` when set, else the origin the client
    reached (its ``Host``, which must be a valid host[:port]), else the address the server listens on."""
    if public_url:
        return public_url.rstrip("/") + "/v1"
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    if host is None:
        address, port = scope.get("server") or ("127.0.0.1", 80)
        address = f"[{address}]" if ":" in address else address
        return f"{scope.get('scheme', 'http')}://{address}:{port}/v1"
    text = host.decode("latin-1")
    if not _HOST.fullmatch(text):
        raise InvalidHost("the Host header must be host[:port] (a name, an IPv4 address or a bracketed IPv6 "
                          "address); the operator can set MODELPORT_PUBLIC_URL instead")
    return f"{scope.get('scheme', 'http')}://{text}/v1"


def _last_id(body: bytes, end: int) -> str | None:
    """The value of the last ``"id": "..."`` before ``end``, searched backwards (a forward scan of the
    whole prefix cost ~15k instructions on every Replicate prediction)."""
    position = body.rfind(b'"id"', 0, end)
    while position >= 0:
        found = _ID_FIELD.match(body, position, end)
        if found:
            return found.group(1).decode()
        position = body.rfind(b'"id"', 0, position)
    return None


@functools.lru_cache(maxsize=8)
def _stream_urls(field: bytes) -> re.Pattern[bytes]:
    return re.compile(b"(" + re.escape(field) + rb'\s*:\s*")(https?://[^"\\\s]+)(")')


@functools.lru_cache(maxsize=64)
def _api_urls(upstream: bytes, keep: tuple[str, ...]) -> re.Pattern[bytes]:
    """``"<upstream base>`` at the start of a JSON string, followed by a path, query or the string's end,
    and not by a kept path. One compiled pattern per upstream: the substitution then runs in C (a Python
    callback per URL cost ~11 µs on a Replicate prediction)."""
    excluded = b"".join(b"(?!" + re.escape(k.encode()) + b")" for k in keep)
    return re.compile(b'"' + re.escape(upstream) + excluded + rb'(?=[/?"])')


class BodyTooLarge(Exception):
    """A body opens up to more than the gateway will hold to rewrite it."""


def decode_content(body: bytes, encoding: str, limit: int) -> bytes | None:
    """Decompress a gzip/deflate body so it can be rewritten; None for encodings we leave alone and
    bodies that do not open. Never more than ``limit`` bytes: a 200 KB gzip that opens to 200 MiB
    cost the worker 348 MB; past the limit, ``BodyTooLarge``."""
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        windows = (16 + zlib.MAX_WBITS,)
    elif encoding == "deflate":
        windows = (zlib.MAX_WBITS, -zlib.MAX_WBITS)  # zlib-wrapped, as the RFC says, or raw, as some send
    else:
        return None
    for window in windows:
        opener = zlib.decompressobj(window)
        try:
            opened = opener.decompress(body, limit + 1)
            if len(opened) > limit or opener.unconsumed_tail:
                raise BodyTooLarge()
            opened += opener.flush()
        except zlib.error:
            continue
        if len(opened) > limit:
            raise BodyTooLarge()
        return opened
    return None
