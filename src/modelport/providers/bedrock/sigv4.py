"""AWS Signature Version 4 over one HTTP request, header form.

Spec: docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html. Checked
against AWS's published test suite (aws-sig-v4-test-suite) and against botocore, which the strict fake
Bedrock uses as its independent verifier (tests/fakes/bedrock.py).

What is signed: ``host``, ``content-type`` when present, and every ``x-amz-*`` header, including the
``x-amz-content-sha256`` of the exact body bytes sent. Headers the transport may add or change after
signing (``user-agent``, ``accept-encoding``) stay out of the signature, so they cannot break it.

The canonical URI is the path *as sent* (already percent-encoded: a model id's ``:`` is ``%3A``),
encoded once more, as AWS wants for every service but S3: ``/model/a%3A0/converse`` is signed as
``/model/a%253A0/converse``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, with the session token that temporary (STS) credentials carry.
    The secret parts are kept out of ``repr`` so a stray log line cannot show them."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def sign(method: str, url: str, headers: dict[str, str], body: bytes | None, credentials: Credentials,
         region: str, service: str, *, now: float | None = None, payload_header: bool = True) -> dict[str, str]:
    """The headers that sign this request (``x-amz-date``, ``x-amz-content-sha256`` unless
    ``payload_header`` is off, ``x-amz-security-token`` for session credentials, ``authorization``).

    ``headers`` are the request's other headers (any case); ``body`` the exact bytes sent, or None for a
    streamed body, which is then signed as ``UNSIGNED-PAYLOAD``.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    payload = UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()
    added = {"x-amz-date": stamp}
    if payload_header:
        added["x-amz-content-sha256"] = payload
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    host, path, query = _url_parts(url)
    signed = _headers_to_sign(host, headers, added)
    names = ";".join(signed)
    canonical = "\n".join((
        method.upper(),
        path,
        query,
        "".join(f"{name}:{value}\n" for name, value in signed.items()),
        names,
        payload,
    ))
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = signing_key(credentials.secret_access_key, stamp[:8], region, service)
    signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
    added["authorization"] = (f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
                              f"SignedHeaders={names}, Signature={signature}")
    return added


@functools.lru_cache(maxsize=64)  # one derivation a day per key and region, not four HMACs per request
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


# A gateway signs the same few URLs (one per model and operation) over and over; their canonical
# parts are worked out once. Bounded, since proxied paths are the caller's.
@functools.lru_cache(maxsize=1024)
def _url_parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return _host(parts), canonical_uri(parts.path), canonical_query(parts.query) if parts.query else ""


def canonical_uri(path: str) -> str:
    """The sent path without dot segments, percent-encoded again (every service but S3)."""
    segments: list[str] = []
    for segment in (path or "/").split("/")[1:]:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    return quote("/" + "/".join(segments), safe="/~")


def canonical_query(query: str) -> str:
    """Parameters sorted by encoded name, then value, each encoded with AWS's unreserved set."""
    pairs = [(quote(name, safe="-_.~"), quote(value, safe="-_.~"))
             for name, value in parse_qsl(query, keep_blank_values=True)]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _headers_to_sign(host: str, headers: dict[str, str], added: dict[str, str]) -> dict[str, str]:
    chosen = {"host": host}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "content-type" or lower.startswith("x-amz-"):
            chosen[lower] = value
    chosen.update(added)
    # Values trimmed, inner runs of spaces collapsed (the suite's get-header-value-trim case).
    return {name: " ".join(chosen[name].split()) for name in sorted(chosen)}


def _host(parts) -> str:
    """The Host header an HTTP client sends for this URL: the port only when it is not the default."""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"
