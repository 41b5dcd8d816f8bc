"""Schema migrations: a numbered list, applied in order, each recorded in ``schema_migrations``.

Migration N is ``MIGRATIONS[N - 1]``. To change the schema, append one SQL script to the list; never
edit or reorder an entry that has shipped. Scripts use portable SQL (TEXT, BIGINT, INTEGER, JSON as
TEXT, times as epoch milliseconds) so the PostgreSQL store can share them where it is cheap.

Changes to what the hot path caches (keys, providers, configs) signal the change beacon
(``beacon.py``), which is how ``Store.data_version()`` tells every process to drop its caches; writes
made on every request (logs) must not signal it.
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
    # 2: request logs, feedback, and the Replicate prediction lifecycle (store/sqlite_logs.py, providers/replicate/ledger.py).
    # DOUBLE PRECISION has REAL affinity in SQLite and is float8 in PostgreSQL (REAL there is float4).
    """
    CREATE TABLE logs (
        id TEXT PRIMARY KEY,
        trace_id TEXT,
        created_at BIGINT NOT NULL,
        key_id TEXT,
        key_name TEXT,
        provider TEXT,
        slug TEXT,
        endpoint TEXT,
        method TEXT,
        path TEXT,
        model TEXT,
        status INTEGER,
        latency_ms DOUBLE PRECISION,
        upstream_latency_ms DOUBLE PRECISION,
        request_bytes BIGINT,
        response_bytes BIGINT,
        cache_status TEXT,
        gateway_exception INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        stream INTEGER NOT NULL DEFAULT 0,
        prediction_id TEXT,
        input_tokens BIGINT,
        output_tokens BIGINT,
        total_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        cost_status TEXT,
        cost_reason TEXT,
        retry_count INTEGER,
        last_used_index TEXT,
        metadata TEXT,
        attempts TEXT,
        usage TEXT,
        request_headers TEXT,
        response_headers TEXT,
        request_body BLOB,
        response_body BLOB,
        request_content_type TEXT,
        response_content_type TEXT
    );
    CREATE INDEX logs_by_time ON logs (created_at, id);
    CREATE INDEX logs_by_trace ON logs (trace_id);
    CREATE INDEX logs_by_provider ON logs (provider, created_at);
    CREATE INDEX logs_by_key ON logs (key_id, created_at);
    CREATE INDEX logs_by_prediction ON logs (prediction_id);
    CREATE INDEX logs_by_status ON logs (status, created_at);
    CREATE INDEX logs_by_model ON logs (model, created_at);

    CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        trace_id TEXT NOT NULL,
        value INTEGER NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        metadata TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX feedback_by_trace ON feedback (trace_id);

    CREATE TABLE predictions (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        slug TEXT,
        key_id TEXT,
        model TEXT,
        version TEXT,
        deployment TEXT,
        status TEXT,
        created_at BIGINT NOT NULL,
        terminal_at BIGINT,
        predict_time DOUBLE PRECISION,
        cost_usd DOUBLE PRECISION,
        cost_status TEXT,
        cost_reason TEXT,
        usage TEXT,
        first_log_id TEXT,
        terminal_log_id TEXT
    );
    CREATE INDEX predictions_open ON predictions (terminal_at, created_at);
    """,
    # 3: per-key switch for storing request/response bodies in the logs.
    """
    ALTER TABLE api_keys ADD COLUMN log_bodies INTEGER NOT NULL DEFAULT 1;
    """,
    # 4: the change beacon (beacon.py) replaced the version row that every request used to query.
    """
    DROP TABLE state_version;
    """,
    # 5: rate limits and budgets on gateway API keys (Portkey RateLimits, UsageLimits), as on providers;
    # usage_reset_at anchors a budget's periods and moves on reset_usage.
    """
    ALTER TABLE api_keys ADD COLUMN rate_limits TEXT;
    ALTER TABLE api_keys ADD COLUMN usage_limits TEXT;
    ALTER TABLE api_keys ADD COLUMN usage_reset_at BIGINT;
    ALTER TABLE providers ADD COLUMN usage_reset_at BIGINT;
    """,
    # 6: Portkey's span headers, so one trace's requests form a tree (GET /v1/logs/traces/{trace_id}).
    """
    ALTER TABLE logs ADD COLUMN span_id TEXT;
    ALTER TABLE logs ADD COLUMN parent_span_id TEXT;
    ALTER TABLE logs ADD COLUMN span_name TEXT;
    """,
    # 7: which gateway key created each object on a shared provider account (Replicate predictions,
    # trainings, files), written as the create response passes so a poll right after it is recognised.
    # Keyed by the stored provider's slug: an id seen through another slug is not owned there.
    """
    CREATE TABLE owned_objects (
        slug TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (slug, id)
    );
    """,
    # 8: the webhook relay (providers/replicate/webhooks.py). Where each prediction's caller wants its
    # events (its URL and filter, comma-separated event names), keyed like owned_objects, so whichever worker or node
    # Replicate's event reaches can relay it; and the webhook ids already received, so a replayed
    # event is refused everywhere (kept only as long as a timestamp is accepted).
    """
    CREATE TABLE webhook_relays (
        slug TEXT NOT NULL,
        id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (slug, id)
    );
    CREATE TABLE webhook_receipts (
        slug TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (slug, webhook_id)
    );
    CREATE INDEX webhook_receipts_by_age ON webhook_receipts (received_at);
    """,
    # 9: an index for every filter of the logs API (issue 11), so none reads the logs table through.
    # log_metadata: one row per top-level key of a record's metadata, the value as the filter compares it
    # (CAST(json_extract(...) AS TEXT)); its primary key is the index, a pair's records newest first.
    # log_text: a contentless trigram FTS5 index of path and error (the q filter, a substring of
    # either), rowid = the record's rowid, positions not kept (detail=none: q's trigrams are looked up
    # together, and the records found checked by the LIKE of before). Both are fed by the log store's
    # batch in the same transaction (sqlite_logs.py), not by triggers, and backfilled here; retention
    # derives a record's side rows from the record itself to delete them. status=error reads the
    # failed records' own time index (a partial one: few records); status=success, most, logs_by_time.
    """
    CREATE TABLE log_metadata (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        log_created_at BIGINT NOT NULL,
        log_id TEXT NOT NULL,
        PRIMARY KEY (key, value, log_created_at, log_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO log_metadata (key, value, log_created_at, log_id)
        SELECT m.key, CAST(m.value AS TEXT), logs.created_at, logs.id
        FROM logs, json_each(CASE WHEN json_valid(logs.metadata) THEN
                                 CASE WHEN json_type(logs.metadata) = 'object' THEN logs.metadata END END) AS m
        WHERE m.type != 'null';

    CREATE VIRTUAL TABLE log_text USING fts5(path, error, content='', columnsize=0, detail=none, tokenize='trigram');
    INSERT INTO log_text (rowid, path, error) SELECT rowid, path, error FROM logs;

    CREATE INDEX logs_by_slug ON logs (slug, created_at) WHERE slug IS NOT NULL;
    CREATE INDEX logs_by_endpoint ON logs (endpoint, created_at);
    CREATE INDEX logs_failed_by_time ON logs (created_at, id) WHERE status >= 400;
    """,
    # 10: Responses the gateway answered for translated providers (store/responses.py), kept for
    # previous_response_id and GET/DELETE /v1/responses/{id}; expires_at is what upkeep deletes by.
    """
    CREATE TABLE stored_responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT,
        response TEXT NOT NULL,
        items TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX stored_responses_by_expiry ON stored_responses (expires_at);
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
