"""Response-cache entries on Redis, shared by every node (``redis_url``): bytes under a key, with a TTL.

What an entry holds and when it may be served is the cache's business (``gateway/cache.py``); this only
stores the bytes. Redis away: a read is a miss and a write is dropped (``RedisUnavailable`` raised, the
cache decides), so a request is served from the provider rather than failed.
"""

from __future__ import annotations

import math

from .redis import RedisLink


class RedisEntries:
    def __init__(self, link: RedisLink) -> None:
        self.link = link

    async def get(self, key: str) -> bytes | None:
        name = self.link.key("cache", key)
        return await self.link.call(lambda: self.link.aio.get(name))

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        name = self.link.key("cache", key)
        await self.link.call(lambda: self.link.aio.set(name, value, ex=max(1, math.ceil(ttl))))
