"""Which headers are credentials: the one list every place that writes a record redacts by (the log
store's rows, and the spill file before a record ever touches disk)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from ..providers.registry import all_settings

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "set-cookie",
     "x-portkey-api-key"}
    # and the x-portkey-* header of every secret setting a provider declares (providers/base.py Setting)
    | {f"x-portkey-{setting.header}" for _, setting in all_settings() if setting.secret and setting.header}
)
_SECRET_WORDS = ("token", "secret", "key", "password", "signature")


def is_secret_header(name: str) -> bool:
    """``name`` in lower case: a known credential header, or one whose name says it holds one."""
    # Names are the caller's: only short ones are cached, or 1,024 long ones would all be kept.
    return _is_secret_name(name) if len(name) <= 64 else _secret_name(name)


@functools.lru_cache(maxsize=1024)  # header names repeat on every request
def _is_secret_name(name: str) -> bool:
    return _secret_name(name)


def _secret_name(name: str) -> bool:
    return name in SECRET_HEADERS or any(word in name for word in _SECRET_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if is_secret_header(name) else value for name, value in headers.items()}
