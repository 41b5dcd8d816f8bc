"""State behind small interfaces: the ``Store`` protocol (keys, providers, configs), the ``LogStore``
protocol (logs, feedback, the prediction ledger), their records, and the embedded SQLite stores.

``open_store(data_dir, master_key)`` and ``open_log_store(settings)`` are the one way to get each; the
first wires the vault that seals provider secrets and migrates the schema of both. Only this package
knows where the database lives. The PostgreSQL store (``postgres.py``, ``open_postgres_store``) is not
chosen here yet: ``database_url`` stays refused until the logs are on PostgreSQL too.
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
    "open_store",
]


def open_store(data_dir: Path, master_key: str | None = None) -> SQLiteStore:
    """The store in ``data_dir`` (created 0700 if missing), migrated and ready."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SQLiteStore(data_dir / DB_FILE_NAME, Vault.open(data_dir, master_key))


def open_log_store(settings: Any, busy_timeout: float = 5.0) -> LogStore:
    """The log store the ``settings`` name (``data_dir``; ``database_url`` is refused by settings until
    the PostgreSQL log store exists). ``busy_timeout``: seconds a call waits for another writer before it
    raises ``StoreUnavailable``. The tables exist once ``open_store`` has run on the same settings."""
    return SQLiteLogStore(Path(settings.data_dir) / DB_FILE_NAME, busy_timeout,
                          retention_days=settings.log_retention_days)


def check_store_exists(settings: Any) -> None:
    """``StoreMissing`` unless a gateway has created its store where ``settings`` point."""
    path = Path(settings.data_dir) / DB_FILE_NAME
    if not path.is_file():
        raise StoreMissing(f"no database at {path}")
