"""What only the PostgreSQL store has: ``modelport migrate``, refusing to start in one clear line, and
a change feed that survives losing its connection. (Everything both stores do is in test_store.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelport.keys import hash_api_key
from modelport.store import StoreError
from tests.pg_support import SERVER, fresh_database, need_psycopg, open_test_store

SRC = str(Path(__file__).resolve().parents[1] / "src")
pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url():
    need_psycopg()
    with fresh_database() as url:
        yield url


def modelport(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    clean.update(env or {}, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-m", "modelport", *args], env=clean, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


def test_migrate_applies_the_schema_once_and_then_has_nothing_to_do(database_url: str) -> None:
    from modelport.store.pg_migrations import MIGRATIONS

    first = modelport("migrate", "--database-url", database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Applied migration") and f"schema version {len(MIGRATIONS)}" in first.stdout
    again = modelport("migrate", "--json", env={"MODELPORT_DATABASE_URL": database_url})
    assert again.returncode == 0, again.stderr
    assert '"applied": []' in again.stdout
    store = open_test_store(database_url)  # a node starting on the migrated database
    store.create_api_key("works")
    store.close()


def test_migrate_without_a_database_says_how_to_give_one() -> None:
    result = modelport("migrate")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: give the database: --database-url postgresql://... or MODELPORT_DATABASE_URL"


def test_a_schema_newer_than_the_code_is_refused_in_one_line(database_url: str) -> None:
    import psycopg

    from modelport.store.pg_migrations import MIGRATIONS

    open_test_store(database_url).close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError) as refused:
        open_test_store(database_url)
    message = str(refused.value)
    assert "\n" not in message
    assert f"schema version {len(MIGRATIONS) + 1}, newer than this ModelPort knows ({len(MIGRATIONS)})" in message
    cli = modelport("migrate", "--database-url", database_url)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and "newer than this ModelPort" in cli.stderr


@pytest.mark.parametrize("url", [
    "mysql://root:hunter2@127.0.0.1/db",
    "postgresql://postgres:hunter2@[::1/db",
    "postgresql://postgres:hunter2@127.0.0.1:notaport/db",
    "postgresql://postgres:hunter2@127.0.0.1/db?no_such_option=1",
])  # fmt: skip
def test_a_malformed_url_is_refused_in_one_line_without_its_password(url: str) -> None:
    need_psycopg()
    with pytest.raises(StoreError) as refused:
        open_test_store(url)
    message = str(refused.value)
    assert "malformed" in message and "\n" not in message and "hunter2" not in message


def test_an_unreachable_server_is_refused_in_one_line_within_seconds() -> None:
    need_psycopg()
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(StoreError) as refused:
        open_test_store(f"postgresql://postgres:hunter2@127.0.0.1:{port}/modelport")
    assert time.monotonic() - started < 5
    message = str(refused.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/modelport")
    assert "\n" not in message and "hunter2" not in message


def test_a_node_on_postgresql_needs_its_master_key_from_settings(database_url: str) -> None:
    from modelport.store.postgres import open_postgres_store

    with pytest.raises(StoreError, match="MODELPORT_MASTER_KEY"):
        open_postgres_store(database_url, None)


def test_the_change_feed_reloads_what_it_missed_while_its_connection_was_down(database_url: str) -> None:
    import psycopg

    from modelport.store.pg_connect import FEED_APPLICATION_NAME

    store = open_test_store(database_url)
    record, token = store.create_api_key("k")
    store.create_provider("team", provider="replicate", secret="r8_test_first_secret")
    version = store.data_version()
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():  # the feed's session ends before this commits: its notification is lost
            conn.execute("UPDATE api_keys SET revoked_at = 1 WHERE id = %s", (record.id,))
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s", (FEED_APPLICATION_NAME,),
            ).fetchone()[0]  # fmt: skip
    assert killed == 1
    # While the feed is away, the hot path still answers from what it holds.
    assert store.resolve_provider("team").secret == "r8_test_first_secret"
    deadline = time.monotonic() + 3
    while store.get_api_key_by_hash(hash_api_key(token)).is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not store.get_api_key_by_hash(hash_api_key(token)).is_active()
    assert store.data_version() != version
    store.update_provider("team", secret="r8_test_second_secret")  # and it follows changes again
    assert store.resolve_provider("team").secret == "r8_test_second_secret"
    store.close()


def test_the_test_server_answers() -> None:
    """The PostgreSQL tests fail, not skip, when the server is down: this one says so first."""
    need_psycopg()
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_cli_works_on_a_database_url_with_no_local_data_dir(tmp_path):
    """The admin and logs CLI take the store from MODELPORT_DATABASE_URL, as serve does, not from a file."""
    from tests.pg_support import MASTER_KEY, fresh_database

    need_psycopg()
    with fresh_database() as url:
        env = {"PATH": "/usr/bin:/bin", "MODELPORT_DATABASE_URL": url, "MODELPORT_MASTER_KEY": MASTER_KEY,
               "MODELPORT_SIGNING_SECRET": "cli-test-signing-secret-0123456789abcdef"}
        def run(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "modelport", *args, "--data-dir", str(tmp_path / "none")]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

        created = run("keys", "create", "from-cli")
        assert created.returncode == 0, created.stderr
        listed = run("keys", "list")
        assert listed.returncode == 0 and "from-cli" in listed.stdout, listed.stderr
        logs = run("logs", "list")
        assert logs.returncode == 0, logs.stderr
