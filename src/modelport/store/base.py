"""The ``Store`` protocol and the records it hands out.

The store holds gateway API keys, stored providers (Portkey's virtual keys, integrations and
providers, in one table), saved configs, and which key created each object on a shared provider
account (Replicate predictions, trainings, files: ``record_owner``/``owners_of``). SQLite is the embedded implementation (``sqlite.py``); a
PostgreSQL one implements the same protocol. Reads are small and synchronous so the hot path can call
them directly behind its caches; ``data_version()`` tells it when to drop those caches.

Conventions: ``get_*`` returns ``None`` when nothing matches; changes raise ``NotFound``, ``Conflict``
or ``ValueError``. List calls page with an opaque cursor (``Page.next_cursor``). Update calls take
only the fields to change; a field left at ``UNCHANGED`` keeps its value, ``None`` clears it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Hashable,
    Literal,
    Mapping,
    Protocol,
    Sequence,
    TypeVar,
)

from ..providers.records import WebhookRelayRow
from .responses import ResponseStore

if TYPE_CHECKING:
    from ..vault import Vault


class StoreError(Exception):
    """Base of the store's errors."""


class NotFound(StoreError):
    """No record has that id or slug."""


class Conflict(StoreError):
    """The change clashes with existing state (a taken slug, a record others depend on, a revoked key)."""


class StoreUnavailable(StoreError):
    """The store cannot answer: locked past its wait, its server unreachable, its URL malformed, out of
    space, or its schema newer than this code. Nothing was changed; the same call may succeed later. The
    message is one line a person can act on (a node prints it and refuses to start; the log writer
    spills and retries)."""


class StoreMissing(StoreError):
    """There is no store where the settings point (only ``modelport serve`` creates one)."""


class RecordRefused(StoreError):
    """The store refused a value of one record (an integer beyond its range, bytes it cannot hold).
    The rest of the batch is not at fault: the log writer stores the record degraded instead."""


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
"""Default of every ``update_*`` argument: leave this field as it is."""

SCOPES: tuple[str, ...] = (
    "inference",
    "admin",
    "keys.read",
    "keys.write",
    "providers.read",
    "providers.write",
    "configs.read",
    "configs.write",
    "logs.read",
    "logs.write",
)
"""Scopes a gateway API key may hold. ``admin`` implies every other scope."""

ProviderKind = Literal["virtual-key", "integration", "provider"]
PROVIDER_KINDS: tuple[str, ...] = ("virtual-key", "integration", "provider")
CONFIG_STATUSES: tuple[str, ...] = ("active", "archived")

# Slugs appear in headers (`@slug`) and URLs, so keep them to URL- and header-safe characters.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A gateway API key. The plaintext is never stored; ``key_hash`` is its SHA-256."""

    id: str
    name: str
    prefix: str
    key_hash: str = field(repr=False)
    scopes: tuple[str, ...]
    allowed_providers: tuple[str, ...]  # provider ids ("replicate") and stored slugs ("@team-a"); empty = all
    metadata: Mapping[str, Any]  # defaults merged into each request's metadata
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None
    log_bodies: bool = True  # False: this key's requests are logged without their bodies
    rate_limits: Any = None  # stored as given (Portkey RateLimits); enforced by gateway/limits.py
    usage_limits: Any = None  # stored as given (Portkey UsageLimits); enforced by gateway/budgets.py
    usage_reset_at: datetime | None = None  # the last reset_usage; a budget's periods start here

    @property
    def usage_anchor(self) -> datetime:
        return self.usage_reset_at or self.created_at

    def is_active(self, now: datetime | None = None) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > (now or utc_now())

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def allows_target(self, target: str) -> bool:
        """``target`` is a built-in provider id (``replicate``) or a stored slug written ``@slug``."""
        return not self.allowed_providers or target in self.allowed_providers


class SecretSetting(str):
    """A provider setting the store seals with the vault instead of storing it (``Setting.secret``: an
    AWS secret access key, a service-account JSON). The control plane's rules mark them."""

    __slots__ = ()


class SealedSetting(str):
    """A sealed setting as a stored record shows it: the string is its masked hint (what a listing, a
    log or ``repr`` prints); ``ciphertext`` is kept so that an update that leaves it alone keeps it sealed.
    Only ``resolve_provider`` opens it, into the plain value."""

    ciphertext: str

    def __new__(cls, hint: str, ciphertext: str = "") -> "SealedSetting":  # "": copy and pickle set it after
        sealed = super().__new__(cls, hint)
        sealed.ciphertext = ciphertext
        return sealed


@dataclass(frozen=True, slots=True)
class StoredProvider:
    """A stored provider credential as the control plane sees it: never the secret, only a hint."""

    slug: str
    kind: str  # one of PROVIDER_KINDS
    name: str
    provider: str  # the provider id, e.g. "replicate"
    secret_hint: str | None  # e.g. "r8_t…oken"; None when no secret is stored
    custom_host: str | None
    settings: Mapping[str, Any]  # provider-specific: Azure resource_name, ...; a secret one as SealedSetting (its hint)
    allowed_models: tuple[str, ...]  # empty = all
    note: str | None
    integration_slug: str | None  # a "provider" may inherit secret and settings from an "integration"
    usage_limits: Any  # stored as given (Portkey UsageLimits)
    rate_limits: Any  # stored as given (Portkey RateLimits)
    created_at: datetime
    updated_at: datetime
    usage_reset_at: datetime | None = None

    @property
    def usage_anchor(self) -> datetime:
        return self.usage_reset_at or self.created_at

    @property
    def has_secret(self) -> bool:
        return self.secret_hint is not None


@dataclass(frozen=True, slots=True)
class ResolvedProvider:
    """What the hot path needs to call upstream with a stored provider: the effective, decrypted view.

    A "provider" that points at an "integration" inherits what it does not set itself: provider id,
    secret, custom host and each setting. Its model allow-list is narrowed by the integration's, never
    widened (an integration's list is the admin's ceiling for everything built on it).
    """

    slug: str
    kind: str
    name: str
    provider: str
    secret: str | None = field(repr=False)
    custom_host: str | None
    settings: Mapping[str, Any]
    allowed_models: frozenset[str] | None  # None = every model
    usage_limits: Any
    rate_limits: Any
    integration_slug: str | None
    usage_anchor: datetime | None = None  # the last reset_usage, or when the record was made

    def allows_model(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


@dataclass(frozen=True, slots=True)
class Config:
    """A saved gateway config (routing, retries, cache...), referenced as ``x-portkey-config: <id or slug>``."""

    id: str  # "pc-..."
    slug: str
    name: str
    config: Mapping[str, Any]
    is_default: bool
    status: str  # one of CONFIG_STATUSES
    created_at: datetime
    updated_at: datetime


class Store(ResponseStore, Protocol):
    """Keys, providers, configs and object owners, and the stored Responses (``ResponseStore``,
    responses.py). Thread-safe; every method is synchronous and short."""

    vault: "Vault"  # seals provider secrets; ``Vault.rotate(new_key, store)`` re-seals them

    def close(self) -> None: ...

    def data_version(self) -> Hashable:
        """A value that changes whenever keys, providers or configs change, in any process.

        Cheap enough to call on every request; caches of store records are valid while it holds still.
        """
        ...

    def outage(self) -> str | None:
        """Why the store cannot be reached now and what the gateway does meanwhile (for ``/health``), or
        None. Cheap: the last known state, no round trip."""
        ...

    # -- gateway API keys ------------------------------------------------------------------------
    def create_api_key(
        self,
        name: str,
        *,
        scopes: Sequence[str] = ("inference",),
        allowed_providers: Sequence[str] = (),
        expires_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        token: str | None = None,
        log_bodies: bool = True,
        rate_limits: Any = None,
        usage_limits: Any = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the plaintext, which is shown this once.

        ``token`` imports a plaintext chosen elsewhere (the admin key from ``MODELPORT_ADMIN_KEY``).
        """
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None: ...

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    def list_api_keys(self, *, limit: int = 100, cursor: str | None = None) -> Page[ApiKey]: ...

    def update_api_key(
        self,
        key_id: str,
        *,
        name: Any = UNCHANGED,
        scopes: Any = UNCHANGED,
        allowed_providers: Any = UNCHANGED,
        expires_at: Any = UNCHANGED,
        metadata: Any = UNCHANGED,
        log_bodies: Any = UNCHANGED,
        rate_limits: Any = UNCHANGED,
        usage_limits: Any = UNCHANGED,
        reset_usage: bool = False,
    ) -> ApiKey:
        """``reset_usage`` starts the key's budget afresh (its rate-limit windows are untouched)."""
        ...

    def rotate_api_key(self, key_id: str) -> tuple[ApiKey, str]:
        """Give the key a new secret (same id, scopes, limits); the old secret stops working at once."""
        ...

    def revoke_api_key(self, key_id: str) -> ApiKey: ...

    def delete_api_key(self, key_id: str) -> None: ...

    # -- objects created on shared provider accounts (providers/replicate/isolation.py) -------------
    def record_owner(self, slug: str, object_id: str, kind: str, key_id: str) -> None:
        """Note that ``key_id`` created ``object_id`` (a ``kind`` such as "prediction") on the account of
        ``@slug``. The first owner stays: a later write for the same id changes nothing."""
        ...

    def record_owners(self, owners: Sequence[tuple[str, str, str, str]]) -> None:
        """``record_owner`` for each ``(slug, object_id, kind, key_id)``, in one transaction."""
        ...

    def owners_of(self, slug: str, object_ids: Sequence[str]) -> dict[str, str]:
        """``{object id: owning key id}`` for the ids of ``object_ids`` created through the gateway on ``@slug``."""
        ...

    # -- the webhook relay (providers/replicate/webhooks.py) ---------------------------------------
    def record_webhook(self, slug: str, object_id: str, key_id: str, url: str, events: Sequence[str]) -> None:
        """Note where the caller (``key_id``) of ``object_id`` on ``@slug`` wants its ``events``. The
        first write stays."""
        ...

    def webhook_of(self, slug: str, object_id: str) -> WebhookRelayRow | None:
        """Where the caller of ``object_id`` wants its events, if it asked for any."""
        ...

    def first_receipt(self, slug: str, webhook_id: str, forget_before_ms: int) -> bool:
        """True the first time a webhook id arrives for ``@slug``, False for a replay; receipts older
        than ``forget_before_ms`` are dropped on the way (their timestamps are refused anyway)."""
        ...

    # -- gateway API keys, continued ---------------------------------------------------------------
    def touch_api_keys(self, last_used: Mapping[str, datetime]) -> None:
        """Record when keys were last used (batched, off the hot path); never moves a time backwards."""
        ...

    # -- stored providers ------------------------------------------------------------------------
    def create_provider(
        self,
        slug: str,
        *,
        kind: str = "provider",
        provider: str | None = None,
        name: str | None = None,
        secret: str | None = None,
        custom_host: str | None = None,
        settings: Mapping[str, Any] | None = None,
        allowed_models: Sequence[str] = (),
        note: str | None = None,
        integration_slug: str | None = None,
        usage_limits: Any = None,
        rate_limits: Any = None,
    ) -> StoredProvider: ...

    def get_provider(self, slug: str) -> StoredProvider | None: ...

    def list_providers(
        self, *, kind: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[StoredProvider]: ...

    def update_provider(
        self,
        slug: str,
        *,
        name: Any = UNCHANGED,
        secret: Any = UNCHANGED,
        custom_host: Any = UNCHANGED,
        settings: Any = UNCHANGED,
        allowed_models: Any = UNCHANGED,
        note: Any = UNCHANGED,
        integration_slug: Any = UNCHANGED,
        usage_limits: Any = UNCHANGED,
        rate_limits: Any = UNCHANGED,
        reset_usage: bool = False,
    ) -> StoredProvider: ...

    def delete_provider(self, slug: str) -> None: ...

    def resolve_provider(self, slug: str) -> ResolvedProvider | None:
        """The effective provider for ``@slug`` with its secret decrypted (for the hot path only)."""
        ...

    def reencrypt_secrets(self, vault: "Vault") -> int:
        """Re-seal every stored secret with ``vault``'s current key, in one transaction."""
        ...

    # -- saved configs ---------------------------------------------------------------------------
    def create_config(
        self, name: str, config: Mapping[str, Any], *, slug: str | None = None, is_default: bool = False
    ) -> Config: ...

    def get_config(self, ref: str) -> Config | None:
        """By id (``pc-...``) or slug."""
        ...

    def get_default_config(self) -> Config | None: ...

    def list_configs(self, *, limit: int = 100, cursor: str | None = None) -> Page[Config]: ...

    def update_config(
        self,
        ref: str,
        *,
        name: Any = UNCHANGED,
        config: Any = UNCHANGED,
        status: Any = UNCHANGED,
        is_default: Any = UNCHANGED,
    ) -> Config: ...

    def delete_config(self, ref: str) -> None: ...


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
