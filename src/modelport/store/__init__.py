"""State behind small interfaces: the ``Store`` protocol, its records, and the embedded SQLite store.

``open_store(data_dir, master_key)`` is the one way to get a store; it wires the vault that seals
provider secrets. The PostgreSQL store (``postgres.py``, ``open_postgres_store``) is not chosen here yet:
``database_url`` stays refused until the logs are on PostgreSQL too.
"""

from __future__ import annotations

from pathlib import Path

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
    ResolvedProvider,
    Store,
    StoredProvider,
    StoreError,
    StoreUnavailable,
)
from .sqlite import SQLiteStore

DB_FILE_NAME = "modelport.db"

__all__ = [
    "CONFIG_STATUSES",
    "PROVIDER_KINDS",
    "SCOPES",
    "UNCHANGED",
    "ApiKey",
    "Config",
    "Conflict",
    "NotFound",
    "Page",
    "ResolvedProvider",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredProvider",
    "open_store",
]


def open_store(data_dir: Path, master_key: str | None = None) -> SQLiteStore:
    """The store in ``data_dir`` (created 0700 if missing), migrated and ready."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SQLiteStore(data_dir / DB_FILE_NAME, Vault.open(data_dir, master_key))
