"""Exact-match response cache for unified endpoints (config ``cache: {"mode": "simple", "max_age": s}``).

The key covers everything that makes two requests interchangeable: provider, credential scope (the
stored slug, or a hash of the caller's own provider key), the gateway key (unless the operator shares
the cache across keys), path and the canonical JSON body (sorted keys; ``stream`` excluded since streamed
requests are not cached). Portkey's OSS cache keys on the body alone, so two tenants share entries
(research/portkey.md §9.3); ours never does that by default. Only complete 2xx JSON answers are stored.
In-process LRU bounded by bytes; with ``redis_url`` set, the entries live in Redis instead, shared by
every worker of every node, each expiring after its ``max_age`` (Redis's own memory policy bounds the
whole; the per-entry bound stays). An entry there is a 4-byte length, a JSON head (status, headers, time
stored) and the body. Redis away: a lookup is a miss and nothing is stored, so requests still go to the
provider (``/health`` says degraded).
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from ..store.redis import RedisUnavailable
from ..store.redis_cache import RedisEntries

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
    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_entry_bytes: int = 1024 * 1024,
                 shared: RedisEntries | None = None) -> None:  # fmt: skip
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._shared = shared
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str, max_age: float | None) -> CachedResponse | None:
        if self._shared is not None:
            return await self._get_shared(key, max_age)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if _expired(entry, max_age):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                  max_age: float | None = None) -> None:  # fmt: skip
        if len(body) > self.max_entry_bytes:
            return
        kept = tuple((k, v) for k, v in headers if not k.lower().startswith(b"x-portkey-") and k.lower() != b"content-length")
        entry = CachedResponse(status, kept, body, time.time())
        if self._shared is not None:
            await self._put_shared(key, entry, max_age or DEFAULT_MAX_AGE)
            return
        self._drop(key)
        self._entries[key] = entry
        self._bytes += len(body)
        while self._bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    async def _get_shared(self, key: str, max_age: float | None) -> CachedResponse | None:
        assert self._shared is not None
        try:
            blob = await self._shared.get(key)
        except RedisUnavailable:
            return None  # bypassed: the provider answers
        entry = _decoded(blob) if blob is not None else None
        return entry if entry is not None and not _expired(entry, max_age) else None

    async def _put_shared(self, key: str, entry: CachedResponse, ttl: float) -> None:
        assert self._shared is not None
        head = orjson.dumps([entry.status, [[k.decode("latin-1"), v.decode("latin-1")] for k, v in entry.headers],
                             entry.stored_at])
        try:
            await self._shared.put(key, _LENGTH.pack(len(head)) + head + entry.body, ttl)
        except RedisUnavailable:
            pass  # not cached this time

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)


_LENGTH = struct.Struct(">I")


def _expired(entry: CachedResponse, max_age: float | None) -> bool:
    """A request may ask for a shorter max age than the one the entry was stored with."""
    return time.time() - entry.stored_at > (max_age or DEFAULT_MAX_AGE)


def _decoded(blob: bytes) -> CachedResponse | None:
    """An entry read from Redis; None for one this code cannot read (another version wrote it)."""
    try:
        (length,) = _LENGTH.unpack_from(blob)
        status, headers, stored_at = orjson.loads(blob[4 : 4 + length])
        pairs = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
        return CachedResponse(int(status), pairs, blob[4 + length :], float(stored_at))
    except (struct.error, ValueError, TypeError):
        return None
