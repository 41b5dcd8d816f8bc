"""PostgreSQL schema migrations: a numbered list, applied in order, each recorded in ``schema_migrations``.

Migration N is ``MIGRATIONS[N - 1]``; to change the schema, append a script, never edit or reorder one
that has shipped (as ``migrations.py`` for SQLite). The row format is the one ``rows.py`` reads on both
stores: times are epoch milliseconds (``bigint``), so records come out the same; JSON is ``jsonb``
(loaded as text, which ``rows.py`` parses, see ``postgres.py``); flags are ``boolean``. Keys, slugs and
ids are ``COLLATE "C"`` so that paging orders them byte by byte, as SQLite does, whatever the
database's collation.

The change feed lives in the schema, not in the code that writes: a trigger on each table the hot path
replicates (keys, providers, configs) sends ``NOTIFY modelport_changes, '<table>:<id>'`` for every row
changed, inside the changing transaction, so it reaches listeners only on commit, and an edit made with
``psql`` is seen by every node too. An update of ``api_keys.last_used_at`` alone sends nothing (it
happens every 5 s per worker and the hot path does not read it). The log tables (migration 2, used by
``pg_logs.py``) send nothing: no cache holds them.

``apply_migrations`` runs under a session advisory lock, so nodes starting at once migrate one after
another: the first applies, the others find nothing left to do. A database migrated by newer code
(a version this list does not have) is refused: running older code on it could corrupt it.
"""

from __future__ import annotations

import time

import psycopg

CHANGES_CHANNEL = "modelport_changes"
# pg_advisory_lock's key for migrations: the bytes of "mp-migr", one constant for every node.
MIGRATION_LOCK = int.from_bytes(b"mp-migr", "big")


class SchemaTooNew(Exception):
    """The database has migrations this code does not know (postgres.py turns it into a StoreError)."""

    def __init__(self, database_version: int, code_version: int) -> None:
        super().__init__(database_version, code_version)
        self.database_version = database_version
        self.code_version = code_version


MIGRATIONS: list[str] = [
    # 1: what SQLite's migrations 1-8 built for the Store: keys, stored providers, configs, owners of
    # objects on shared accounts, the webhook relay; and the change feed's triggers.
    """
    CREATE TABLE api_keys (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
        scopes JSONB NOT NULL,
        allowed_providers JSONB NOT NULL,
        metadata JSONB NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_used_at BIGINT,
        log_bodies BOOLEAN NOT NULL DEFAULT TRUE,
        rate_limits JSONB,
        usage_limits JSONB,
        usage_reset_at BIGINT
    );

    CREATE TABLE providers (
        slug TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        secret_ciphertext TEXT,
        secret_hint TEXT,
        custom_host TEXT,
        settings JSONB NOT NULL,
        allowed_models JSONB NOT NULL,
        note TEXT,
        integration_slug TEXT COLLATE "C" REFERENCES providers (slug),
        usage_limits JSONB,
        rate_limits JSONB,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        usage_reset_at BIGINT
    );
    CREATE INDEX providers_by_integration ON providers (integration_slug);

    CREATE TABLE configs (
        id TEXT COLLATE "C" PRIMARY KEY,
        slug TEXT COLLATE "C" NOT NULL UNIQUE,
        name TEXT NOT NULL,
        config JSONB NOT NULL,
        is_default BOOLEAN NOT NULL DEFAULT FALSE,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    -- At most one default, whatever concurrent writers do (SQLite gets this from its one writer).
    CREATE UNIQUE INDEX configs_one_default ON configs ((TRUE)) WHERE is_default;

    CREATE TABLE owned_objects (
        slug TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (slug, id)
    );

    CREATE TABLE webhook_relays (
        slug TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        key_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT[] NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (slug, id)
    );
    CREATE TABLE webhook_receipts (
        slug TEXT COLLATE "C" NOT NULL,
        webhook_id TEXT COLLATE "C" NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (slug, webhook_id)
    );
    CREATE INDEX webhook_receipts_by_age ON webhook_receipts (received_at);

    -- The change feed. TG_ARGV[0] names the table's key column.
    CREATE FUNCTION modelport_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed JSONB := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    BEGIN
        IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'api_keys'
           AND to_jsonb(OLD) - 'last_used_at' = to_jsonb(NEW) - 'last_used_at' THEN
            RETURN NULL;  -- only last_used_at moved: nothing the hot path reads
        END IF;
        IF TG_OP = 'UPDATE' AND to_jsonb(OLD) ->> TG_ARGV[0] <> changed ->> TG_ARGV[0] THEN
            PERFORM pg_notify('modelport_changes', TG_TABLE_NAME || ':' || (to_jsonb(OLD) ->> TG_ARGV[0]));
        END IF;
        PERFORM pg_notify('modelport_changes', TG_TABLE_NAME || ':' || (changed ->> TG_ARGV[0]));
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION modelport_notify_change('id');
    CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE ON providers
        FOR EACH ROW EXECUTE FUNCTION modelport_notify_change('slug');
    CREATE TRIGGER configs_changed AFTER INSERT OR UPDATE OR DELETE ON configs
        FOR EACH ROW EXECUTE FUNCTION modelport_notify_change('id');
    -- TRUNCATE has no rows to name: listeners reload everything.
    CREATE FUNCTION modelport_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('modelport_changes', TG_TABLE_NAME || ':*');
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
        FOR EACH STATEMENT EXECUTE FUNCTION modelport_notify_truncate();
    CREATE TRIGGER providers_truncated AFTER TRUNCATE ON providers
        FOR EACH STATEMENT EXECUTE FUNCTION modelport_notify_truncate();
    CREATE TRIGGER configs_truncated AFTER TRUNCATE ON configs
        FOR EACH STATEMENT EXECUTE FUNCTION modelport_notify_truncate();
    """,
    # 2: request logs, feedback and the Replicate prediction ledger (store/pg_logs.py). ``logs`` is
    # partitioned by day on created_at (epoch ms); pg_logs.py creates the partitions, none exists here.
    # JSON kept as written is ``json`` (headers keep their order); ``metadata`` is ``jsonb`` for its GIN
    # index (``@>``); ``path`` and ``error`` have trigram indexes for the ``q`` filter (ILIKE).
    """
    CREATE EXTENSION IF NOT EXISTS pg_trgm;

    CREATE TABLE logs (
        id TEXT COLLATE "C" NOT NULL,
        trace_id TEXT COLLATE "C",
        created_at BIGINT NOT NULL,
        key_id TEXT COLLATE "C",
        key_name TEXT,
        provider TEXT COLLATE "C",
        slug TEXT COLLATE "C",
        endpoint TEXT COLLATE "C",
        method TEXT,
        path TEXT,
        model TEXT COLLATE "C",
        status INTEGER,
        latency_ms DOUBLE PRECISION,
        upstream_latency_ms DOUBLE PRECISION,
        request_bytes BIGINT,
        response_bytes BIGINT,
        cache_status TEXT,
        gateway_exception BOOLEAN NOT NULL DEFAULT FALSE,
        error TEXT,
        stream BOOLEAN NOT NULL DEFAULT FALSE,
        prediction_id TEXT COLLATE "C",
        input_tokens BIGINT,
        output_tokens BIGINT,
        total_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        cost_status TEXT,
        cost_reason TEXT,
        retry_count INTEGER,
        last_used_index TEXT,
        metadata JSONB,
        attempts JSON,
        usage JSON,
        request_headers JSON,
        response_headers JSON,
        request_body BYTEA,
        response_body BYTEA,
        request_content_type TEXT,
        response_content_type TEXT,
        span_id TEXT,
        parent_span_id TEXT,
        span_name TEXT,
        PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at);
    CREATE INDEX logs_by_time ON logs (created_at, id);
    CREATE INDEX logs_by_trace ON logs (trace_id);
    CREATE INDEX logs_by_provider ON logs (provider, created_at);
    CREATE INDEX logs_by_slug ON logs (slug, created_at);
    CREATE INDEX logs_by_key ON logs (key_id, created_at);
    CREATE INDEX logs_by_model ON logs (model, created_at);
    CREATE INDEX logs_by_endpoint ON logs (endpoint, created_at);
    CREATE INDEX logs_by_status ON logs (status, created_at);
    CREATE INDEX logs_by_prediction ON logs (prediction_id);
    CREATE INDEX logs_by_metadata ON logs USING gin (metadata jsonb_path_ops);
    CREATE INDEX logs_by_path_text ON logs USING gin (path gin_trgm_ops);
    CREATE INDEX logs_by_error_text ON logs USING gin (error gin_trgm_ops);

    CREATE TABLE feedback (
        id TEXT COLLATE "C" PRIMARY KEY,
        trace_id TEXT COLLATE "C" NOT NULL,
        value INTEGER NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        metadata JSON NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX feedback_by_trace ON feedback (trace_id, created_at, id);

    CREATE TABLE predictions (
        id TEXT COLLATE "C" PRIMARY KEY,
        provider TEXT NOT NULL,
        slug TEXT COLLATE "C",
        key_id TEXT COLLATE "C",
        model TEXT COLLATE "C",
        version TEXT,
        deployment TEXT,
        status TEXT COLLATE "C",
        created_at BIGINT NOT NULL,
        terminal_at BIGINT,
        predict_time DOUBLE PRECISION,
        cost_usd DOUBLE PRECISION,
        cost_status TEXT,
        cost_reason TEXT,
        usage JSON,
        first_log_id TEXT,
        terminal_log_id TEXT
    );
    CREATE INDEX predictions_by_time ON predictions (created_at, id);
    CREATE INDEX predictions_open ON predictions (created_at) WHERE terminal_at IS NULL;

    -- A prediction's status as one logged body shows it (the prediction itself, or its entry in a
    -- list page's results), NULL for a body that is not JSON (binary, or cut at log_body_max_bytes).
    CREATE FUNCTION modelport_seen_status(body BYTEA, prediction_id TEXT) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE
        doc JSONB;
        found TEXT;
    BEGIN
        IF body IS NULL THEN
            RETURN NULL;
        END IF;
        BEGIN
            doc := convert_from(body, 'UTF8')::jsonb;
        EXCEPTION WHEN OTHERS THEN
            RETURN NULL;
        END;
        IF jsonb_typeof(doc) <> 'object' THEN
            RETURN NULL;
        END IF;
        IF doc ->> 'id' = prediction_id AND jsonb_typeof(doc -> 'status') = 'string' THEN
            RETURN doc ->> 'status';
        END IF;
        IF jsonb_typeof(doc -> 'results') = 'array' THEN
            SELECT entry ->> 'status' INTO found FROM jsonb_array_elements(doc -> 'results') AS entry
            WHERE jsonb_typeof(entry) = 'object' AND entry ->> 'id' = prediction_id
              AND jsonb_typeof(entry -> 'status') = 'string' LIMIT 1;
        END IF;
        RETURN found;
    END;
    $$;
    """,
    # 3: Responses the gateway answered for translated providers (store/responses.py). JSON as text,
    # kept as written (a retrieved response keeps its keys' order); times in epoch ms like every table.
    """
    CREATE TABLE stored_responses (
        id TEXT COLLATE "C" PRIMARY KEY,
        owner TEXT COLLATE "C" NOT NULL,
        provider TEXT NOT NULL,
        model TEXT,
        response TEXT NOT NULL,
        items TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX stored_responses_by_expiry ON stored_responses (expires_at);
    """,
    # 4: fewer index entries a row (bench/README.md, "PostgreSQL log ingest", 2026-12-04). A column that
    # is NULL on most rows (error: successes; slug: calls without a stored provider; prediction_id:
    # all but Replicate's) is indexed only where it is set: every filter on it is an equality or an
    # ILIKE, which a NULL never matches, so the planner proves the partial index serves it. Rebuilding
    # them locks the logs table while it runs (an index on a partitioned table cannot be built
    # CONCURRENTLY): on a large table, migrate in a quiet hour.
    """
    DROP INDEX logs_by_slug;
    CREATE INDEX logs_by_slug ON logs (slug, created_at) WHERE slug IS NOT NULL;
    DROP INDEX logs_by_prediction;
    CREATE INDEX logs_by_prediction ON logs (prediction_id) WHERE prediction_id IS NOT NULL;
    DROP INDEX logs_by_error_text;
    CREATE INDEX logs_by_error_text ON logs USING gin (error gin_trgm_ops) WHERE error IS NOT NULL;
    """,
]


def schema_version(conn: psycopg.Connection) -> int:
    """The highest migration applied (0 for an empty database)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT COALESCE(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def apply_migrations(conn: psycopg.Connection, migrations: list[str] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks, each in its own transaction; returns their numbers.

    ``conn`` is in autocommit mode. Raises ``SchemaTooNew`` when the database is ahead of ``migrations``.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        newest = max(applied, default=0)
        if newest > len(migrations):
            raise SchemaTooNew(newest, len(migrations))
        done = []
        for number, script in enumerate(migrations, start=1):
            if number in applied:
                continue
            with conn.transaction():
                conn.execute(script)  # type: ignore[arg-type]  # a script is trusted code, not user input
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                    (number, time.time_ns() // 1_000_000),
                )
            done.append(number)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
