"""Which headers are credentials: the one list every place that writes a record redacts by (the log
store's rows, and the spill file before a record ever touches disk)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "set-cookie",
     "x-portkey-api-key"}
)
_SECRET_WORDS = ("token", "secret", "key", "password", "signature")


@functools.lru_cache(maxsize=1024)  # header names repeat on every request
def is_secret_header(name: str) -> bool:
    """``name`` in lower case: a known credential header, or one whose name says it holds one."""
    return name in SECRET_HEADERS or any(word in name for word in _SECRET_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if is_secret_header(name) else value for name, value in headers.items()}
