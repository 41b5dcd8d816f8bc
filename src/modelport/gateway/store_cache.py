"""A read-through cache of store lookups that empties itself whenever the store's data changes.

``store.data_version()`` moves on every commit by any process (SQLite ``PRAGMA data_version`` plus
this process's own writes), so a revoked key or an edited provider is seen on the next request.
Checking the version costs one tiny pragma per request instead of one query per lookup.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Hashable, Protocol, TypeVar

V = TypeVar("V")


class Versioned(Protocol):
    def data_version(self) -> int: ...


class StoreCache(Generic[V]):
    def __init__(self, store: Versioned, load: Callable[[Any], V], max_entries: int = 10_000) -> None:
        self._store = store
        self._load = load
        self._max = max_entries
        self._entries: dict[Hashable, V] = {}
        self._version = -1

    def get(self, key: Hashable) -> V:
        version = self._store.data_version()
        if version != self._version:
            self._entries.clear()
            self._version = version
        try:
            return self._entries[key]
        except KeyError:
            pass
        value = self._load(key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = value
        return value
