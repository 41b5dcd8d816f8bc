"""Schema migrations: a numbered list, applied in order, each recorded in ``schema_migrations``.

Migration N is ``MIGRATIONS[N - 1]``. To change the schema, append one SQL script to the list; never
edit or reorder an entry that has shipped. Scripts use portable SQL (TEXT, BIGINT, INTEGER, JSON as
TEXT, times as epoch milliseconds) so the PostgreSQL store can share them where it is cheap.

Tables that hold what the hot path caches (keys, providers, configs) are changed together with the
single row of ``state_version``, which is how ``Store.data_version()`` tells every process to drop its
caches. Tables written on every request (logs) must not touch it.
"""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[str] = [
    # 1: keys, stored providers, configs, and the version counter for cache invalidation.
    """
    CREATE TABLE state_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO state_version (id, version) VALUES (1, 0);

    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        allowed_providers TEXT NOT NULL,
        metadata TEXT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_used_at BIGINT
    );

    CREATE TABLE providers (
        slug TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        secret_ciphertext TEXT,
        secret_hint TEXT,
        custom_host TEXT,
        settings TEXT NOT NULL,
        allowed_models TEXT NOT NULL,
        note TEXT,
        integration_slug TEXT REFERENCES providers (slug),
        usage_limits TEXT,
        rate_limits TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX providers_by_integration ON providers (integration_slug);

    CREATE TABLE configs (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    """,
]


def apply_migrations(conn: sqlite3.Connection, migrations: list[str] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks, all in one transaction; returns their numbers.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock before reading what is applied, so two processes
    opening the same new database at once apply each migration exactly once: the second waits
    (busy_timeout), then finds nothing left to do.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        done = []
        for number, script in enumerate(migrations, start=1):
            if number in applied:
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (number, time.time_ns() // 1_000_000),
            )
            done.append(number)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def _statements(script: str) -> list[str]:
    """Split a script into statements. (``executescript`` would COMMIT our transaction first.)"""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"migration has an unterminated statement: {buffer.strip()[:80]!r}")
    return statements
