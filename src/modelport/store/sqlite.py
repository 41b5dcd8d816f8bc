"""The embedded store: one SQLite file in WAL mode, shared safely by threads and processes.

Each thread gets its own connection (sqlite3 connections must not be shared across threads without a
lock, and a lock would serialise the hot path's reads). Connections run in autocommit mode; every
change is one explicit ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front so
concurrent writers queue on ``busy_timeout`` instead of failing halfway.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

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
    WebhookRelayRow,
)
from .beacon import ChangeBeacon
from .migrations import apply_migrations
from .rows import (
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

DEFAULT_BUSY_TIMEOUT_MS = 5000
MAX_PAGE = 1000


class SQLiteStore:
    """``Store`` on a SQLite file. ``vault`` seals provider secrets."""

    def __init__(self, path: Path, vault: Vault, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.vault = vault
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        _create_private_file(self.path)
        self._beacon = ChangeBeacon(self.path.with_name(self.path.name + "-version"))
        apply_migrations(self._connection())
        _open_stores.add(self)

    # -- connections and transactions ------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the store is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        _enable_wal(conn, self._busy_timeout_ms)
        conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe from corruption in WAL mode
        conn.execute("PRAGMA foreign_keys = ON")
        # FAST zeroes deleted content when that costs no extra I/O: replaced ciphertexts and hashes do
        # not linger in free space (SQLite docs, "PRAGMA secure_delete").
        conn.execute("PRAGMA secure_delete = FAST")
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, changes_state: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``changes_state`` bumps the version that invalidates hot-path caches."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            if changes_state:
                self._beacon.signal()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if changes_state:
            self._beacon.signal()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _forget_connections_after_fork(self) -> None:
        # A SQLite connection must not be used across fork(), and closing it in the child could
        # checkpoint and delete the parent's WAL (SQLite FAQ, "How To Corrupt An SQLite Database
        # File", §2.6). The child abandons the inherited connections and opens its own.
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()

    def data_version(self) -> bytes:
        # Key, provider and config changes by any process move it; log writes do not (see beacon.py).
        return self._beacon.read()

    def outage(self) -> str | None:
        return None  # a file on this host: away only with the host

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
        with self._transaction() as conn:
            try:
                _insert(conn, "api_keys", values)
            except sqlite3.IntegrityError:
                raise Conflict("an API key with this secret already exists") from None
            record = self._key_where(conn, "id", values["id"])
        assert record is not None
        return record, token

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._key_where(self._connection(), "id", key_id)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._key_where(self._connection(), "key_hash", key_hash)

    def list_api_keys(self, *, limit: int = 100, cursor: str | None = None) -> Page[ApiKey]:
        rows, next_cursor = _page(self._connection(), "SELECT * FROM api_keys", "id", limit, cursor)
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
        with self._transaction() as conn:
            _update(conn, "api_keys", "id", key_id, changes)
            return self._key_where(conn, "id", key_id)  # type: ignore[return-value]

    def rotate_api_key(self, key_id: str) -> tuple[ApiKey, str]:
        token, prefix, key_hash = generate_api_key()
        with self._transaction() as conn:
            current = self._key_where(conn, "id", key_id)
            if current is None:
                raise NotFound(f"no API key {key_id}")
            if current.revoked_at is not None:
                raise Conflict(f"API key {key_id} is revoked; create a new key instead")
            _update(conn, "api_keys", "id", key_id, {"prefix": prefix, "key_hash": key_hash})
            record = self._key_where(conn, "id", key_id)
        assert record is not None
        return record, token

    def revoke_api_key(self, key_id: str) -> ApiKey:
        with self._transaction() as conn:
            now = now_ms()
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? WHERE id = ?",
                (now, now, key_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no API key {key_id}")
            return self._key_where(conn, "id", key_id)  # type: ignore[return-value]

    def delete_api_key(self, key_id: str) -> None:
        with self._transaction() as conn:
            if conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount == 0:
                raise NotFound(f"no API key {key_id}")

    def touch_api_keys(self, last_used: Mapping[str, datetime]) -> None:
        rows = [(to_ms(at), key_id, to_ms(at)) for key_id, at in last_used.items()]
        # last_used_at is informational: it must not invalidate every worker's key cache.
        with self._transaction(changes_state=False) as conn:
            conn.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                rows,
            )

    # -- objects created on shared provider accounts ----------------------------------------------
    def record_owner(self, slug: str, object_id: str, kind: str, key_id: str) -> None:
        self.record_owners([(slug, object_id, kind, key_id)])

    def record_owners(self, owners: Sequence[tuple[str, str, str, str]]) -> None:
        # Written on every create through a shared account: like log writes, it must not signal the
        # change beacon (that would empty every worker's key and provider caches).
        created = now_ms()
        with self._transaction(changes_state=False) as conn:
            conn.executemany(
                "INSERT INTO owned_objects (slug, id, kind, key_id, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (slug, id) DO NOTHING",
                [(*owner, created) for owner in owners],
            )

    def owners_of(self, slug: str, object_ids: Sequence[str]) -> dict[str, str]:
        if not object_ids:
            return {}
        marks = ", ".join("?" * len(object_ids))
        rows = self._connection().execute(
            f"SELECT id, key_id FROM owned_objects WHERE slug = ? AND id IN ({marks})", (slug, *object_ids)
        )
        return {row[0]: row[1] for row in rows}

    # -- the webhook relay ------------------------------------------------------------------------
    def record_webhook(self, slug: str, object_id: str, key_id: str, url: str, events: Sequence[str]) -> None:
        with self._transaction(changes_state=False) as conn:  # per create, like record_owner: no beacon
            conn.execute(
                "INSERT INTO webhook_relays (slug, id, key_id, url, events, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (slug, id) DO NOTHING",
                (slug, object_id, key_id, url, ",".join(events), now_ms()),
            )

    def webhook_of(self, slug: str, object_id: str) -> WebhookRelayRow | None:
        row = self._connection().execute(
            "SELECT key_id, url, events FROM webhook_relays WHERE slug = ? AND id = ?", (slug, object_id)
        ).fetchone()
        return WebhookRelayRow(row[0], row[1], tuple(filter(None, row[2].split(",")))) if row is not None else None

    def first_receipt(self, slug: str, webhook_id: str, forget_before_ms: int) -> bool:
        with self._transaction(changes_state=False) as conn:
            conn.execute("DELETE FROM webhook_receipts WHERE received_at < ?", (forget_before_ms,))
            inserted = conn.execute(
                "INSERT INTO webhook_receipts (slug, webhook_id, received_at) VALUES (?, ?, ?)"
                " ON CONFLICT (slug, webhook_id) DO NOTHING",
                (slug, webhook_id, now_ms()),
            )
            return inserted.rowcount == 1

    @staticmethod
    def _key_where(conn: sqlite3.Connection, column: str, value: str) -> ApiKey | None:
        row = conn.execute(f"SELECT * FROM api_keys WHERE {column} = ?", (value,)).fetchone()
        return api_key_from_row(row) if row is not None else None

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
        with self._transaction() as conn:
            values["provider"] = _check_integration(conn, kind, provider, integration_slug)
            values["secret_ciphertext"], values["secret_hint"] = seal(self.vault, slug, secret)
            try:
                _insert(conn, "providers", values)
            except sqlite3.IntegrityError:
                raise Conflict(f"the slug {slug!r} is already taken") from None
            return stored_provider_from_row(_provider_row(conn, slug))  # type: ignore[arg-type]

    def get_provider(self, slug: str) -> StoredProvider | None:
        row = _provider_row(self._connection(), slug)
        return stored_provider_from_row(row) if row is not None else None

    def list_providers(
        self, *, kind: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[StoredProvider]:
        query, params = "SELECT * FROM providers", ()
        if kind is not None:
            query, params = "SELECT * FROM providers WHERE kind = ?", (kind,)
        rows, next_cursor = _page(self._connection(), query, "slug", limit, cursor, params)
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
        with self._transaction() as conn:
            current = _provider_row(conn, slug)
            if current is None:
                raise NotFound(f"no stored provider {slug!r}")
            if integration_slug is not UNCHANGED:
                _check_integration(conn, current["kind"], current["provider"], integration_slug)
                changes["integration_slug"] = integration_slug
            if secret is not UNCHANGED:
                changes["secret_ciphertext"], changes["secret_hint"] = seal(self.vault, slug, secret)
            _update(conn, "providers", "slug", slug, changes)
            return stored_provider_from_row(_provider_row(conn, slug))  # type: ignore[arg-type]

    def delete_provider(self, slug: str) -> None:
        with self._transaction() as conn:
            users = [r[0] for r in conn.execute("SELECT slug FROM providers WHERE integration_slug = ?", (slug,))]
            if users:
                raise Conflict(f"integration {slug!r} is used by {', '.join(users)}; remove those first")
            if conn.execute("DELETE FROM providers WHERE slug = ?", (slug,)).rowcount == 0:
                raise NotFound(f"no stored provider {slug!r}")

    def resolve_provider(self, slug: str) -> ResolvedProvider | None:
        conn = self._connection()
        row = _provider_row(conn, slug)
        if row is None:
            return None
        integration = _provider_row(conn, row["integration_slug"]) if row["integration_slug"] else None
        return resolved_provider(row, integration, self.vault)

    def reencrypt_secrets(self, vault: Vault) -> int:
        conn = self._connection()
        # Full secure_delete for this one transaction, then a truncating checkpoint: after a rotation
        # the old ciphertexts are gone from the file and the WAL, so the retired key opens nothing there.
        conn.execute("PRAGMA secure_delete = ON")
        try:
            with self._transaction() as conn:
                rows = conn.execute("SELECT slug, secret_ciphertext FROM providers WHERE secret_ciphertext IS NOT NULL")
                resealed = [
                    (vault.encrypt(vault.decrypt(sealed, secret_context(slug)), secret_context(slug)), slug)
                    for slug, sealed in rows.fetchall()
                    if not vault.is_current(sealed)
                ]
                conn.executemany("UPDATE providers SET secret_ciphertext = ? WHERE slug = ?", resealed)
                settings = [(text, slug) for slug, raw in conn.execute("SELECT slug, settings FROM providers").fetchall()
                            if (text := resealed_settings(vault, slug, raw)) is not None]
                conn.executemany("UPDATE providers SET settings = ? WHERE slug = ?", settings)
        finally:
            conn.execute("PRAGMA secure_delete = FAST")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(resealed) + len(settings)

    # -- saved configs ---------------------------------------------------------------------------
    def create_config(
        self, name: str, config: Mapping[str, Any], *, slug: str | None = None, is_default: bool = False
    ) -> Config:
        values = new_config_values(name, config, slug=slug, is_default=is_default)
        with self._transaction() as conn:
            if is_default:
                conn.execute("UPDATE configs SET is_default = 0 WHERE is_default = 1")
            try:
                _insert(conn, "configs", values)
            except sqlite3.IntegrityError:
                raise Conflict(f"the config slug {values['slug']!r} is already taken") from None
            return config_from_row(_config_row(conn, values["id"]))  # type: ignore[arg-type]

    def get_config(self, ref: str) -> Config | None:
        row = _config_row(self._connection(), ref)
        return config_from_row(row) if row is not None else None

    def get_default_config(self) -> Config | None:
        row = self._connection().execute("SELECT * FROM configs WHERE is_default = 1 LIMIT 1").fetchone()
        return config_from_row(row) if row is not None else None

    def list_configs(self, *, limit: int = 100, cursor: str | None = None) -> Page[Config]:
        rows, next_cursor = _page(self._connection(), "SELECT * FROM configs", "id", limit, cursor)
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
        with self._transaction() as conn:
            current = _config_row(conn, ref)
            if current is None:
                raise NotFound(f"no config {ref!r}")
            if changes.get("is_default"):
                conn.execute("UPDATE configs SET is_default = 0 WHERE is_default = 1")
            _update(conn, "configs", "id", current["id"], changes)
            return config_from_row(_config_row(conn, current["id"]))  # type: ignore[arg-type]

    def delete_config(self, ref: str) -> None:
        with self._transaction() as conn:
            if conn.execute("DELETE FROM configs WHERE id = ? OR slug = ?", (ref, ref)).rowcount == 0:
                raise NotFound(f"no config {ref!r}")


_open_stores: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections_after_fork() for store in list(_open_stores)])


def _provider_row(conn: sqlite3.Connection, slug: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM providers WHERE slug = ?", (slug,)).fetchone()


def _config_row(conn: sqlite3.Connection, ref: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM configs WHERE id = ? OR slug = ? LIMIT 1", (ref, ref)).fetchone()


def _page(
    conn: sqlite3.Connection, query: str, order_column: str, limit: int, cursor: str | None, params: tuple = ()
) -> tuple[list[sqlite3.Row], str | None]:
    """Keyset paging: rows after ``cursor`` in ``order_column`` order; the cursor is the last key seen."""
    limit = max(1, min(int(limit), MAX_PAGE))
    if cursor is not None:
        joiner = " AND " if " WHERE " in query else " WHERE "
        query, params = f"{query}{joiner}{order_column} > ?", (*params, cursor)
    rows = conn.execute(f"{query} ORDER BY {order_column} LIMIT ?", (*params, limit + 1)).fetchall()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1][order_column]
    return rows, None


def _insert(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
    values = {**values, "created_at": now_ms()}
    values["updated_at"] = values["created_at"]
    columns = ", ".join(values)
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))


def _update(conn: sqlite3.Connection, table: str, key_column: str, key: str, changes: dict[str, Any]) -> None:
    changes = {**changes, "updated_at": now_ms()}
    assignments = ", ".join(f"{column} = ?" for column in changes)
    cursor = conn.execute(f"UPDATE {table} SET {assignments} WHERE {key_column} = ?", (*changes.values(), key))
    if cursor.rowcount == 0:
        raise NotFound(f"no {table[:-1].replace('_', ' ')} {key!r}")


def _check_integration(conn: sqlite3.Connection, kind: str, provider: str | None, integration_slug: str | None) -> str:
    """Validate an integration link; return the provider id (inherited from the integration if unset)."""
    integration = _provider_row(conn, integration_slug) if integration_slug is not None else None
    return check_integration(kind, provider, integration_slug, integration)


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm files copy the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    # Switching a new file to WAL needs an exclusive lock and can report "locked" without waiting
    # on busy_timeout when another process is doing the same, so retry until the timeout.
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"could not switch {conn} to WAL mode (got {mode})")
