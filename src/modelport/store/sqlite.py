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
from pathlib import Path
from typing import Iterator, Sequence

from ..vault import Vault
from .base import ApiKey, Config, ResolvedProvider, StoredProvider
from .beacon import ChangeBeacon
from .migrations import apply_migrations
from .rows import config_from_row, resealed_settings, resolved_provider, secret_context, stored_provider_from_row
from .store_sql import StoreSQL

DEFAULT_BUSY_TIMEOUT_MS = 5000


class SQLiteStore(StoreSQL):
    """``Store`` on a SQLite file. ``vault`` seals provider secrets."""

    # Its dialect for store_sql.py: no row locks (BEGIN IMMEDIATE holds the file's write lock for the
    # whole transaction, so no other writer can change a row read in it); event names comma-joined.
    duplicate = sqlite3.IntegrityError
    dangling = sqlite3.IntegrityError

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

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    def _events_value(self, events: Sequence[str]) -> str:
        return ",".join(events)

    def _events_of(self, value: str) -> tuple[str, ...]:
        return tuple(filter(None, value.split(",")))

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

    # -- what the hot path reads (each a query on this file; shared SQL in store_sql.py) -----------
    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._key_where(self._connection(), "key_hash", key_hash)

    def get_provider(self, slug: str) -> StoredProvider | None:
        row = self._provider_row(self._connection(), slug)
        return stored_provider_from_row(row) if row is not None else None

    def resolve_provider(self, slug: str) -> ResolvedProvider | None:
        conn = self._connection()
        row = self._provider_row(conn, slug)
        if row is None:
            return None
        integration = self._provider_row(conn, row["integration_slug"]) if row["integration_slug"] else None
        return resolved_provider(row, integration, self.vault)

    def get_config(self, ref: str) -> Config | None:
        row = self._config_row(self._connection(), ref)
        return config_from_row(row) if row is not None else None

    def get_default_config(self) -> Config | None:
        row = self._connection().execute("SELECT * FROM configs WHERE is_default = 1 LIMIT 1").fetchone()
        return config_from_row(row) if row is not None else None

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


_open_stores: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections_after_fork() for store in list(_open_stores)])


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
