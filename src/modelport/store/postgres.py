"""The PostgreSQL store (``MODELPORT_DATABASE_URL=postgresql://...``): the ``Store`` protocol for several
nodes sharing one database.

Driver: psycopg 3 with psycopg_pool (bench/pg_drivers.py measures it against asyncpg). The protocol
is synchronous and so is psycopg's main API; its pool is thread-safe, and the log writer, a thread,
can use COPY through it.

The hot path's reads (``get_api_key_by_hash``, ``resolve_provider``, ``get_provider``, ``get_config``,
``get_default_config``) never leave the process: they are served from a ``Replica`` loaded at open and
kept current by the change feed (``pg_replica.py``). Every other call is one short transaction on a
pooled connection: changes (each ends with a sync token, so that this store's own next read sees it),
and the control plane's reads (lists, a key by id with its fresh ``last_used_at``, owners of objects,
webhook rows). Connections run in autocommit; each change is one ``conn.transaction()``.

Differences from SQLite a caller can see: JSON objects come back with their keys in jsonb's order
(shorter keys first), not as written; ``get_api_key_by_hash`` returns ``last_used_at`` as of the key's
last change (the hot path does not read it; ``get_api_key`` reads it fresh); a NUL character in a
text or JSON value is refused with ``ValueError`` (PostgreSQL's text cannot hold it).
"""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..keys import generate_api_key
from ..vault import Vault
from .base import (
    UNCHANGED,
    ApiKey,
    Config,
    Conflict,
    NotFound,
    Page,
    ResolvedProvider,
    StoredProvider,
    StoreUnavailable,
    WebhookRelayRow,
)
from .pg_connect import (
    FEED_APPLICATION_NAME,
    check_database_url,
    connection,
    connection_options,
    describe,
    migrate,
    one_line,
    unreachable,
)
from .pg_migrations import CHANGES_CHANNEL
from .pg_replica import ChangeFeed, Replica, abandon_connection
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
    resolved_provider,
    resealed_settings,
    seal,
    secret_context,
    stored_provider_from_row,
    to_ms,
)

POOL_SIZE = 4  # control-plane calls and background writes only: the hot path reads the replica
POOL_WAIT_SECONDS = 5.0
MAX_PAGE = 1000


class PostgresStore:
    """``Store`` on a PostgreSQL database named by ``url``. ``vault`` seals provider secrets."""

    def __init__(self, url: str, vault: Vault, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.vault = vault
        self._conninfo = check_database_url(url)
        self._pool_size = pool_size
        self._closed = False
        self._pooled: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()  # to abandon after a fork
        with connection(self._conninfo) as conn:
            migrate(conn, url)
        self._replica = Replica()
        self._feed = ChangeFeed(self._replica, self._feed_connection)
        self._pool = self._open_pool()
        try:
            self._feed.start()
        except BaseException as exc:
            self._pool.close()
            if isinstance(exc, psycopg.OperationalError):
                raise unreachable(url, exc) from None
            raise
        _open_stores.add(self)

    # -- connections and transactions ------------------------------------------------------------
    def _feed_connection(self) -> psycopg.Connection:
        # Keepalives: a server that vanished without closing the socket is noticed in ~20 s, not never.
        # psycopg's own error, not StoreUnavailable: the feed retries it.
        return psycopg.connect(self._conninfo, **connection_options(
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=2,
            application_name=FEED_APPLICATION_NAME))  # fmt: skip

    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self._conninfo, min_size=1, max_size=self._pool_size, timeout=POOL_WAIT_SECONDS, num_workers=1,
            kwargs=connection_options(),
            name="modelport-store", open=False, configure=self._pooled.add,
            check=ConnectionPool.check_connection,  # one round trip, so a server restart costs no failed call
        )  # fmt: skip
        pool.open(wait=False)
        return pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the database's failures become the store's errors."""
        if self._closed:
            raise RuntimeError("the store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                f"PostgreSQL at {describe(self._conninfo)} gave no connection within {POOL_WAIT_SECONDS:g} s"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL at {describe(self._conninfo)} failed: {one_line(exc)}") from None
        except psycopg.DataError as exc:
            # e.g. a NUL character, which PostgreSQL's text and jsonb cannot hold (SQLite can)
            raise ValueError(f"the database refused a value: {one_line(exc)}") from None

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            yield cursor

    @contextmanager
    def _transaction(self, changes_state: bool = True) -> Iterator[psycopg.Cursor]:
        """One transaction. ``changes_state``: once committed, this store's replica holds the change
        before the call returns (the sync token, pg_replica.py), and every other store's soon after."""
        ticket = self._feed.ticket() if changes_state else None
        try:
            with self._connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
                yield cursor
                if ticket is not None:
                    cursor.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, self._feed.sync_payload(ticket)))
        except BaseException:
            if ticket is not None:
                self._feed.forget(ticket)
            raise
        if ticket is not None and not self._feed.wait(ticket):
            self._reload_replica()

    def _reload_replica(self) -> None:
        """The feed could not confirm a write (it is reconnecting): reload everything here instead."""
        with self._replica.lock, self._connection() as conn:
            self._replica.load_all(conn)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._feed.stop()
        self._pool.close()

    def _forget_connections_after_fork(self) -> None:
        # The child inherits the parent's sockets: a word written on one (even closing it, libpq sends
        # Terminate) lands in the parent's session. It abandons them and opens its own; the feed's
        # thread did not survive the fork, so it starts again, and reloads everything on connecting.
        for conn in list(self._pooled):
            abandon_connection(conn)
        self._pooled = weakref.WeakSet()
        _ABANDONED_POOLS.append(self._pool)  # kept: its finaliser would join threads the child does not have
        self._replica.lock = threading.Lock()
        if not self._closed:
            self._pool = self._open_pool()
        self._feed.restart_after_fork()

    def data_version(self) -> int:
        # Moves whenever the replica takes a change, from this process or any other node.
        return self._replica.version

    def outage(self) -> str | None:
        if self._feed.listening:
            return None
        return (f"PostgreSQL at {describe(self.url)} is unreachable: keys, providers and configs are served as last "
                "loaded, changes made elsewhere are not seen until it is back, and log records are spilled to disk "
                "and replayed then")

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
            with self._transaction() as cursor:
                record = api_key_from_row(_insert(cursor, "api_keys", values))
        except errors.UniqueViolation:
            raise Conflict("an API key with this secret already exists") from None
        return record, token

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self._cursor() as cursor:
            return _key_where(cursor, "id", key_id)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._replica.key_by_hash(key_hash)

    def list_api_keys(self, *, limit: int = 100, cursor: str | None = None) -> Page[ApiKey]:
        with self._cursor() as db:
            rows, next_cursor = _page(db, "SELECT * FROM api_keys", "id", limit, cursor)
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
        with self._transaction() as cursor:
            return api_key_from_row(_update(cursor, "api_keys", "id", key_id, changes, "API key"))

    def rotate_api_key(self, key_id: str) -> tuple[ApiKey, str]:
        token, prefix, key_hash = generate_api_key()
        with self._transaction() as cursor:
            current = cursor.execute("SELECT revoked_at FROM api_keys WHERE id = %s FOR UPDATE", (key_id,)).fetchone()
            if current is None:
                raise NotFound(f"no API key {key_id}")
            if current["revoked_at"] is not None:
                raise Conflict(f"API key {key_id} is revoked; create a new key instead")
            row = _update(cursor, "api_keys", "id", key_id, {"prefix": prefix, "key_hash": key_hash}, "API key")
        return api_key_from_row(row), token

    def revoke_api_key(self, key_id: str) -> ApiKey:
        with self._transaction() as cursor:
            now = now_ms()
            row = cursor.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, %s), updated_at = %s WHERE id = %s RETURNING *",
                (now, now, key_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no API key {key_id}")
        return api_key_from_row(row)

    def delete_api_key(self, key_id: str) -> None:
        with self._transaction() as cursor:
            if cursor.execute("DELETE FROM api_keys WHERE id = %s", (key_id,)).rowcount == 0:
                raise NotFound(f"no API key {key_id}")

    def touch_api_keys(self, last_used: Mapping[str, datetime]) -> None:
        rows = [(to_ms(at), key_id, to_ms(at)) for key_id, at in last_used.items()]
        if not rows:
            return
        # last_used_at alone sends no change notification (the trigger skips it): caches stay.
        with self._transaction(changes_state=False) as cursor:
            cursor.executemany(
                "UPDATE api_keys SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                rows,
            )

    # -- objects created on shared provider accounts ----------------------------------------------
    def record_owner(self, slug: str, object_id: str, kind: str, key_id: str) -> None:
        self.record_owners([(slug, object_id, kind, key_id)])

    def record_owners(self, owners: Sequence[tuple[str, str, str, str]]) -> None:
        created = now_ms()
        with self._transaction(changes_state=False) as cursor:
            cursor.executemany(
                "INSERT INTO owned_objects (slug, id, kind, key_id, created_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (slug, id) DO NOTHING",
                [(*owner, created) for owner in owners],
            )

    def owners_of(self, slug: str, object_ids: Sequence[str]) -> dict[str, str]:
        # Not replicated (one row per object ever created): callers run it off the event loop.
        if not object_ids:
            return {}
        with self._cursor() as cursor:
            rows = cursor.execute(
                "SELECT id, key_id FROM owned_objects WHERE slug = %s AND id = ANY(%s)", (slug, list(object_ids))
            ).fetchall()
        return {row["id"]: row["key_id"] for row in rows}

    # -- the webhook relay ------------------------------------------------------------------------
    def record_webhook(self, slug: str, object_id: str, key_id: str, url: str, events: Sequence[str]) -> None:
        with self._transaction(changes_state=False) as cursor:
            cursor.execute(
                "INSERT INTO webhook_relays (slug, id, key_id, url, events, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (slug, id) DO NOTHING",
                (slug, object_id, key_id, url, list(events), now_ms()),
            )

    def webhook_of(self, slug: str, object_id: str) -> WebhookRelayRow | None:
        with self._cursor() as cursor:
            row = cursor.execute(
                "SELECT key_id, url, events FROM webhook_relays WHERE slug = %s AND id = %s", (slug, object_id)
            ).fetchone()
        return WebhookRelayRow(row["key_id"], row["url"], tuple(row["events"])) if row is not None else None

    def first_receipt(self, slug: str, webhook_id: str, forget_before_ms: int) -> bool:
        with self._transaction(changes_state=False) as cursor:
            cursor.execute("DELETE FROM webhook_receipts WHERE received_at < %s", (forget_before_ms,))
            inserted = cursor.execute(
                "INSERT INTO webhook_receipts (slug, webhook_id, received_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (slug, webhook_id) DO NOTHING",
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
            with self._transaction() as cursor:
                values["provider"] = _check_integration(cursor, kind, provider, integration_slug)
                values["secret_ciphertext"], values["secret_hint"] = seal(self.vault, slug, secret)
                row = _insert(cursor, "providers", values)
        except errors.UniqueViolation:
            raise Conflict(f"the slug {slug!r} is already taken") from None
        except errors.ForeignKeyViolation:  # its integration was deleted meanwhile
            raise NotFound(f"no integration {integration_slug!r}") from None
        return stored_provider_from_row(row)

    def get_provider(self, slug: str) -> StoredProvider | None:
        row = self._replica.provider_row(slug)
        return stored_provider_from_row(row) if row is not None else None

    def list_providers(
        self, *, kind: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[StoredProvider]:
        query, params = "SELECT * FROM providers", ()
        if kind is not None:
            query, params = "SELECT * FROM providers WHERE kind = %s", (kind,)
        with self._cursor() as db:
            rows, next_cursor = _page(db, query, "slug", limit, cursor, params)
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
            with self._transaction() as cursor:
                current = _provider_row(cursor, slug, lock=True)
                if current is None:
                    raise NotFound(f"no stored provider {slug!r}")
                if integration_slug is not UNCHANGED:
                    _check_integration(cursor, current["kind"], current["provider"], integration_slug)
                    changes["integration_slug"] = integration_slug
                if secret is not UNCHANGED:
                    changes["secret_ciphertext"], changes["secret_hint"] = seal(self.vault, slug, secret)
                row = _update(cursor, "providers", "slug", slug, changes, "stored provider")
        except errors.ForeignKeyViolation:
            raise NotFound(f"no integration {integration_slug!r}") from None
        return stored_provider_from_row(row)

    def delete_provider(self, slug: str) -> None:
        try:
            with self._transaction() as cursor:
                users = [r["slug"] for r in cursor.execute(
                    "SELECT slug FROM providers WHERE integration_slug = %s ORDER BY slug", (slug,))]  # fmt: skip
                if users:
                    raise Conflict(f"integration {slug!r} is used by {', '.join(users)}; remove those first")
                if cursor.execute("DELETE FROM providers WHERE slug = %s", (slug,)).rowcount == 0:
                    raise NotFound(f"no stored provider {slug!r}")
        except errors.ForeignKeyViolation:  # a provider started using it meanwhile
            raise Conflict(f"integration {slug!r} is in use; remove the providers using it first") from None

    def resolve_provider(self, slug: str) -> ResolvedProvider | None:
        row = self._replica.provider_row(slug)
        if row is None:
            return None
        integration_slug = row["integration_slug"]
        integration = self._replica.provider_row(integration_slug) if integration_slug else None
        return resolved_provider(row, integration, self.vault)

    def reencrypt_secrets(self, vault: Vault) -> int:
        with self._transaction() as cursor:
            rows = cursor.execute(
                "SELECT slug, secret_ciphertext FROM providers WHERE secret_ciphertext IS NOT NULL FOR UPDATE"
            ).fetchall()
            resealed = [
                (vault.encrypt(vault.decrypt(row["secret_ciphertext"], secret_context(row["slug"])),
                               secret_context(row["slug"])), row["slug"])
                for row in rows
                if not vault.is_current(row["secret_ciphertext"])
            ]  # fmt: skip
            cursor.executemany("UPDATE providers SET secret_ciphertext = %s WHERE slug = %s", resealed)
            rows = cursor.execute("SELECT slug, settings FROM providers FOR UPDATE").fetchall()
            settings = [(text, row["slug"]) for row in rows
                        if (text := resealed_settings(vault, row["slug"], row["settings"])) is not None]
            cursor.executemany("UPDATE providers SET settings = %s WHERE slug = %s", settings)
            resealed += settings
        if resealed:
            # The old ciphertexts stay in dead row versions until vacuumed; VACUUM FULL rewrites the
            # (small) table without them, as SQLite's secure_delete does. WAL segments and backups
            # keep them until they are recycled (docs/architecture.md).
            with self._connection() as conn:
                conn.execute("VACUUM FULL providers")
        return len(resealed)

    # -- saved configs ---------------------------------------------------------------------------
    def create_config(
        self, name: str, config: Mapping[str, Any], *, slug: str | None = None, is_default: bool = False
    ) -> Config:
        values = new_config_values(name, config, slug=slug, is_default=is_default)
        try:
            with self._transaction() as cursor:
                if is_default:
                    _lock_default(cursor)
                    cursor.execute("UPDATE configs SET is_default = FALSE WHERE is_default")
                row = _insert(cursor, "configs", values)
        except errors.UniqueViolation:
            raise Conflict(f"the config slug {values['slug']!r} is already taken") from None
        return config_from_row(row)

    def get_config(self, ref: str) -> Config | None:
        return self._replica.config(ref)

    def get_default_config(self) -> Config | None:
        return self._replica.default_config()

    def list_configs(self, *, limit: int = 100, cursor: str | None = None) -> Page[Config]:
        with self._cursor() as db:
            rows, next_cursor = _page(db, "SELECT * FROM configs", "id", limit, cursor)
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
        with self._transaction() as cursor:
            if changes.get("is_default"):
                _lock_default(cursor)  # before any row lock: writers of the default queue here first
            current = _config_row(cursor, ref)
            if current is None:
                raise NotFound(f"no config {ref!r}")
            if changes.get("is_default"):
                cursor.execute("UPDATE configs SET is_default = FALSE WHERE is_default AND id <> %s", (current["id"],))
            row = _update(cursor, "configs", "id", current["id"], changes, "config")
        return config_from_row(row)

    def delete_config(self, ref: str) -> None:
        with self._transaction() as cursor:
            if cursor.execute("DELETE FROM configs WHERE id = %s OR slug = %s", (ref, ref)).rowcount == 0:
                raise NotFound(f"no config {ref!r}")


def open_postgres_store(url: str, master_key: str | None) -> PostgresStore:
    """The store at ``url``, migrated and replicated. Its vault's key comes from settings only: nodes
    sharing a database must seal with the same key, so none may generate its own."""
    if not master_key:
        raise StoreUnavailable("a gateway on PostgreSQL needs MODELPORT_MASTER_KEY (the same on every node); "
                               "generate one with: python -c \"import base64,os; print(base64.b64encode(os.urandom(32)).decode())\"")
    return PostgresStore(url, Vault.open(Path("."), master_key))  # a key given: no key file is read or made


# -- SQL helpers ----------------------------------------------------------------------------------
_open_stores: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections_after_fork() for store in list(_open_stores)])
_ABANDONED_POOLS: list[ConnectionPool] = []


def _key_where(cursor: psycopg.Cursor, column: str, value: str) -> ApiKey | None:
    row = cursor.execute(f"SELECT * FROM api_keys WHERE {column} = %s", (value,)).fetchone()
    return api_key_from_row(row) if row is not None else None


def _provider_row(cursor: psycopg.Cursor, slug: str, lock: bool = False) -> Row | None:
    query = "SELECT * FROM providers WHERE slug = %s" + (" FOR UPDATE" if lock else "")
    return cursor.execute(query, (slug,)).fetchone()


def _config_row(cursor: psycopg.Cursor, ref: str) -> Row | None:
    return cursor.execute(
        "SELECT * FROM configs WHERE id = %s OR slug = %s ORDER BY id = %s DESC LIMIT 1 FOR UPDATE", (ref, ref, ref)
    ).fetchone()


def _lock_default(cursor: psycopg.Cursor) -> None:
    # Writers that set the default queue here, so two at once leave one default (not a unique-index
    # error). Taken before any row lock, or two of them could each hold what the other waits for.
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('modelport:default-config'))")


def _page(cursor: psycopg.Cursor, query: str, order_column: str, limit: int, after: str | None,
          params: tuple = ()) -> tuple[list[Row], str | None]:  # fmt: skip
    """Keyset paging: rows after ``after`` in ``order_column`` order; the cursor is the last key seen."""
    limit = max(1, min(int(limit), MAX_PAGE))
    if after is not None:
        joiner = " AND " if " WHERE " in query else " WHERE "
        query, params = f"{query}{joiner}{order_column} > %s", (*params, after)
    rows = cursor.execute(f"{query} ORDER BY {order_column} LIMIT %s", (*params, limit + 1)).fetchall()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1][order_column]
    return rows, None


def _insert(cursor: psycopg.Cursor, table: str, values: dict[str, Any]) -> Row:
    values = {**values, "created_at": now_ms()}
    values["updated_at"] = values["created_at"]
    columns = ", ".join(values)  # column names come from this package, never from input
    marks = ", ".join(["%s"] * len(values))
    return cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *", tuple(values.values())).fetchone()


def _update(cursor: psycopg.Cursor, table: str, key_column: str, key: str, changes: dict[str, Any], what: str) -> Row:
    changes = {**changes, "updated_at": now_ms()}
    assignments = ", ".join(f"{column} = %s" for column in changes)
    row = cursor.execute(
        f"UPDATE {table} SET {assignments} WHERE {key_column} = %s RETURNING *", (*changes.values(), key)
    ).fetchone()
    if row is None:
        raise NotFound(f"no {what} {key!r}")
    return row


def _check_integration(cursor: psycopg.Cursor, kind: str, provider: str | None, integration_slug: str | None) -> str:
    integration = None
    if integration_slug is not None:
        integration = cursor.execute(
            "SELECT * FROM providers WHERE slug = %s FOR SHARE", (integration_slug,)
        ).fetchone()  # held until commit: it cannot be deleted under the new link
    return check_integration(kind, provider, integration_slug, integration)
