"""Provider secrets at rest: AES-256-GCM under a master key, bound to their record, rotatable."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import modelport.store
from modelport.keys import generate_api_key, hash_api_key, mask_secret, verify_api_key
from modelport.store import open_sqlite_store
from modelport.vault import KEY_FILE_NAME, Vault, VaultError, generate_master_key, key_id, parse_master_key

SRC = str(Path(modelport.store.__file__).resolve().parents[2])
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))

SECRETS = {"team-rep": "r8_test_token_rep_one", "team-oai": "sk-test-openai-two", "org-ant": "sk-test-anthropic-3"}


def raw_sql(path: Path) -> closing[sqlite3.Connection]:
    """A plain autocommit connection to the database, as another program (or an attacker) would open."""
    return closing(sqlite3.connect(path, isolation_level=None))


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("modelport.db*")))


def fill(store) -> None:
    store.create_provider("team-rep", provider="replicate", secret=SECRETS["team-rep"])
    store.create_provider("team-oai", kind="virtual-key", provider="openai", secret="sk-test-replaced-later")
    store.update_provider("team-oai", secret=SECRETS["team-oai"])
    store.create_provider("org-ant", kind="integration", provider="anthropic", secret=SECRETS["org-ant"])
    store.create_provider("team-ant", integration_slug="org-ant")


# -- the cipher ----------------------------------------------------------------------------------
def test_a_secret_round_trips_and_the_ciphertext_names_its_key() -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt("r8_test_token", "provider:a")
    version, kid, _, _ = sealed.split(":")
    assert (version, kid) == ("v1", key_id(KEY_A))
    assert "r8_test_token" not in sealed
    assert vault.decrypt(sealed, "provider:a") == "r8_test_token"
    assert vault.encrypt("r8_test_token", "provider:a") != sealed  # fresh nonce every time


def test_a_ciphertext_opens_only_in_its_own_context_and_untampered() -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt("sk-test-openai", "provider:a")
    with pytest.raises(VaultError):
        vault.decrypt(sealed, "provider:b")
    version, kid, nonce, body = sealed.split(":")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(VaultError):
        vault.decrypt(":".join((version, kid, nonce, flipped)), "provider:a")
    with pytest.raises(VaultError):
        Vault([KEY_B]).decrypt(sealed, "provider:a")
    with pytest.raises(VaultError):
        vault.decrypt("not-a-ciphertext", "provider:a")


def test_master_keys_are_read_as_base64_or_hex_of_32_bytes() -> None:
    assert parse_master_key(base64.b64encode(KEY_A).decode()) == KEY_A
    assert parse_master_key(base64.urlsafe_b64encode(KEY_B).decode().rstrip("=")) == KEY_B
    assert parse_master_key(KEY_A.hex()) == KEY_A
    assert len(parse_master_key(generate_master_key())) == 32
    for bad in ("", "short", base64.b64encode(b"x" * 16).decode(), "zz" * 32):
        with pytest.raises(VaultError):
            parse_master_key(bad)


def test_a_given_master_key_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    vault = Vault.open(tmp_path, KEY_A.hex())
    assert vault.current_key_id == key_id(KEY_A) and vault.key_file is None
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_a_keyring_from_the_environment_seals_with_the_first_and_opens_with_all(tmp_path: Path) -> None:
    old = Vault.open(tmp_path, KEY_A.hex())
    sealed_old = old.encrypt("sk-test-old", "provider:x")
    ring = Vault.open(tmp_path, f"{KEY_B.hex()},{KEY_A.hex()}")
    assert ring.current_key_id == key_id(KEY_B)
    assert ring.decrypt(sealed_old, "provider:x") == "sk-test-old"


def test_the_key_file_is_generated_once_and_private(tmp_path: Path) -> None:
    first = Vault.open(tmp_path, None)
    key_file = tmp_path / KEY_FILE_NAME
    assert (key_file.stat().st_mode & 0o777) == 0o600
    second = Vault.open(tmp_path, None)
    assert first.current_key_id == second.current_key_id
    assert second.decrypt(first.encrypt("sk-test-x", "c"), "c") == "sk-test-x"


def test_processes_starting_together_agree_on_one_key_file(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from modelport.vault import Vault\n"
        "print(Vault.open(Path(sys.argv[1]), None).current_key_id)"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and ids != {""}
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


# -- secrets in the store ------------------------------------------------------------------------
def test_no_raw_secret_reaches_the_database_files(tmp_path: Path) -> None:
    store = open_sqlite_store(tmp_path)
    fill(store)
    token = store.create_api_key("k")[1]
    store.vault.rotate(KEY_B, store)
    store.update_provider("team-rep", secret="r8_test_token_rep_new")
    blob = database_bytes(tmp_path)
    assert blob
    for secret in [*SECRETS.values(), "sk-test-replaced-later", "r8_test_token_rep_new", token]:
        assert secret.encode() not in blob, secret
    assert store.resolve_provider("team-ant").secret == SECRETS["org-ant"]
    store.close()


def test_rotation_reseals_every_secret_and_retires_the_old_key(tmp_path: Path) -> None:
    store = open_sqlite_store(tmp_path)
    fill(store)
    old_key = parse_master_key((tmp_path / KEY_FILE_NAME).read_text().strip())
    query = "SELECT secret_ciphertext FROM providers WHERE slug != 'team-ant'"
    with raw_sql(store.path) as conn:
        old_ciphertexts = [row[0] for row in conn.execute(query)]
    version = store.data_version()

    assert store.vault.rotate(KEY_B, store) == 3

    assert store.data_version() != version
    assert store.vault.key_ids == (key_id(KEY_B),)
    assert (tmp_path / KEY_FILE_NAME).read_text().split() == [base64.b64encode(KEY_B).decode()]
    assert (tmp_path / KEY_FILE_NAME).stat().st_mode & 0o777 == 0o600
    for slug, secret in SECRETS.items():
        assert store.resolve_provider(slug).secret == secret
    store.close()
    # The retired key opens nothing, and its ciphertexts are gone from the file and the WAL.
    retired = open_sqlite_store(tmp_path, base64.b64encode(old_key).decode())
    with pytest.raises(VaultError):
        retired.resolve_provider("team-rep")
    blob = database_bytes(tmp_path)
    assert not any(c.split(":")[3].encode() in blob for c in old_ciphertexts)
    retired.close()


def test_rotation_with_a_key_from_the_environment_keeps_everything_readable(tmp_path: Path) -> None:
    store = open_sqlite_store(tmp_path, KEY_A.hex())
    fill(store)
    assert store.vault.rotate(KEY_B, store) == 3
    store.close()
    renewed = open_sqlite_store(tmp_path, base64.b64encode(KEY_B).decode())
    assert {slug: renewed.resolve_provider(slug).secret for slug in SECRETS} == SECRETS
    renewed.close()


def test_a_failed_rotation_leaves_every_secret_readable(tmp_path: Path) -> None:
    store = open_sqlite_store(tmp_path)
    fill(store)
    with raw_sql(store.path) as conn:  # one secret no key can open: the rotation must abort
        conn.execute("UPDATE providers SET secret_ciphertext = 'v1:000000000000:AAAA:AAAA' WHERE slug = 'team-oai'")
    with pytest.raises(VaultError):
        store.vault.rotate(KEY_B, store)
    reopened = open_sqlite_store(tmp_path)
    assert reopened.resolve_provider("team-rep").secret == SECRETS["team-rep"]
    assert reopened.resolve_provider("team-ant").secret == SECRETS["org-ant"]
    store.close()
    reopened.close()


def test_another_process_sharing_the_data_dir_follows_a_rotation(tmp_path: Path) -> None:
    gateway = open_sqlite_store(tmp_path)
    fill(gateway)
    assert gateway.resolve_provider("team-rep").secret == SECRETS["team-rep"]
    code = (
        "import sys; from pathlib import Path; from modelport.store import open_sqlite_store\n"
        "s = open_sqlite_store(Path(sys.argv[1])); print(s.vault.rotate(bytes(range(32, 64)), s))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "3", result.stderr
    assert gateway.resolve_provider("team-rep").secret == SECRETS["team-rep"]
    gateway.update_provider("team-oai", secret="sk-test-after-rotation")
    assert gateway.vault.current_key_id == key_id(KEY_B)
    gateway.close()


# -- gateway API key helpers ---------------------------------------------------------------------
def test_api_keys_are_long_random_base62_with_a_visible_prefix() -> None:
    token, prefix, digest = generate_api_key()
    assert token.startswith("mp-") and len(token) == 46 and token[3:].isalnum()
    assert prefix == token[:10] and digest == hash_api_key(token) and len(digest) == 64
    assert generate_api_key()[0] != token
    assert verify_api_key(token, digest) and not verify_api_key(token + "x", digest)


def test_masked_secrets_reveal_at_most_a_quarter() -> None:
    assert mask_secret("r8_" + "a" * 37) == "r8_a…aaaa"
    assert mask_secret("r8_test_token") == "r…n"
    assert mask_secret("short") == "…"
