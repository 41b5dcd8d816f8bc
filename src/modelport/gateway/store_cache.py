"""A read-through cache of store lookups that empties itself whenever the store's data changes.

``store.data_version()`` moves whenever keys, providers or configs change in any process (the store's
change beacon), so a revoked key or an edited provider is seen on the next request. Checking it costs
an eight-byte read from shared memory per request instead of one query per lookup.

Keys are often what callers send (a gateway key, a config id, an inline config), so every cache is
bounded in entries and in bytes: a key larger than ``max_key_bytes`` is never kept (its value is
loaded again next time), and the keys kept add up to at most ``max_bytes``. Once either bound is
reached the cache starts over, as it does when the store changes. Without the bounds, 100 distinct
1 MB rejected keys grew a worker by 104 MB and 100 inline configs of 1 MB by 226 MB.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Hashable, Protocol, TypeVar

V = TypeVar("V")


class Versioned(Protocol):
    def data_version(self) -> Hashable: ...


class StoreVersion:
    """The store's data version, read once per request (by authentication, which every request passes
    first) and shared by every cache: one read per request instead of one per cache."""

    def __init__(self, store: Versioned) -> None:
        self._store = store
        self.value = store.data_version()

    def refresh(self) -> int:
        self.value = self._store.data_version()
        return self.value


class StoreCache(Generic[V]):
    def __init__(self, version: StoreVersion, load: Callable[[Any], V], max_entries: int = 10_000,
                 max_key_bytes: int = 256, max_bytes: int = 1024 * 1024) -> None:
        self._version_source = version
        self._load = load
        self._max = max_entries
        self._max_key_bytes = max_key_bytes
        self._max_bytes = max_bytes
        self._entries: dict[Hashable, V] = {}
        self._bytes = 0
        self._version: Hashable = None

    def get(self, key: Hashable, build: Callable[[], V] | None = None, size: int = 0) -> V:
        """The value for ``key``, loaded (or built by ``build``) on a miss. Exceptions are not cached.
        ``size`` is the key's size in bytes, as the caller measures it (the lengths of its texts)."""
        version = self._version_source.value
        if version != self._version:
            self._clear()
            self._version = version
        try:
            return self._entries[key]
        except KeyError:
            pass
        value = build() if build is not None else self._load(key)
        if size > self._max_key_bytes:
            return value  # not kept: a few such keys would fill the cache
        if len(self._entries) >= self._max or self._bytes + size > self._max_bytes:
            self._clear()
        self._entries[key] = value
        self._bytes += size
        return value

    def _clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
