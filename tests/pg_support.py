"""PostgreSQL for tests: a database of its own per test on the machine's server, dropped afterwards.

The server is 127.0.0.1:5432 (trust auth, user postgres). Tests skip only when psycopg is not
installed; a server that does not answer fails them, it is not a reason to skip.
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from typing import Iterator

import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432"
# A fixed test master key: every store object on one database must seal with the same key.
MASTER_KEY = "bW9kZWxwb3J0LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU="


def need_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        pytest.skip("psycopg 3 and psycopg_pool are not installed (pip install 'modelport[postgres]')")


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped (with any session still on it) at the end."""
    import psycopg

    name = f"mp_test_{secrets.token_hex(6)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def open_test_store(url: str):
    from modelport.store.postgres import open_postgres_store

    return open_postgres_store(url, MASTER_KEY)
