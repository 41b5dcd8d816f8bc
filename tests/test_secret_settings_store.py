"""A secret provider setting in the store (store/rows.py): sealed in the settings JSON, shown as a hint,
opened only by resolve_provider, kept sealed through an update that leaves it alone, and re-sealed when
the master key rotates."""

from __future__ import annotations

from pathlib import Path

from modelport.store import open_sqlite_store
from modelport.store.base import SealedSetting, SecretSetting
from tests.test_vault import KEY_B, database_bytes, raw_sql

SECRET = "aws-secret-access-key-0123456789abcdef"


def test_a_secret_setting_is_sealed_shown_as_a_hint_and_resealed_on_rotation(tmp_path: Path) -> None:
    store = open_sqlite_store(tmp_path)
    record = store.create_provider("team-aws", provider="openai", secret="sk-test-key-0123456789",
                                   settings={"region": "eu-west-1", "secret_key": SecretSetting(SECRET)})
    shown = record.settings["secret_key"]
    assert isinstance(shown, SealedSetting) and SECRET not in repr(record) and shown == "aws-…cdef"
    assert store.resolve_provider("team-aws").settings == {"region": "eu-west-1", "secret_key": SECRET}

    # An update that passes the shown settings back (the CLI merges them) keeps the secret sealed as it was.
    store.update_provider("team-aws", settings={**store.get_provider("team-aws").settings, "region": "us-east-1"})
    assert store.resolve_provider("team-aws").settings == {"region": "us-east-1", "secret_key": SECRET}

    with raw_sql(store.path) as conn:
        (before,) = conn.execute("SELECT settings FROM providers WHERE slug = 'team-aws'").fetchone()
    assert SECRET not in before and '"$sealed"' in before
    assert store.vault.rotate(KEY_B, store) == 2  # the API key and the setting
    with raw_sql(store.path) as conn:
        (after,) = conn.execute("SELECT settings FROM providers WHERE slug = 'team-aws'").fetchone()
    assert after != before and SECRET not in after
    assert store.resolve_provider("team-aws").settings["secret_key"] == SECRET
    store.close()
    assert SECRET.encode() not in database_bytes(tmp_path)
