"""State behind small interfaces: the ``Store`` protocol (keys, providers, configs), the ``LogStore``
protocol (logs, feedback, the prediction ledger), their records, and the embedded SQLite stores.

``open_store(settings)`` and ``open_log_store(settings)`` are the one way to get each; the
first wires the vault that seals provider secrets and migrates the schema of both. Only this package
knows where the database lives: ``database_url`` chooses PostgreSQL (``postgres.py``, ``pg_logs.py``) for
both, else both are the SQLite file in ``data_dir`` (``open_sqlite_store`` opens one directly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..vault import Vault
from .base import (
    CONFIG_STATUSES,
    PROVIDER_KINDS,
    SCOPES,
    UNCHANGED,
    ApiKey,
    Config,
    Conflict,
    NotFound,
    Page,
    RecordRefused,
    ResolvedProvider,
    Store,
    StoredProvider,
    StoreError,
    StoreMissing,
    StoreUnavailable,
)
from .log_base import LogFilter, LogStore, PredictionFilter
from .sqlite import SQLiteStore
from .sqlite_logs import SQLiteLogStore

DB_FILE_NAME = "modelport.db"

__all__ = [
    "CONFIG_STATUSES",
    "PROVIDER_KINDS",
    "SCOPES",
    "UNCHANGED",
    "ApiKey",
    "Config",
    "Conflict",
    "LogFilter",
    "LogStore",
    "NotFound",
    "Page",
    "PredictionFilter",
    "RecordRefused",
    "ResolvedProvider",
    "SQLiteLogStore",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreMissing",
    "StoreUnavailable",
    "StoredProvider",
    "check_store_exists",
    "open_log_store",
    "open_sqlite_store",
    "open_store",
]


def open_store(settings: Any) -> Store:
    """The keys/providers/configs store the settings name: PostgreSQL at ``database_url`` (migrated, its
    hot-path reads replicated in memory), else the embedded SQLite file in ``data_dir``."""
    if settings.database_url:
        # The node's own files (spill, counters, the log service's lock) still live in its data dir.
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        return _postgres().open_postgres_store(settings.database_url, settings.master_key)
    return open_sqlite_store(settings.data_dir, settings.master_key)


def _postgres() -> Any:
    """The PostgreSQL store's module; psycopg is an optional dependency, so its absence is said in one line."""
    try:
        from . import postgres
    except ImportError:
        raise StoreUnavailable("database_url needs the PostgreSQL driver: pip install 'modelport[postgres]'") from None
    return postgres


def open_sqlite_store(data_dir: Path, master_key: str | None = None) -> SQLiteStore:
    """The embedded store in ``data_dir`` (created 0700 if missing), migrated and ready."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SQLiteStore(data_dir / DB_FILE_NAME, Vault.open(data_dir, master_key))


def open_log_store(settings: Any, busy_timeout: float = 5.0) -> LogStore:
    """The log store the settings name: PostgreSQL at ``database_url``, else SQLite in ``data_dir``.
    ``busy_timeout``: seconds a call waits for another writer before it raises ``StoreUnavailable``
    (SQLite). The tables exist once ``open_store`` has run on the same settings."""
    if settings.database_url:
        _postgres()
        from .pg_logs import open_postgres_log_store

        return open_postgres_log_store(settings.database_url, settings.log_retention_days)
    return SQLiteLogStore(Path(settings.data_dir) / DB_FILE_NAME, busy_timeout,
                          retention_days=settings.log_retention_days)


def check_store_exists(settings: Any) -> None:
    """``StoreMissing`` unless a gateway has created its store where ``settings`` point. A database URL is
    checked by opening it (unreachable and unmigrated are ``StoreUnavailable``, in one line)."""
    if settings.database_url:
        return
    path = Path(settings.data_dir) / DB_FILE_NAME
    if not path.is_file():
        raise StoreMissing(f"no database at {path}")
