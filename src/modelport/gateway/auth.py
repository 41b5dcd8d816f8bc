"""Gateway API key → ``Principal``.

Keys are checked by their SHA-256 (only hashes are stored); the lookup is cached in-process and the
cache is dropped whenever the store's data version moves, so a key revoked by any worker process or
by the CLI stops working on the very next request everywhere (the store's change beacon).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Hashable, Protocol

from ..keys import hash_api_key
from ..errors import Forbidden, Unauthorized
from ..usage.limits import Budget, key_budget, key_token_limits
from .limits import Rule, key_rules
from .store_cache import StoreCache, StoreVersion


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str | None
    name: str
    scopes: frozenset[str] = frozenset({"inference"})
    providers: frozenset[str] = frozenset()  # allowed provider ids / slugs; empty means all
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    log_bodies: bool = True
    rate_limits: tuple[Rule, ...] = ()
    budget: Budget | None = None
    token_limits: tuple[Budget, ...] = ()

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def may_use(self, provider: str, slug: str | None) -> bool:
        """A provider id ("replicate") allows that provider with the caller's own credential; a stored
        credential needs its own "@slug": an id does not unlock every stored provider of its kind."""
        if not self.providers or "*" in self.providers:
            return True
        return f"@{slug}" in self.providers if slug is not None else provider in self.providers


ANONYMOUS = Principal(key_id=None, name="anonymous")
MAX_CACHED_TOKEN = 256


class KeyStore(Protocol):
    def data_version(self) -> Hashable: ...

    def get_api_key_by_hash(self, key_hash: str) -> Any: ...


class Authenticator:
    def __init__(self, store: KeyStore, require_key: bool, version: StoreVersion | None = None) -> None:
        self._require_key = require_key
        self.version = version or StoreVersion(store)
        # Keyed by the token, hashed only on a miss: with OpenSSL 3 every hashlib.sha256() fetches the
        # algorithm by name (~150k instructions, measured with callgrind) — as much as the rest of our
        # request path. The cache lives in process memory, which sees the token on every request anyway.
        # Rejected tokens are cached too, so a token longer than any key (46 characters; an imported
        # admin key may be longer) is never kept: 100 distinct 1 MB tokens grew a worker by 104 MB.
        self._principals: StoreCache[Principal | None] = StoreCache(
            self.version, lambda t: _load_principal(store, hash_api_key(t)), max_key_bytes=MAX_CACHED_TOKEN)
        # Ids of keys that authenticated since the last ``take_used()``: a set add per request; the
        # times are written to the store in batches, off the request path (server/app.py).
        self._used: set[str] = set()

    def authenticate(self, token: str | None, scope: str = "inference", own_scope: str | None = None) -> Principal:
        """The key's principal, if it holds ``scope`` (or ``own_scope``, which a route given one lets act
        on the key's own records: the route checks which the caller has)."""
        self.version.refresh()  # once per request: every cache below compares against this snapshot
        if not token:
            if self._require_key:
                raise Unauthorized(
                    "a gateway API key is required: send it in x-portkey-api-key "
                    "(or as the Bearer token, if it starts with mp-)"
                )
            return ANONYMOUS
        principal = self._principals.get(token, size=len(token))
        if principal is None:
            raise Unauthorized("the gateway API key is invalid, revoked or expired")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise Unauthorized("the gateway API key has expired")
        if not principal.can(scope) and not (own_scope and principal.can(own_scope)):
            alternative = f" (or '{own_scope}', for its own requests)" if own_scope else ""
            raise Forbidden(f"this gateway API key lacks the '{scope}' scope{alternative}")
        self._used.add(principal.key_id)  # type: ignore[arg-type]  # every stored key has an id
        return principal

    def take_used(self) -> set[str]:
        """The ids of keys used since the last call (and forget them)."""
        used, self._used = self._used, set()
        return used


def _load_principal(store: KeyStore, key_hash: str) -> Principal | None:
    record = store.get_api_key_by_hash(key_hash)
    return principal_from_record(record) if record is not None else None


def principal_from_record(record: Any) -> Principal | None:
    if getattr(record, "revoked_at", None):
        return None
    return Principal(
        key_id=record.id,
        name=record.name,
        scopes=frozenset(record.scopes or ("inference",)),
        providers=frozenset(record.allowed_providers or ()),
        metadata=dict(getattr(record, "metadata", None) or {}),
        expires_at=_epoch(getattr(record, "expires_at", None)),
        log_bodies=record.log_bodies,
        rate_limits=key_rules(record.id, record.name, getattr(record, "rate_limits", None)),
        budget=key_budget(record.id, record.name, getattr(record, "usage_limits", None), getattr(record, "usage_anchor", None)),
        token_limits=key_token_limits(record.id, record.name, getattr(record, "rate_limits", None)),
    )


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
