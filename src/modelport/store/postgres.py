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
from pathlib import Path
from typing import Iterator, Sequence

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..vault import Vault
from .base import ApiKey, Config, ResolvedProvider, StoredProvider, StoreUnavailable
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
from .rows import resealed_settings, resolved_provider, secret_context, stored_provider_from_row
from .store_sql import StoreSQL

POOL_SIZE = 4  # control-plane calls and background writes only: the hot path reads the replica
POOL_WAIT_SECONDS = 5.0


class PostgresStore(StoreSQL):
    """``Store`` on a PostgreSQL database named by ``url``. ``vault`` seals provider secrets."""

    # Its dialect for store_sql.py: psycopg's placeholders; rows a transaction changes are locked as it
    # reads them (another node may be writing the same row), and an integration a provider links to is
    # held with FOR SHARE until commit, so it cannot be deleted under the new link.
    placeholder = "%s"
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    duplicate = errors.UniqueViolation
    dangling = errors.ForeignKeyViolation

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

    _reading = _cursor

    def _events_value(self, events: Sequence[str]) -> list[str]:
        return list(events)  # text[]

    def _events_of(self, value: list[str]) -> tuple[str, ...]:
        return tuple(value)

    def _lock_default(self, cursor: psycopg.Cursor) -> None:
        # Writers that set the default queue here, so two at once leave one default (not a unique-index
        # error). Taken before any row lock, or two of them could each hold what the other waits for.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('modelport:default-config'))")

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

    # -- what the hot path reads: the replica, never a round trip (shared SQL in store_sql.py) ----
    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._replica.key_by_hash(key_hash)

    def get_provider(self, slug: str) -> StoredProvider | None:
        row = self._replica.provider_row(slug)
        return stored_provider_from_row(row) if row is not None else None

    def resolve_provider(self, slug: str) -> ResolvedProvider | None:
        row = self._replica.provider_row(slug)
        if row is None:
            return None
        integration_slug = row["integration_slug"]
        integration = self._replica.provider_row(integration_slug) if integration_slug else None
        return resolved_provider(row, integration, self.vault)

    def get_config(self, ref: str) -> Config | None:
        return self._replica.config(ref)

    def get_default_config(self) -> Config | None:
        return self._replica.default_config()

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


def open_postgres_store(url: str, master_key: str | None) -> PostgresStore:
    """The store at ``url``, migrated and replicated. Its vault's key comes from settings only: nodes
    sharing a database must seal with the same key, so none may generate its own."""
    if not master_key:
        raise StoreUnavailable("a gateway on PostgreSQL needs MODELPORT_MASTER_KEY (the same on every node); "
                               "generate one with: python -c \"import base64,os; print(base64.b64encode(os.urandom(32)).decode())\"")
    return PostgresStore(url, Vault.open(Path("."), master_key))  # a key given: no key file is read or made


_open_stores: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections_after_fork() for store in list(_open_stores)])
_ABANDONED_POOLS: list[ConnectionPool] = []
