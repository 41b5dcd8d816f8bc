"""Reaching PostgreSQL: the one way to open a connection, the checks a database URL must pass, and the
migrations a node applies on open or ``modelport migrate`` applies on demand.

A node refuses to start with one line (``StoreUnavailable``) a person can act on: a malformed URL, a
server that does not answer within ``CONNECT_TIMEOUT_SECONDS``, a schema newer than the code. No
message carries the URL's password (libpq's own messages may quote the URL, so they are redacted too).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.types.string import TextLoader

from .base import StoreUnavailable
from .pg_migrations import MIGRATIONS, SchemaTooNew, apply_migrations

CONNECT_TIMEOUT_SECONDS = 3
APPLICATION_NAME = "modelport"  # as pg_stat_activity shows the store's connections
FEED_APPLICATION_NAME = "modelport-changes"  # and the change feed's

# jsonb loaded as its text, which rows.py parses as it parses SQLite's JSON text: one row format.
ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_loader("jsonb", TextLoader)
_SCHEMES = ("postgresql://", "postgres://")


def connection_options(**options: Any) -> dict[str, Any]:
    """What every store connection is opened with (``psycopg.connect`` and the pool's ``kwargs``)."""
    return {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS, "context": ADAPTERS,
            "application_name": APPLICATION_NAME, **options}  # fmt: skip


def connect(url: str, **options: Any) -> psycopg.Connection:
    """A new connection, or ``StoreUnavailable`` in one line when the server does not answer."""
    try:
        return psycopg.connect(url, **connection_options(**options))
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from None


@contextmanager
def connection(url: str) -> Iterator[psycopg.Connection]:
    with connect(url) as conn:
        yield conn


def migrate(conn: psycopg.Connection, url: str) -> tuple[list[int], int]:
    """Apply what the database lacks; returns (the migrations applied, the schema version now)."""
    try:
        done = apply_migrations(conn)
    except SchemaTooNew as exc:
        raise StoreUnavailable(
            f"the database at {describe(url)} has schema version {exc.database_version}, newer than this "
            f"ModelPort knows ({exc.code_version}): upgrade ModelPort on this node to the version that migrated it"
        ) from None
    return done, len(MIGRATIONS)


def migrate_database(url: str) -> tuple[list[int], int]:
    """``modelport migrate``."""
    with connection(check_database_url(url)) as conn:
        return migrate(conn, url)


def check_database_url(url: str) -> str:
    """The URL, checked as libpq reads it, or ``StoreUnavailable`` saying what is wrong."""
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise StoreUnavailable(f"database URL {redact(str(url))!r} is malformed: it must start with postgresql://")
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"database URL {redact(url)!r} is malformed: {redact(one_line(exc))}") from None
    port = params.get("port")
    if port is not None and not all(part.isdigit() and 0 < int(part) < 65536 for part in str(port).split(",")):
        raise StoreUnavailable(f"database URL {redact(url)!r} is malformed: port {port!r} is not a number from 1 to 65535")
    return url


def unreachable(url: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"cannot connect to PostgreSQL at {describe(url)} (timeout {CONNECT_TIMEOUT_SECONDS} s): "
                            f"{redact(one_line(exc))}")


def describe(url: str) -> str:
    """host:port/database of a URL, for messages (no user, no password)."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', params.get('user', ''))}"


def redact(text: str) -> str:
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.IGNORECASE)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
