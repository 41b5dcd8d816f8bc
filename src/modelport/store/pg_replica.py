"""The hot path's view of a PostgreSQL store: keys, providers and configs held in memory, kept current
by the change feed.

Authentication, provider resolution and config lookups run on the event loop; a query there would
stall every request of the worker for a network round trip (and for as long as PostgreSQL is slow or
away). So the store loads those three tables at open into a ``Replica`` and a ``ChangeFeed`` thread,
on its own connection, LISTENs on ``modelport_changes``: the schema's triggers (``pg_migrations.py``)
send ``<table>:<id>`` for each changed row, delivered on commit, and the feed reloads just that row
(or drops it) and moves ``version``, which is ``Store.data_version()``, so the gateway's caches drop.

Consistency rules:
- Every reload reads the row as committed now, under ``Replica.lock``; reloads are serialised, so
  whichever runs last installs the newest state and a later reload never installs an older one (a
  revoked key, once seen revoked, stays revoked).
- Read-your-writes: a writer ends its transaction with ``NOTIFY modelport_changes, 'sync:<token>'``
  and waits until the feed has handled that token. Notifications arrive in commit order, and a
  transaction's own in the order sent, so by then the feed has reloaded every row the write changed.
  Where that cannot be known (the feed is reconnecting, or reconnected since the write began), the
  writer reloads everything itself.
- If the feed's connection is lost it reconnects and reloads everything: notifications sent while it
  was away are gone. Meanwhile the hot path keeps serving the state it holds.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from psycopg.rows import dict_row

from .base import ApiKey, Config
from .pg_connect import one_line
from .pg_migrations import CHANGES_CHANNEL
from .rows import Row, api_key_from_row, config_from_row

log = logging.getLogger("modelport.store")

POLL_SECONDS = 0.25  # how often the feed thread looks up from LISTEN to see whether the store closed
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)  # then every 2 s
SYNC_TIMEOUT_SECONDS = 2.0


class Replica:
    """Keys by hash, providers by slug, configs by id and slug. Reads take no lock: each is a dict
    lookup, atomic under the GIL; writers (the feed, or a writer falling back) hold ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 0
        self._keys_by_hash: dict[str, ApiKey] = {}
        self._key_hash_by_id: dict[str, str] = {}
        self._providers: dict[str, Row] = {}
        self._configs: dict[str, Config] = {}
        self._config_id_by_slug: dict[str, str] = {}
        self._default_config_id: str | None = None

    # -- the hot path ------------------------------------------------------------------------------
    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._keys_by_hash.get(key_hash)

    def provider_row(self, slug: str) -> Row | None:
        return self._providers.get(slug)

    def config(self, ref: str) -> Config | None:
        found = self._configs.get(ref)
        if found is None and (config_id := self._config_id_by_slug.get(ref)) is not None:
            found = self._configs.get(config_id)
        return found

    def default_config(self) -> Config | None:
        default = self._default_config_id
        return self._configs.get(default) if default is not None else None

    # -- keeping it current (callers hold ``lock``) --------------------------------------------------
    def load_all(self, conn: psycopg.Connection) -> None:
        """Replace everything with the tables as committed now (one snapshot)."""
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            keys = [api_key_from_row(row) for row in cursor.execute("SELECT * FROM api_keys")]
            providers = {row["slug"]: row for row in cursor.execute("SELECT * FROM providers")}
            configs = [config_from_row(row) for row in cursor.execute("SELECT * FROM configs")]
        self._keys_by_hash = {key.key_hash: key for key in keys}
        self._key_hash_by_id = {key.id: key.key_hash for key in keys}
        self._providers = providers
        self._configs = {config.id: config for config in configs}
        self._config_id_by_slug = {config.slug: config.id for config in configs}
        self._default_config_id = next((config.id for config in configs if config.is_default), None)
        self.version += 1

    def reload(self, conn: psycopg.Connection, table: str, ident: str) -> None:
        """Reload one row as committed now (or drop it, if it is gone)."""
        reload = _RELOADS.get(table)
        if reload is None:
            return  # a table this code does not replicate (from newer code sharing the channel)
        if ident == "*":
            self.load_all(conn)
            return
        with conn.cursor(row_factory=dict_row) as cursor:
            reload(self, cursor, ident)
        self.version += 1

    # Each reload installs the new entry before removing an old one, so a reader in between never
    # finds a key or config missing that exists before and after (a valid key refused as unknown).
    def _reload_key(self, cursor: psycopg.Cursor, key_id: str) -> None:
        row = cursor.execute("SELECT * FROM api_keys WHERE id = %s", (key_id,)).fetchone()
        old_hash = self._key_hash_by_id.get(key_id)
        new_hash = None
        if row is not None:
            key = api_key_from_row(row)
            new_hash = key.key_hash
            self._keys_by_hash[new_hash] = key
            self._key_hash_by_id[key_id] = new_hash
        else:
            self._key_hash_by_id.pop(key_id, None)
        if old_hash is not None and old_hash != new_hash:
            self._keys_by_hash.pop(old_hash, None)  # a rotated or deleted key's old secret stops here

    def _reload_provider(self, cursor: psycopg.Cursor, slug: str) -> None:
        row = cursor.execute("SELECT * FROM providers WHERE slug = %s", (slug,)).fetchone()
        if row is None:
            self._providers.pop(slug, None)
        else:
            self._providers[slug] = row

    def _reload_config(self, cursor: psycopg.Cursor, config_id: str) -> None:
        row = cursor.execute("SELECT * FROM configs WHERE id = %s", (config_id,)).fetchone()
        old = self._configs.get(config_id)
        config = config_from_row(row) if row is not None else None
        if config is not None:
            self._configs[config_id] = config
            self._config_id_by_slug[config.slug] = config_id
            if config.is_default:
                self._default_config_id = config_id
        else:
            self._configs.pop(config_id, None)
        if old is not None and old.slug != (config.slug if config else None):
            if self._config_id_by_slug.get(old.slug) == config_id:
                del self._config_id_by_slug[old.slug]
        if self._default_config_id == config_id and (config is None or not config.is_default):
            self._default_config_id = None


_RELOADS: dict[str, Callable[[Replica, psycopg.Cursor, str], None]] = {
    "api_keys": Replica._reload_key,
    "providers": Replica._reload_provider,
    "configs": Replica._reload_config,
}


@dataclass(eq=False)
class SyncTicket:
    """A writer's wait for the feed to have applied its transaction."""

    token: str
    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    applied: bool = False


class ChangeFeed:
    """The LISTEN thread. ``connect()`` opens a new autocommit connection to the store's database."""

    def __init__(self, replica: Replica, connect: Callable[[], psycopg.Connection]) -> None:
        self._replica = replica
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self._generation = 0  # moves at each (re)connection
        self._listening = False
        self._tickets: dict[str, SyncTicket] = {}
        self._tickets_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        """Whether changes are being followed now (False while the connection is lost)."""
        return self._listening

    def start(self) -> None:
        """Listen and load everything (here, so that open fails if this fails), then follow in a thread."""
        self._conn = self._listen_and_load()
        self._run_thread()

    def _run_thread(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="modelport-store-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=POLL_SECONDS * 4)
        if self._conn is not None and (self._thread is None or not self._thread.is_alive()):
            self._conn.close()
        self._conn = None

    def restart_after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its connection is the parent's session."""
        if self._conn is not None:
            abandon_connection(self._conn)
        self._conn = None
        self._listening = False
        self._tickets, self._tickets_lock = {}, threading.Lock()
        if not self._stopping.is_set():
            self._run_thread()  # connects, then reloads everything: changes since the fork are seen

    # -- read-your-writes ---------------------------------------------------------------------------
    def ticket(self) -> SyncTicket:
        ticket = SyncTicket(secrets.token_hex(8), self._generation if self._listening else 0)
        with self._tickets_lock:
            self._tickets[ticket.token] = ticket
        return ticket

    def sync_payload(self, ticket: SyncTicket) -> str:
        return f"sync:{ticket.token}"

    def wait(self, ticket: SyncTicket, timeout: float = SYNC_TIMEOUT_SECONDS) -> bool:
        """True once the feed has applied the ticket's transaction; False when it cannot be known."""
        try:
            if ticket.generation == 0:
                return False
            ticket.done.wait(timeout)
            return ticket.applied and ticket.generation == self._generation and self._listening
        finally:
            with self._tickets_lock:
                self._tickets.pop(ticket.token, None)

    def forget(self, ticket: SyncTicket) -> None:
        with self._tickets_lock:
            self._tickets.pop(ticket.token, None)

    # -- the thread ---------------------------------------------------------------------------------
    def _listen_and_load(self) -> psycopg.Connection:
        conn = self._connect()
        try:
            conn.execute(f"LISTEN {CHANGES_CHANNEL}")
            with self._replica.lock:
                self._replica.load_all(conn)
        except BaseException:
            conn.close()
            raise
        self._generation += 1
        self._listening = True
        return conn

    def _follow(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._conn is None:
                try:
                    self._conn = self._listen_and_load()
                    if failures:
                        log.warning("store change feed: reconnected to PostgreSQL and reloaded keys, providers, configs")
                    failures = 0
                except Exception as exc:  # the thread must outlive anything: a dead feed would serve stale keys
                    delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                    failures += 1
                    if failures == 1:
                        log.warning("store change feed: cannot load from PostgreSQL (%s); retrying", one_line(exc))
                    self._stopping.wait(delay)
                continue
            try:
                batch = [notify.payload for notify in self._conn.notifies(timeout=POLL_SECONDS, stop_after=1)]
                if batch:
                    self._apply(self._conn, batch)
            except Exception as exc:  # a lost connection, or a row it could not read: start over from a full load
                log.warning("store change feed: lost its PostgreSQL connection or a change (%s); reconnecting and "
                            "reloading", one_line(exc))
                self._lost()
                failures = 1

    def _apply(self, conn: psycopg.Connection, payloads: list[str]) -> None:
        with self._replica.lock:
            for payload in payloads:
                table, _, ident = payload.partition(":")
                if table == "sync":
                    self._release(ident)
                else:
                    self._replica.reload(conn, table, ident)

    def _release(self, token: str) -> None:
        with self._tickets_lock:
            ticket = self._tickets.get(token)
        if ticket is not None:
            ticket.applied = True
            ticket.done.set()

    def _lost(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = False  # writers waiting now cannot know: they reload themselves
        with self._tickets_lock:
            waiting = list(self._tickets.values())
        for ticket in waiting:
            ticket.done.set()
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


# Connections inherited across fork() belong to the parent's sessions: using or closing one from the
# child (libpq's PQfinish sends Terminate) would end the parent's session. The child points each one's
# socket at /dev/null and keeps the object, so nothing it does later reaches the server.
_ABANDONED: list[Any] = []


def abandon_connection(conn: psycopg.Connection) -> None:
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        fd = -1
    if fd >= 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    _ABANDONED.append(conn)
