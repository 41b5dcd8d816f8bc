"""A read-through cache of store lookups that empties itself whenever the store's data changes.

``store.data_version()`` moves whenever keys, providers or configs change in any process (the store's
change beacon), so a revoked key or an edited provider is seen on the next request. Checking it costs
an eight-byte read from shared memory per request instead of one query per lookup.
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
    def __init__(self, version: StoreVersion, load: Callable[[Any], V], max_entries: int = 10_000) -> None:
        self._version_source = version
        self._load = load
        self._max = max_entries
        self._entries: dict[Hashable, V] = {}
        self._version: Hashable = None

    def get(self, key: Hashable, build: Callable[[], V] | None = None) -> V:
        """The value for ``key``, loaded (or built by ``build``) on a miss. Exceptions are not cached."""
        version = self._version_source.value
        if version != self._version:
            self._entries.clear()
            self._version = version
        try:
            return self._entries[key]
        except KeyError:
            pass
        value = build() if build is not None else self._load(key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = value
        return value
