"""Serve the dashboard's static files at ``/dashboard``: no framework, no CDN, nothing built at runtime.

    /dashboard, /dashboard/<route>   index.html (the page routes itself from the path: logs, overview, ...)
    /dashboard/<file>.<ext>          a file from ``static/`` with its content type

Files are read once per process and served from memory with a strong ETag. They are not fingerprinted
(ES module imports name plain files), so every response says ``no-cache``: the browser revalidates and
gets a body-less 304 while the file is unchanged, and never runs a stale module after an upgrade.
The page holds an admin key, so it is sent with a strict Content-Security-Policy: only its own scripts
and styles run, and it only talks to this origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from ..asgi import Headers, Receive, Scope, Send, send_response

PREFIX = "/dashboard"
STATIC = Path(__file__).parent / "static"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".json": b"application/json",
}

CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Headers = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


@cache
def assets() -> dict[str, Asset]:
    """Every file under ``static/`` by its path relative to it; only these names can ever be served."""
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            body = path.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
            found[path.relative_to(STATIC).as_posix()] = Asset(body, CONTENT_TYPES[path.suffix], etag)
    return found


def resolve(path: str) -> Asset | None:
    """The asset for a request path under ``/dashboard``: a file, index.html for a page route, or None."""
    name = path[len(PREFIX):].lstrip("/")
    files = assets()
    if name in files:
        return files[name]
    # A last segment with an extension names a file: a missing one is a 404, not the page, so a broken
    # <script> reference fails loudly instead of parsing HTML as JavaScript.
    if PurePosixPath(name).suffix:
        return None
    return files[INDEX]


async def serve_dashboard(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI handler for every path starting with ``/dashboard``."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
        return
    asset = resolve(scope["path"])
    if asset is None:
        await _plain(send, 404, b"not found\n")
        return
    headers: Headers = [(b"etag", asset.etag), (b"cache-control", b"no-cache"), *SECURITY_HEADERS]
    if asset.etag in _if_none_match(scope):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-type", asset.content_type))
    if method == "HEAD":
        headers.append((b"content-length", str(len(asset.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send_response(send, 200, headers, asset.body)


def _if_none_match(scope: Scope) -> set[bytes]:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return {tag.strip().removeprefix(b"W/") for tag in value.split(b",")}
    return set()


async def _plain(send: Send, status: int, body: bytes, extra: Headers | None = None) -> None:
    headers: Headers = [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS, *(extra or [])]
    await send_response(send, status, headers, body)
