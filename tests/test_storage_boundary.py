"""Everything persisted goes through ``store/``: no other module of the gateway imports sqlite3 or knows
where the database file lives, so another store (PostgreSQL) can take its place behind the protocols."""

from __future__ import annotations

import ast
from pathlib import Path

import modelport

SOURCES = Path(modelport.__file__).parent
STORE_PACKAGE = SOURCES / "store"
DATABASE_NAMES = frozenset({"DB_FILE_NAME", "db_path"})
DATABASE_FILE = "modelport.db"


def storage_leaks(source: str) -> list[str]:
    """What in ``source`` reaches past the store: a sqlite3 import, the database file's name or a
    name for its path."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlite3"]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "sqlite3":
                found.append(f"line {node.lineno}: from {node.module} import ...")
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in DATABASE_NAMES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DATABASE_FILE in node.value:
            found.append(f"line {node.lineno}: names {DATABASE_FILE!r}")
        elif isinstance(node, ast.Name) and node.id in DATABASE_NAMES:
            found.append(f"line {node.lineno}: uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in DATABASE_NAMES:
            found.append(f"line {node.lineno}: uses .{node.attr}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in DATABASE_NAMES:
            found.append(f"line {node.lineno}: defines {node.name}")
    return found


def test_no_module_outside_the_store_imports_sqlite3_or_names_the_database_file() -> None:
    modules = [path for path in SOURCES.rglob("*.py") if STORE_PACKAGE not in path.parents]
    assert len(modules) > 50  # the whole package was read, not an empty directory
    leaks = {str(path.relative_to(SOURCES)): found for path in modules if (found := storage_leaks(path.read_text()))}
    assert leaks == {}


def test_the_check_finds_each_kind_of_leak() -> None:
    """The scan above would pass on anything if it found nothing: here it must find every kind."""
    source = '''
import sqlite3
import sqlite3.dbapi2 as db
from sqlite3 import connect
from ..store import DB_FILE_NAME
path = data_dir / "modelport.db"
other = settings.db_path
class Settings:
    @property
    def db_path(self): ...
'''
    assert {leak.split(':')[0] for leak in storage_leaks(source)} == {f'line {n}' for n in (2, 3, 4, 5, 6, 7, 10)}
    assert storage_leaks("from ..store import LogStore, open_log_store\nlog_store = open_log_store(settings)\n") == []
