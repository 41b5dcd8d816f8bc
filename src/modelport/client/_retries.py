"""When the SDK may send a request again, and how long it waits first.

The rule that matters: a POST (a prediction, a completion) is never sent twice if the first one
may have reached the server, since that would run — and bill — the work twice. It is retried only
when it provably never left (the connection was never made) or when the gateway says it refused
the request before forwarding it (a 429/503 carrying ``x-portkey-gateway-exception: true``).
Idempotent methods are retried on 429/502/503/504 and on any connection failure or timeout.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "QUERY"})
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
REFUSED_BEFORE_FORWARDING = frozenset({429, 503})  # with x-portkey-gateway-exception: true

# Errors raised before a single byte of the request was written: no connection, or none free.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
TRANSIENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is ignored in favour of the backoff


def may_retry_error(method: str, error: Exception) -> bool:
    if isinstance(error, NEVER_SENT):
        return True
    return method in IDEMPOTENT_METHODS and isinstance(error, TRANSIENT)


def may_retry_response(method: str, response: httpx.Response) -> bool:
    status = response.status_code
    if method in IDEMPOTENT_METHODS:
        return status in RETRYABLE_STATUSES
    refused = response.headers.get("x-portkey-gateway-exception", "").lower() == "true"
    return refused and status in REFUSED_BEFORE_FORWARDING


def retry_delay(attempt: int, response: httpx.Response | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1``: ``Retry-After`` if sane, else backoff."""
    hinted = retry_after(response) if response is not None else None
    if hinted is not None and 0 <= hinted <= MAX_RETRY_AFTER:
        return hinted
    backoff = min(INITIAL_BACKOFF * 2.0**attempt, MAX_BACKOFF)
    return backoff * (1 - 0.25 * random.random())  # jitter spreads clients that failed together


def retry_after(response: httpx.Response) -> float | None:
    """``retry-after-ms`` (OpenAI), ``Retry-After`` in seconds or as an HTTP date (RFC 9110)."""
    milliseconds = response.headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
