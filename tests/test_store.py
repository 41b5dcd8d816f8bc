"""The store contract: migrations, API keys, stored providers, configs, and cache invalidation, on
every implementation (the embedded SQLite store and the PostgreSQL store) so the two cannot drift."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

import modelport.store
from modelport.keys import hash_api_key
from modelport.store import Conflict, NotFound, open_sqlite_store
from modelport.store import migrations as sqlite_migrations
from modelport.vault import VaultError
from tests.pg_support import fresh_database, need_psycopg, open_test_store

SRC = str(Path(modelport.store.__file__).resolve().parents[2])


def raw_sql(path: Path) -> closing[sqlite3.Connection]:
    """A plain autocommit connection to the database, as another program (or an attacker) would open."""
    return closing(sqlite3.connect(path, isolation_level=None))


class SQLiteBackend:
    """How a test reaches the embedded store's database from outside the store object."""

    name = "sqlite"
    propagation_seconds = 0.0  # the change beacon: seen at once
    store_code = "from pathlib import Path; from modelport.store import open_sqlite_store\nstore = open_sqlite_store(Path(sys.argv[1]))"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.migrations = sqlite_migrations.MIGRATIONS
        self.sql_error: type[Exception] = sqlite3.OperationalError

    @property
    def store_args(self) -> list[str]:
        return [str(self.data_dir)]

    def open(self):
        return open_sqlite_store(self.data_dir)

    def execute(self, sql: str) -> list[tuple]:
        with raw_sql(self.data_dir / "modelport.db") as conn:
            return conn.execute(sql).fetchall()

    def apply_migrations(self, scripts: list[str]) -> list[int]:
        with raw_sql(self.data_dir / "modelport.db") as conn:
            return sqlite_migrations.apply_migrations(conn, scripts)

    def tables(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def stored_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.data_dir.glob("modelport.db*"))


class PostgresBackend:
    name = "postgres"
    propagation_seconds = 1.0  # the contract across store objects on PostgreSQL: within one second
    store_code = "from tests.pg_support import open_test_store\nstore = open_test_store(sys.argv[1])"

    def __init__(self, url: str) -> None:
        import psycopg

        from modelport.store import pg_migrations

        self.url = url
        self.migrations = pg_migrations.MIGRATIONS
        self.sql_error = psycopg.Error
        self._psycopg = psycopg
        self._pg_migrations = pg_migrations

    @property
    def store_args(self) -> list[str]:
        return [self.url]

    def open(self):
        return open_test_store(self.url)

    def execute(self, sql: str) -> list[tuple]:
        with self._psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def apply_migrations(self, scripts: list[str]) -> list[int]:
        with self._psycopg.connect(self.url, autocommit=True) as conn:
            return self._pg_migrations.apply_migrations(conn, scripts)

    def tables(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    def stored_bytes(self) -> bytes:
        dump = subprocess.run(["pg_dump", "--data-only", self.url], capture_output=True, check=True, timeout=60)
        return dump.stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, data_dir: Path):
    if request.param == "sqlite":
        yield SQLiteBackend(data_dir)
        return
    need_psycopg()
    with fresh_database() as url:
        yield PostgresBackend(url)


@pytest.fixture
def store(backend):
    store = backend.open()
    yield store
    store.close()


@pytest.fixture
def other(backend, store):
    """A second store object on the same database (another worker, or another node)."""
    other = backend.open()
    yield other
    other.close()


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(Path(__file__).resolve().parents[1])])
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)


def later(**delta: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(**delta)


def eventually(check: Callable[[], Any], within: float) -> Any:
    """``check()`` once it is true, polling for up to ``within`` seconds (0: it must be true now)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            assert result, f"not true within {within} s"
            return result
        time.sleep(0.005)


# -- files and migrations ------------------------------------------------------------------------
def test_database_is_one_private_file_in_wal_mode(data_dir: Path) -> None:
    store = open_sqlite_store(data_dir)
    db = data_dir / "modelport.db"
    assert store.path == db
    assert (db.stat().st_mode & 0o777) == 0o600
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    with raw_sql(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_migrations_are_recorded_and_not_reapplied(store, backend) -> None:
    store.create_api_key("survivor")
    store.close()
    again = backend.open()
    assert [k.name for k in again.list_api_keys().items] == ["survivor"]
    versions = [row[0] for row in backend.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(backend.migrations) + 1))
    assert backend.apply_migrations(backend.migrations) == []  # applying them again does nothing
    again.close()


def test_adding_a_migration_is_appending_one_script(store, backend) -> None:
    extended = [*backend.migrations, "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT);"]
    assert backend.apply_migrations(extended) == [len(extended)]
    assert backend.apply_migrations(extended) == []
    backend.execute("INSERT INTO notes VALUES ('a', 'b')")


def test_a_failing_migration_leaves_the_schema_unchanged(store, backend) -> None:
    broken = [*backend.migrations, "CREATE TABLE half (id TEXT);\nINSERT INTO no_such_table VALUES (1);"]
    with pytest.raises(backend.sql_error):
        backend.apply_migrations(broken)
    assert "half" not in backend.tables()
    assert backend.execute("SELECT max(version) FROM schema_migrations")[0][0] == len(backend.migrations)


def test_processes_opening_a_new_database_at_once_all_succeed(backend) -> None:
    code = f"import sys\n{backend.store_code}\nstore.create_api_key('p'); print(store.data_version())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(Path(__file__).resolve().parents[1])])
    command = [sys.executable, "-c", code, *backend.store_args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(command, env=env, **pipes) for _ in range(6)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, results
    store = backend.open()
    assert len(store.list_api_keys().items) == 6
    assert backend.execute("SELECT count(*) FROM schema_migrations")[0][0] == len(backend.migrations)
    store.close()


# -- gateway API keys ----------------------------------------------------------------------------
def test_a_key_is_found_by_the_hash_of_its_plaintext(store) -> None:
    record, token = store.create_api_key("ci", scopes=["inference", "logs.read"], metadata={"team": "ml"})
    assert token.startswith("mp-") and record.prefix == token[:10]
    found = store.get_api_key_by_hash(hash_api_key(token))
    assert found == record
    assert found.id.startswith("key_") and found.scopes == ("inference", "logs.read")
    assert found.metadata == {"team": "ml"} and found.is_active()
    assert store.get_api_key_by_hash(hash_api_key(token + "x")) is None


def test_key_plaintext_is_never_stored(store, backend) -> None:
    tokens = [store.create_api_key(f"k{i}")[1] for i in range(3)]
    tokens.append(store.rotate_api_key(store.list_api_keys().items[0].id)[1])
    blob = backend.stored_bytes()
    for token in tokens:
        assert token.encode() not in blob
        assert token[10:].encode() not in blob


def test_rotating_a_key_keeps_its_id_and_the_old_secret_stops_working(store) -> None:
    record, old = store.create_api_key("svc", scopes=["inference"], allowed_providers=["@team-a"])
    rotated, new = store.rotate_api_key(record.id)
    assert rotated.id == record.id and new != old
    assert rotated.allowed_providers == ("@team-a",)
    assert store.get_api_key_by_hash(hash_api_key(old)) is None
    assert store.get_api_key_by_hash(hash_api_key(new)).id == record.id


def test_a_revoked_key_is_inactive_and_cannot_be_rotated_back_to_life(store) -> None:
    record, token = store.create_api_key("leaked")
    revoked = store.revoke_api_key(record.id)
    assert revoked.revoked_at is not None and not revoked.is_active()
    assert not store.get_api_key_by_hash(hash_api_key(token)).is_active()
    with pytest.raises(Conflict):
        store.rotate_api_key(record.id)


def test_a_key_expires_at_its_expiry_time(store) -> None:
    record, _ = store.create_api_key("temp", expires_at=later(hours=1))
    assert record.is_active()
    assert not record.is_active(now=later(hours=2))


def test_updating_a_key_changes_only_the_given_fields(store) -> None:
    record, _ = store.create_api_key("a", scopes=["inference"], expires_at=later(days=1), metadata={"x": 1})
    updated = store.update_api_key(record.id, name="b", expires_at=None)
    assert (updated.name, updated.expires_at, updated.scopes, updated.metadata) == ("b", None, ("inference",), {"x": 1})
    with pytest.raises(ValueError):
        store.update_api_key(record.id, name=None)
    with pytest.raises(NotFound):
        store.update_api_key("key_missing", name="c")


def test_unknown_scopes_are_refused(store) -> None:
    with pytest.raises(ValueError, match="inferance"):
        store.create_api_key("typo", scopes=["inferance"])
    assert store.list_api_keys().items == ()


def test_admin_scope_implies_every_scope_and_empty_providers_mean_all(store) -> None:
    admin, _ = store.create_api_key("root", scopes=["admin"])
    narrow, _ = store.create_api_key("narrow", allowed_providers=["replicate", "@team-a"])
    assert admin.has_scope("providers.write") and admin.allows_target("@anything")
    assert not narrow.has_scope("logs.read")
    assert narrow.allows_target("@team-a") and narrow.allows_target("replicate")
    assert not narrow.allows_target("@team-b")


def test_an_imported_token_works_like_a_generated_one(store) -> None:
    token = "mp-bootstrap-admin-key-0123456789abcdef"
    record, returned = store.create_api_key("admin", scopes=["admin"], token=token)
    assert returned == token and store.get_api_key_by_hash(hash_api_key(token)) == record
    with pytest.raises(ValueError):
        store.create_api_key("weak", token="admin")
    with pytest.raises(Conflict):
        store.create_api_key("twice", token=token)


def test_keys_list_in_creation_order_page_by_page(store) -> None:
    ids = [store.create_api_key(f"k{i}")[0].id for i in range(7)]
    seen, cursor = [], None
    while True:
        page = store.list_api_keys(limit=3, cursor=cursor)
        seen += [k.id for k in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids


def test_a_deleted_key_is_gone(store) -> None:
    record, token = store.create_api_key("old")
    store.delete_api_key(record.id)
    assert store.get_api_key(record.id) is None and store.get_api_key_by_hash(hash_api_key(token)) is None
    with pytest.raises(NotFound):
        store.delete_api_key(record.id)


def test_last_used_only_moves_forward(store) -> None:
    record, _ = store.create_api_key("busy")
    t1 = datetime(2030, 1, 1, tzinfo=timezone.utc)
    store.touch_api_keys({record.id: t1})
    store.touch_api_keys({record.id: t1 - timedelta(hours=1)})
    assert store.get_api_key(record.id).last_used_at == t1


# -- data_version: cache invalidation ------------------------------------------------------------
def test_data_version_moves_on_this_process_writes(store) -> None:
    before = store.data_version()
    assert store.data_version() == before
    record, _ = store.create_api_key("k")
    after_create = store.data_version()
    assert after_create != before
    store.revoke_api_key(record.id)
    assert store.data_version() != after_create


def test_data_version_moves_when_another_thread_writes(store) -> None:
    record, _ = store.create_api_key("k")
    before = store.data_version()
    worker = threading.Thread(target=store.revoke_api_key, args=(record.id,))
    worker.start()
    worker.join()
    assert store.data_version() != before


def test_a_key_revoked_by_another_process_is_seen_in_time(store, backend) -> None:
    record, token = store.create_api_key("shared")
    before = store.data_version()
    code = f"import sys\n{backend.store_code}\nstore.revoke_api_key(sys.argv[-1])"
    result = run_python(code, *backend.store_args, record.id)
    assert result.returncode == 0, result.stderr
    eventually(lambda: not store.get_api_key_by_hash(hash_api_key(token)).is_active(), backend.propagation_seconds)
    assert store.data_version() != before


def test_data_version_ignores_writes_that_do_not_touch_cached_state(store, backend) -> None:
    record, _ = store.create_api_key("k")
    before = store.data_version()
    store.touch_api_keys({record.id: later(seconds=1)})
    store.record_owner("replicate-prod", "p1", "prediction", record.id)
    backend.execute("CREATE TABLE IF NOT EXISTS request_logs (id INTEGER PRIMARY KEY, body TEXT)")
    backend.execute("INSERT INTO request_logs (id, body) VALUES (1, 'a log line')")
    time.sleep(backend.propagation_seconds / 4)  # room for a notification, were one sent
    assert store.data_version() == before


# -- stored providers ----------------------------------------------------------------------------
def test_a_stored_provider_resolves_with_its_decrypted_secret(store) -> None:
    stored = store.create_provider(
        "team-rep", provider="replicate", secret="r8_test_token_team", settings={"region": "eu"},
        allowed_models=["meta/llama"], usage_limits={"credit_limit": 10, "type": "cost"},
    )  # fmt: skip
    assert stored.secret_hint == "r8…am" and stored.has_secret
    assert "r8_test_token_team" not in repr(stored)
    resolved = store.resolve_provider("team-rep")
    assert resolved.secret == "r8_test_token_team"
    assert "r8_test_token_team" not in repr(resolved)
    assert (resolved.provider, resolved.settings, resolved.usage_limits) == (
        "replicate", {"region": "eu"}, {"credit_limit": 10, "type": "cost"},
    )  # fmt: skip
    assert resolved.allows_model("meta/llama") and not resolved.allows_model("other/model")
    assert store.resolve_provider("missing") is None


def test_a_provider_inherits_what_it_does_not_set_from_its_integration(store) -> None:
    store.create_provider(
        "org-azure", kind="integration", provider="azure-openai", secret="sk-test-azure",
        custom_host="https://azure.example.com/", settings={"resource_name": "org", "api_version": "2024-02-01"},
    )  # fmt: skip
    store.create_provider("team-azure", integration_slug="org-azure", settings={"deployment_id": "gpt4o"})
    resolved = store.resolve_provider("team-azure")
    assert resolved.provider == "azure-openai" and resolved.secret == "sk-test-azure"
    assert resolved.custom_host == "https://azure.example.com"
    assert resolved.settings == {"resource_name": "org", "api_version": "2024-02-01", "deployment_id": "gpt4o"}
    assert store.get_provider("team-azure").secret_hint is None
    store.update_provider("team-azure", secret="sk-test-team-own")
    assert store.resolve_provider("team-azure").secret == "sk-test-team-own"


def test_an_integration_model_list_narrows_its_providers_never_widens(store) -> None:
    store.create_provider("org", kind="integration", provider="openai", secret="sk-test-o", allowed_models=["a", "b"])
    store.create_provider("wide", integration_slug="org", allowed_models=["b", "c"])
    store.create_provider("same", integration_slug="org")
    store.create_provider("none", integration_slug="org", allowed_models=["c"])
    assert store.resolve_provider("wide").allowed_models == {"b"}
    assert store.resolve_provider("same").allowed_models == {"a", "b"}
    assert not store.resolve_provider("none").allows_model("c")


def test_integration_links_are_checked(store) -> None:
    store.create_provider("org", kind="integration", provider="openai", secret="sk-test-o")
    with pytest.raises(ValueError, match="does not match"):
        store.create_provider("bad", provider="anthropic", integration_slug="org")
    with pytest.raises(NotFound):
        store.create_provider("dangling", integration_slug="nope")
    with pytest.raises(ValueError, match="only a 'provider'"):
        store.create_provider("vk", kind="virtual-key", integration_slug="org")
    with pytest.raises(ValueError, match="provider id"):
        store.create_provider("bare")
    store.create_provider("team", integration_slug="org")
    with pytest.raises(Conflict, match="team"):
        store.delete_provider("org")
    store.delete_provider("team")
    store.delete_provider("org")
    assert store.get_provider("org") is None


def test_slugs_are_unique_across_kinds_and_well_formed(store) -> None:
    store.create_provider("shared", kind="virtual-key", provider="openai", secret="sk-test-1")
    with pytest.raises(Conflict):
        store.create_provider("shared", kind="integration", provider="openai", secret="sk-test-2")
    for slug in ("Upper", "has space", "@at", "", "x" * 65):
        with pytest.raises(ValueError):
            store.create_provider(slug, provider="openai")
    with pytest.raises(ValueError):
        store.create_provider("host", provider="openai", custom_host="ftp://example.com")


def test_updating_a_provider_secret_replaces_it_and_none_clears_it(store) -> None:
    store.create_provider("p", provider="replicate", secret="r8_test_first_secret")
    updated = store.update_provider("p", secret="r8_test_second_secret", note="rotated")
    assert updated.secret_hint == "r8…et" and updated.note == "rotated"
    assert store.resolve_provider("p").secret == "r8_test_second_secret"
    store.update_provider("p", secret=None)
    assert store.resolve_provider("p").secret is None and not store.get_provider("p").has_secret


def test_a_ciphertext_moved_to_another_record_does_not_decrypt(store, backend) -> None:
    store.create_provider("victim", provider="openai", secret="sk-test-victim")
    store.create_provider("attacker", provider="openai", secret="sk-test-attacker")
    sealed = store.resolve_provider("attacker")
    backend.execute(
        "UPDATE providers SET secret_ciphertext = (SELECT secret_ciphertext FROM providers WHERE slug = 'victim')"
        " WHERE slug = 'attacker'"
    )

    def moved() -> bool:  # an edit made outside the store reaches its hot path too (PostgreSQL: the feed)
        try:
            return store.resolve_provider("attacker") != sealed and False
        except VaultError:
            return True

    eventually(moved, backend.propagation_seconds)


def test_providers_list_by_kind(store) -> None:
    store.create_provider("b-int", kind="integration", provider="openai", secret="sk-test-1")
    store.create_provider("a-vk", kind="virtual-key", provider="openai", secret="sk-test-2")
    assert [p.slug for p in store.list_providers().items] == ["a-vk", "b-int"]
    assert [p.slug for p in store.list_providers(kind="integration").items] == ["b-int"]


# -- configs -------------------------------------------------------------------------------------
def test_a_config_is_found_by_id_or_slug(store) -> None:
    body = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@a"}, {"provider": "@b"}]}
    config = store.create_config("fallback", body, slug="prod-fallback")
    assert config.id.startswith("pc-") and config.status == "active"
    assert store.get_config(config.id) == store.get_config("prod-fallback") == config
    assert config.config == body
    plain = store.create_config("plain", {"retry": {"attempts": 2}})
    assert plain.slug == plain.id
    with pytest.raises(Conflict):
        store.create_config("again", {}, slug="prod-fallback")
    with pytest.raises(ValueError):
        store.create_config("sneaky", {}, slug="pc-not-mine")


def test_only_one_config_is_the_default(store) -> None:
    first = store.create_config("first", {}, is_default=True)
    second = store.create_config("second", {}, is_default=True)
    assert store.get_default_config().id == second.id
    store.update_config(first.id, is_default=True)
    assert store.get_default_config().id == first.id
    assert not store.get_config(second.id).is_default


def test_updating_and_deleting_a_config(store) -> None:
    config = store.create_config("c", {"cache": {"mode": "simple"}}, slug="c")
    updated = store.update_config("c", status="archived", config={"cache": {"mode": "semantic"}})
    assert (updated.status, updated.config) == ("archived", {"cache": {"mode": "semantic"}})
    with pytest.raises(ValueError):
        store.update_config("c", status="deleted")
    with pytest.raises(ValueError):
        store.update_config("c", config=None)
    store.delete_config(config.id)
    assert store.get_config("c") is None
    with pytest.raises(NotFound):
        store.delete_config("c")


def test_a_store_opened_before_a_fork_works_in_the_child_and_the_parent(store, backend) -> None:
    record, token = store.create_api_key("forked")
    pid = os.fork()
    if pid == 0:  # the child: as a worker forked from a parent that had the store open
        try:
            store.revoke_api_key(record.id)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    eventually(lambda: not store.get_api_key_by_hash(hash_api_key(token)).is_active(), backend.propagation_seconds)
    store.create_api_key("after")
    assert [k.name for k in store.list_api_keys().items] == ["forked", "after"]


def test_an_objects_first_owner_stays_and_recording_it_empties_no_cache(store) -> None:
    version = store.data_version()
    store.record_owner("replicate-prod", "p1", "prediction", "key_a")
    store.record_owner("replicate-prod", "p1", "prediction", "key_b")  # a replayed create changes nothing
    store.record_owner("replicate-prod", "f1", "file", "key_b")
    assert store.owners_of("replicate-prod", ["p1", "f1", "unknown"]) == {"p1": "key_a", "f1": "key_b"}
    assert store.owners_of("replicate-other", ["p1"]) == {}  # owned on one account, not on another
    assert store.data_version() == version


# -- two store objects on one database (two workers, or two nodes) --------------------------------
def test_changes_through_one_store_reach_the_others_hot_path_in_time(store, other, backend) -> None:
    within = backend.propagation_seconds
    record, token = store.create_api_key("shared")
    eventually(lambda: other.get_api_key_by_hash(hash_api_key(token)) == record, within)

    rotated, new_token = store.rotate_api_key(record.id)
    eventually(lambda: other.get_api_key_by_hash(hash_api_key(new_token)) is not None, within)
    assert other.get_api_key_by_hash(hash_api_key(token)) is None  # the old secret went with the rotation

    store.revoke_api_key(record.id)
    eventually(lambda: not other.get_api_key_by_hash(hash_api_key(new_token)).is_active(), within)

    store.create_provider("team", provider="replicate", secret="r8_test_first_secret")
    eventually(lambda: other.resolve_provider("team") is not None, within)
    store.update_provider("team", secret="r8_test_rotated_secret")
    eventually(lambda: other.resolve_provider("team").secret == "r8_test_rotated_secret", within)

    config = store.create_config("c", {"retry": {"attempts": 2}}, slug="prod", is_default=True)
    eventually(lambda: other.get_config("prod") == config and other.get_default_config() == config, within)
    store.update_config("prod", config={"retry": {"attempts": 5}})
    eventually(lambda: other.get_config(config.id).config == {"retry": {"attempts": 5}}, within)
    store.delete_config("prod")
    eventually(lambda: other.get_config("prod") is None and other.get_default_config() is None, within)
    store.delete_provider("team")
    eventually(lambda: other.resolve_provider("team") is None and other.get_provider("team") is None, within)


def test_a_key_seen_revoked_is_never_served_as_active_again(store, other, backend) -> None:
    record, token = store.create_api_key("leaked")
    key_hash = hash_api_key(token)
    eventually(lambda: other.get_api_key_by_hash(key_hash) is not None, backend.propagation_seconds)
    seen: list[bool] = []
    stop = threading.Event()

    def watch() -> None:  # the hot path of another worker, reading as fast as it can
        while not stop.is_set():
            found = other.get_api_key_by_hash(key_hash)
            seen.append(found is not None and found.is_active())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        time.sleep(0.05)
        store.update_api_key(record.id, name="still-leaked")  # changes that keep it active, around the revoke
        store.revoke_api_key(record.id)
        for i in range(5):
            store.update_api_key(record.id, metadata={"after": i})
        eventually(lambda: seen and not seen[-1], max(backend.propagation_seconds, 0.5))  # the watcher catches up
        time.sleep(0.1)
    finally:
        stop.set()
        watcher.join()
    first_revoked = seen.index(False)
    assert seen[0] and not any(seen[first_revoked:])


def test_a_change_is_seen_by_the_same_store_when_the_call_returns(store) -> None:
    # Read-your-writes: the control plane creates a key and the caller uses it at once.
    for i in range(20):
        _, token = store.create_api_key(f"k{i}")
        assert store.get_api_key_by_hash(hash_api_key(token)) is not None


def test_two_stores_setting_the_default_at_once_leave_exactly_one(store, other) -> None:
    configs = [store.create_config(f"c{i}", {"retry": {"attempts": i + 1}}) for i in range(4)]
    errors: list[BaseException] = []

    def flip(which, mine) -> None:
        try:
            for _ in range(10):
                for config in mine:
                    which.update_config(config.id, is_default=True)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(store, configs[:2])), threading.Thread(target=flip, args=(other, configs[2:]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(config.is_default for config in store.list_configs().items) == 1


# -- secrets at rest -----------------------------------------------------------------------------
def test_a_provider_secret_is_stored_sealed_by_the_vault(store, backend) -> None:
    store.create_provider("team", provider="replicate", secret="r8_test_secret_at_rest_0123")
    assert b"r8_test_secret_at_rest_0123" not in backend.stored_bytes()
    sealed = backend.execute("SELECT secret_ciphertext FROM providers WHERE slug = 'team'")[0][0]
    assert sealed.startswith(f"v1:{store.vault.current_key_id}:")


def test_rotating_the_master_key_reseals_every_secret(store, backend) -> None:
    for i in range(3):
        store.create_provider(f"p{i}", provider="openai", secret=f"sk-test-rotate-{i}")
    before = {row[0] for row in backend.execute("SELECT secret_ciphertext FROM providers")}
    new_key = os.urandom(32)
    assert store.vault.rotate(new_key, store) == 3
    after = {row[0] for row in backend.execute("SELECT secret_ciphertext FROM providers")}
    assert not before & after
    assert all(sealed.startswith(f"v1:{store.vault.current_key_id}:") for sealed in after)
    assert [store.resolve_provider(f"p{i}").secret for i in range(3)] == [f"sk-test-rotate-{i}" for i in range(3)]


# -- stored Responses (store/responses.py) --------------------------------------------------------
def _stored_response(response_id: str = "resp_1", owner: str = "key_a", expires_at: int = 2_000_000_000_000):
    from modelport.store.responses import StoredResponse

    response = {"id": response_id, "object": "response", "output": [{"type": "message", "role": "assistant",
                                                                    "content": [{"type": "output_text", "text": "hi"}]}],
                "z_last": 1, "a_first": 2}  # keys out of order: kept as written
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "\u0000 héllo"}]}]
    return StoredResponse(response_id, owner, "anthropic", "claude-x", response, items, 1_000, expires_at)


def test_a_stored_response_is_read_back_whole_by_its_owner_and_an_admin_only(store) -> None:
    kept = _stored_response()
    version = store.data_version()
    store.keep_response(kept)
    assert store.data_version() == version  # no hot-path cache holds these rows
    assert store.stored_response("resp_1", "key_a", 5_000) == kept
    assert list(store.stored_response("resp_1", None, 5_000).response) == ["id", "object", "output", "z_last", "a_first"]
    assert store.stored_response("resp_1", "key_b", 5_000) is None  # another key's: as if unknown
    assert store.stored_response("resp_2", None, 5_000) is None
    store.keep_response(_stored_response(owner="key_b"))  # the same id again changes nothing
    assert store.stored_response("resp_1", "key_a", 5_000) == kept


def test_a_stored_response_is_deleted_by_its_owner_or_an_admin_only(store) -> None:
    store.keep_response(_stored_response("resp_1"))
    store.keep_response(_stored_response("resp_2"))
    assert store.delete_stored_response("resp_1", "key_b", 5_000) is False
    assert store.delete_stored_response("resp_1", "key_a", 5_000) is True
    assert store.delete_stored_response("resp_1", "key_a", 5_000) is False
    assert store.delete_stored_response("resp_2", None, 5_000) is True
    assert store.stored_response("resp_1", None, 5_000) is None and store.stored_response("resp_2", None, 5_000) is None


def test_an_expired_response_is_not_found_and_upkeep_deletes_it(store) -> None:
    store.keep_response(_stored_response("resp_old", expires_at=10_000))
    store.keep_response(_stored_response("resp_new", expires_at=20_000))
    assert store.stored_response("resp_old", "key_a", 9_999) is not None
    assert store.stored_response("resp_old", "key_a", 10_000) is None  # expired, though not yet deleted
    assert store.delete_stored_response("resp_old", None, 10_000) is False
    assert store.forget_expired_responses(15_000) == 1
    assert store.stored_response("resp_old", None, 0) is None and store.stored_response("resp_new", None, 15_000) is not None
