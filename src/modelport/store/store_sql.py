"""The ``Store`` protocol's SQL, one text for both databases: keys, providers, configs, owners of objects
and the webhook relay, with their row mapping (``rows.py``). Written with ``?`` placeholders, turned
into the driver's style once per statement (psycopg takes ``%s``), as ``ledger_sql.py`` does for the
prediction ledger.

A store supplies its dialect: ``placeholder``; ``_transaction(changes_state)`` and ``_reading()``,
context managers giving something with ``execute(sql, params)`` (whose result has ``fetchone``,
``fetchall`` and ``rowcount``) and ``executemany`` (a sqlite3 connection, a psycopg cursor); the
row locks it takes (PostgreSQL's ``FOR UPDATE``; none on SQLite, whose ``BEGIN IMMEDIATE`` already
holds the database's write lock); the errors its driver raises for a duplicate and for a dangling
foreign key; how it holds a webhook's event names; and ``_lock_default`` for writers of the default
config. What the stores do differently stays in them: where the hot path's reads come from (SQLite's
file, PostgreSQL's replica) and how old ciphertexts are scrubbed after a re-encryption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..keys import generate_api_key
from ..vault import Vault
from ..providers.records import WebhookRelayRow
from .base import UNCHANGED, ApiKey, Config, Conflict, NotFound, Page, StoredProvider
from .responses import ResponsesSQL
from .rows import (
    Row,
    api_key_changes,
    api_key_from_row,
    check_integration,
    config_changes,
    config_from_row,
    new_api_key_values,
    new_config_values,
    new_provider_values,
    now_ms,
    provider_changes,
    seal,
    stored_provider_from_row,
    to_ms,
)

MAX_PAGE = 1000


class StoreSQL(ResponsesSQL):
    """The statements of ``Store`` (and ``ResponseStore``, responses.py) that read and write the database
    the same way on both stores."""

    placeholder = "?"
    for_update = ""  # appended to a SELECT whose rows the transaction will change
    for_share = ""  # appended to a SELECT of a row that must not go before the transaction ends
    duplicate: type[Exception]  # a unique constraint refused the row
    dangling: type[Exception]  # a foreign key refused the row (its target went meanwhile)
    vault: Vault

    def _transaction(self, changes_state: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _events_value(self, events: Sequence[str]) -> Any:
        """A webhook's event names as the store's column holds them."""
        raise NotImplementedError

    def _events_of(self, value: Any) -> tuple[str, ...]:
        raise NotImplementedError

    def _lock_default(self, db: Any) -> None:
        """Queue the writers of the default config (the SQLite write lock already does)."""

    def _sql(self, text: str) -> str:
        return _in_style(text, self.placeholder)

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
        values, token = new_api_key_values(
            name, scopes=scopes, allowed_providers=allowed_providers, expires_at=expires_at, metadata=metadata,
            token=token, log_bodies=log_bodies, rate_limits=rate_limits, usage_limits=usage_limits,
        )  # fmt: skip
        try:
            with self._transaction() as db:
                record = api_key_from_row(self._insert(db, "api_keys", values))
        except self.duplicate:
            raise Conflict("an API key with this secret already exists") from None
        return record, token

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self._reading() as db:
            return self._key_where(db, "id", key_id)

    def list_api_keys(self, *, limit: int = 100, cursor: str | None = None) -> Page[ApiKey]:
        with self._reading() as db:
            rows, next_cursor = self._page(db, "SELECT * FROM api_keys", "id", limit, cursor)
        return Page(tuple(api_key_from_row(row) for row in rows), next_cursor)

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
        changes = api_key_changes(
            name=name, scopes=scopes, allowed_providers=allowed_providers, expires_at=expires_at, metadata=metadata,
            log_bodies=log_bodies, rate_limits=rate_limits, usage_limits=usage_limits, reset_usage=reset_usage,
        )  # fmt: skip
        with self._transaction() as db:
            return api_key_from_row(self._update(db, "api_keys", "id", key_id, changes, "API key"))

    def rotate_api_key(self, key_id: str) -> tuple[ApiKey, str]:
        token, prefix, key_hash = generate_api_key()
        with self._transaction() as db:
            current = db.execute(self._sql(f"SELECT revoked_at FROM api_keys WHERE id = ?{self.for_update}"),
                                 (key_id,)).fetchone()  # fmt: skip
            if current is None:
                raise NotFound(f"no API key {key_id}")
            if current["revoked_at"] is not None:
                raise Conflict(f"API key {key_id} is revoked; create a new key instead")
            row = self._update(db, "api_keys", "id", key_id, {"prefix": prefix, "key_hash": key_hash}, "API key")
        return api_key_from_row(row), token

    def revoke_api_key(self, key_id: str) -> ApiKey:
        with self._transaction() as db:
            now = now_ms()
            row = db.execute(
                self._sql("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? WHERE id = ?"
                          " RETURNING *"),
                (now, now, key_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}")
        return api_key_from_row(row)

    def delete_api_key(self, key_id: str) -> None:
        with self._transaction() as db:
            if db.execute(self._sql("DELETE FROM api_keys WHERE id = ?"), (key_id,)).rowcount == 0:
                raise NotFound(f"no API key {key_id}")

    def touch_api_keys(self, last_used: Mapping[str, datetime]) -> None:
        rows = [(to_ms(at), key_id, to_ms(at)) for key_id, at in last_used.items()]
        if not rows:
            return
        # last_used_at is informational: it must not invalidate every worker's key cache (no change
        # signalled; on PostgreSQL the trigger skips it too).
        with self._transaction(changes_state=False) as db:
            db.executemany(
                self._sql("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)"),
                rows,
            )

    def _key_where(self, db: Any, column: str, value: str) -> ApiKey | None:
        row = db.execute(self._sql(f"SELECT * FROM api_keys WHERE {column} = ?"), (value,)).fetchone()
        return api_key_from_row(row) if row is not None else None

    # -- objects created on shared provider accounts ----------------------------------------------
    def record_owner(self, slug: str, object_id: str, kind: str, key_id: str) -> None:
        self.record_owners([(slug, object_id, kind, key_id)])

    def record_owners(self, owners: Sequence[tuple[str, str, str, str]]) -> None:
        # Written on every create through a shared account: like log writes, it must not signal a
        # change (that would empty every worker's key and provider caches).
        created = now_ms()
        with self._transaction(changes_state=False) as db:
            db.executemany(
                self._sql("INSERT INTO owned_objects (slug, id, kind, key_id, created_at) VALUES (?, ?, ?, ?, ?)"
                          " ON CONFLICT (slug, id) DO NOTHING"),
                [(*owner, created) for owner in owners],
            )

    def owners_of(self, slug: str, object_ids: Sequence[str]) -> dict[str, str]:
        # Not cached (one row per object ever created): callers run it off the event loop.
        if not object_ids:
            return {}
        marks = ", ".join("?" * len(object_ids))
        with self._reading() as db:
            rows = db.execute(self._sql(f"SELECT id, key_id FROM owned_objects WHERE slug = ? AND id IN ({marks})"),
                              (slug, *object_ids)).fetchall()  # fmt: skip
        return {row["id"]: row["key_id"] for row in rows}

    # -- the webhook relay ------------------------------------------------------------------------
    def record_webhook(self, slug: str, object_id: str, key_id: str, url: str, events: Sequence[str]) -> None:
        with self._transaction(changes_state=False) as db:  # per create, like record_owner: no change signalled
            db.execute(
                self._sql("INSERT INTO webhook_relays (slug, id, key_id, url, events, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                          " ON CONFLICT (slug, id) DO NOTHING"),
                (slug, object_id, key_id, url, self._events_value(events), now_ms()),
            )

    def webhook_of(self, slug: str, object_id: str) -> WebhookRelayRow | None:
        with self._reading() as db:
            row = db.execute(self._sql("SELECT key_id, url, events FROM webhook_relays WHERE slug = ? AND id = ?"),
                             (slug, object_id)).fetchone()  # fmt: skip
        return WebhookRelayRow(row["key_id"], row["url"], self._events_of(row["events"])) if row is not None else None

    def first_receipt(self, slug: str, webhook_id: str, forget_before_ms: int) -> bool:
        with self._transaction(changes_state=False) as db:
            db.execute(self._sql("DELETE FROM webhook_receipts WHERE received_at < ?"), (forget_before_ms,))
            inserted = db.execute(
                self._sql("INSERT INTO webhook_receipts (slug, webhook_id, received_at) VALUES (?, ?, ?)"
                          " ON CONFLICT (slug, webhook_id) DO NOTHING"),
                (slug, webhook_id, now_ms()),
            )
            return inserted.rowcount == 1

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
    ) -> StoredProvider:
        values = new_provider_values(
            slug, kind=kind, name=name, custom_host=custom_host, settings=settings, allowed_models=allowed_models,
            note=note, integration_slug=integration_slug, usage_limits=usage_limits, rate_limits=rate_limits,
            vault=self.vault,
        )  # fmt: skip
        try:
            with self._transaction() as db:
                values["provider"] = self._check_integration(db, kind, provider, integration_slug)
                values["secret_ciphertext"], values["secret_hint"] = seal(self.vault, slug, secret)
                row = self._insert(db, "providers", values)
        except self.duplicate:
            raise Conflict(f"the slug {slug!r} is already taken") from None
        except self.dangling:  # its integration was deleted meanwhile
            raise NotFound(f"no integration {integration_slug!r}") from None
        return stored_provider_from_row(row)

    def list_providers(
        self, *, kind: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[StoredProvider]:
        query, params = "SELECT * FROM providers", ()
        if kind is not None:
            query, params = "SELECT * FROM providers WHERE kind = ?", (kind,)
        with self._reading() as db:
            rows, next_cursor = self._page(db, query, "slug", limit, cursor, params)
        return Page(tuple(stored_provider_from_row(row) for row in rows), next_cursor)

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
    ) -> StoredProvider:
        changes = provider_changes(
            name=name, custom_host=custom_host, settings=settings, allowed_models=allowed_models, note=note,
            usage_limits=usage_limits, rate_limits=rate_limits, reset_usage=reset_usage, vault=self.vault, slug=slug,
        )  # fmt: skip
        try:
            with self._transaction() as db:
                current = self._provider_row(db, slug, lock=True)
                if current is None:
                    raise NotFound(f"no stored provider {slug!r}")
                if integration_slug is not UNCHANGED:
                    self._check_integration(db, current["kind"], current["provider"], integration_slug)
                    changes["integration_slug"] = integration_slug
                if secret is not UNCHANGED:
                    changes["secret_ciphertext"], changes["secret_hint"] = seal(self.vault, slug, secret)
                row = self._update(db, "providers", "slug", slug, changes, "stored provider")
        except self.dangling:
            raise NotFound(f"no integration {integration_slug!r}") from None
        return stored_provider_from_row(row)

    def delete_provider(self, slug: str) -> None:
        try:
            with self._transaction() as db:
                users = [row["slug"] for row in db.execute(
                    self._sql("SELECT slug FROM providers WHERE integration_slug = ? ORDER BY slug"), (slug,))]  # fmt: skip
                if users:
                    raise Conflict(f"integration {slug!r} is used by {', '.join(users)}; remove those first")
                if db.execute(self._sql("DELETE FROM providers WHERE slug = ?"), (slug,)).rowcount == 0:
                    raise NotFound(f"no stored provider {slug!r}")
        except self.dangling:  # a provider started using it meanwhile
            raise Conflict(f"integration {slug!r} is in use; remove the providers using it first") from None

    def _provider_row(self, db: Any, slug: str, lock: bool = False) -> Row | None:
        return db.execute(self._sql("SELECT * FROM providers WHERE slug = ?" + (self.for_update if lock else "")),
                          (slug,)).fetchone()  # fmt: skip

    def _check_integration(self, db: Any, kind: str, provider: str | None, integration_slug: str | None) -> str:
        """Validate an integration link; return the provider id (inherited from the integration if unset)."""
        integration = None
        if integration_slug is not None:  # held until commit: it cannot be deleted under the new link
            integration = db.execute(self._sql(f"SELECT * FROM providers WHERE slug = ?{self.for_share}"),
                                     (integration_slug,)).fetchone()  # fmt: skip
        return check_integration(kind, provider, integration_slug, integration)

    # -- saved configs ---------------------------------------------------------------------------
    def create_config(
        self, name: str, config: Mapping[str, Any], *, slug: str | None = None, is_default: bool = False
    ) -> Config:
        values = new_config_values(name, config, slug=slug, is_default=is_default)
        try:
            with self._transaction() as db:
                if is_default:
                    self._lock_default(db)
                    db.execute("UPDATE configs SET is_default = FALSE WHERE is_default")
                row = self._insert(db, "configs", values)
        except self.duplicate:
            raise Conflict(f"the config slug {values['slug']!r} is already taken") from None
        return config_from_row(row)

    def list_configs(self, *, limit: int = 100, cursor: str | None = None) -> Page[Config]:
        with self._reading() as db:
            rows, next_cursor = self._page(db, "SELECT * FROM configs", "id", limit, cursor)
        return Page(tuple(config_from_row(row) for row in rows), next_cursor)

    def update_config(
        self,
        ref: str,
        *,
        name: Any = UNCHANGED,
        config: Any = UNCHANGED,
        status: Any = UNCHANGED,
        is_default: Any = UNCHANGED,
    ) -> Config:
        changes = config_changes(name=name, config=config, status=status, is_default=is_default)
        with self._transaction() as db:
            if changes.get("is_default"):
                self._lock_default(db)  # before any row lock: writers of the default queue here first
            current = self._config_row(db, ref, lock=True)
            if current is None:
                raise NotFound(f"no config {ref!r}")
            if changes.get("is_default"):
                db.execute(self._sql("UPDATE configs SET is_default = FALSE WHERE is_default AND id <> ?"),
                           (current["id"],))  # fmt: skip
            row = self._update(db, "configs", "id", current["id"], changes, "config")
        return config_from_row(row)

    def delete_config(self, ref: str) -> None:
        with self._transaction() as db:
            if db.execute(self._sql("DELETE FROM configs WHERE id = ? OR slug = ?"), (ref, ref)).rowcount == 0:
                raise NotFound(f"no config {ref!r}")

    def _config_row(self, db: Any, ref: str, lock: bool = False) -> Row | None:
        """The config whose id is ``ref``, else the one whose slug is."""
        return db.execute(
            self._sql("SELECT * FROM configs WHERE id = ? OR slug = ? ORDER BY id = ? DESC LIMIT 1"
                      + (self.for_update if lock else "")),
            (ref, ref, ref),
        ).fetchone()

    # -- rows ------------------------------------------------------------------------------------
    def _page(self, db: Any, query: str, order_column: str, limit: int, after: str | None,
              params: tuple[Any, ...] = ()) -> tuple[list[Row], str | None]:  # fmt: skip
        """Keyset paging: rows after ``after`` in ``order_column`` order; the cursor is the last key seen."""
        limit = max(1, min(int(limit), MAX_PAGE))
        if after is not None:
            joiner = " AND " if " WHERE " in query else " WHERE "
            query, params = f"{query}{joiner}{order_column} > ?", (*params, after)
        rows = db.execute(self._sql(f"{query} ORDER BY {order_column} LIMIT ?"), (*params, limit + 1)).fetchall()
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1][order_column]
        return rows, None

    def _insert(self, db: Any, table: str, values: dict[str, Any]) -> Row:
        values = {**values, "created_at": now_ms()}
        values["updated_at"] = values["created_at"]
        columns = ", ".join(values)  # column names come from this package, never from input
        marks = ", ".join("?" * len(values))
        return db.execute(self._sql(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *"),
                          tuple(values.values())).fetchone()  # fmt: skip

    def _update(self, db: Any, table: str, key_column: str, key: str, changes: dict[str, Any], what: str) -> Row:
        changes = {**changes, "updated_at": now_ms()}
        assignments = ", ".join(f"{column} = ?" for column in changes)
        row = db.execute(self._sql(f"UPDATE {table} SET {assignments} WHERE {key_column} = ? RETURNING *"),
                         (*changes.values(), key)).fetchone()  # fmt: skip
        if row is None:
            raise NotFound(f"no {what} {key!r}")
        return row


@lru_cache(maxsize=512)
def _in_style(text: str, placeholder: str) -> str:
    # Statements are this module's text and column names, never input; psycopg's "%" needs no
    # escaping in them (none holds a literal "%").
    return text if placeholder == "?" else text.replace("?", placeholder)

