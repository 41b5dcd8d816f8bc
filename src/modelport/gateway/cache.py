"""Exact-match response cache for unified endpoints (config ``cache: {"mode": "simple", "max_age": s}``).

The key covers everything that makes two requests interchangeable: provider, credential scope (the
stored slug, or a hash of the caller's own provider key), the gateway key (unless the operator shares
the cache across keys), path and the canonical JSON body (sorted keys; ``stream`` excluded since streamed
requests are not cached). Portkey's OSS cache keys on the body alone, so two tenants share entries
(research/portkey.md §9.3); ours never does that by default. Only complete 2xx JSON answers are stored.
In-process LRU bounded by bytes; a shared (Redis) backend fits behind the same two methods.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_MAX_AGE = 7 * 24 * 3600.0  # Portkey's documented default


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    stored_at: float

    def release(self) -> None:  # same surface as an upstream response for Outcome.release()
        pass


def cache_key(*, provider: str, credential: str, key_id: str | None, path: str, body: dict[str, Any],
              namespace: str | None = None) -> str:  # fmt: skip
    canonical = orjson.dumps({k: v for k, v in body.items() if k != "stream"}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256()
    for part in (provider, credential, key_id or "", path, namespace or ""):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(canonical)
    return digest.hexdigest()


def credential_scope(slug: str | None, api_key: str | None) -> str:
    if slug:
        return "@" + slug
    return "key:" + hashlib.sha256((api_key or "").encode()).hexdigest()[:32]


class ResponseCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_entry_bytes: int = 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0

    def get(self, key: str, max_age: float | None) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.time() - entry.stored_at > (max_age or DEFAULT_MAX_AGE):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if len(body) > self.max_entry_bytes:
            return
        self._drop(key)
        kept = tuple((k, v) for k, v in headers if not k.lower().startswith(b"x-portkey-") and k.lower() != b"content-length")
        self._entries[key] = CachedResponse(status, kept, body, time.time())
        self._bytes += len(body)
        while self._bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)
