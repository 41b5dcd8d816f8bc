"""How the admin commands print: an aligned record or table for people, or JSON with ``--json``."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any, Callable

import orjson


class Output:
    """Prints records as JSON (``--json``) or as text for people."""

    def __init__(self, json: bool, stream: Any = None) -> None:
        self.json = json
        self.stream = stream or sys.stdout

    def line(self, text: str) -> None:
        print(text, file=self.stream)

    def emit(self, value: Any) -> None:
        self.line(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z, default=_json_default).decode())

    def done(self, result: dict[str, Any], message: str) -> None:
        if self.json:
            self.emit(result)
        else:
            self.line(message)

    def record(self, record: Any, message: str | None = None) -> None:
        if self.json:
            self.emit(public_fields(record))
            return
        if message:
            self.line(message)
        fields = public_fields(record)
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            self.line(f"{name.ljust(width)}  {_text(value)}")

    def table(self, records: list[Any], columns: dict[str, Callable[[Any], str]]) -> None:
        if self.json:  # the shape of the API's lists and of `logs list --json`; every record, so no cursor
            self.emit({"object": "list", "data": [public_fields(r) for r in records], "next_cursor": None})
            return
        rows = [list(columns)] + [[str(cell(r)) for cell in columns.values()] for r in records]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            self.line("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())


def public_fields(record: Any) -> dict[str, Any]:
    """A record's fields as printed and as JSON."""
    fields = dict(record) if isinstance(record, dict) else asdict(record)
    fields.pop("key_hash", None)  # not secret, but useless to a reader and a needless oracle
    return fields


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return when(value)
    if value is None or value == () or value == {}:
        return "-"
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, option=orjson.OPT_UTC_Z, default=_json_default).decode()
    return str(value)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _json_default(value: Any) -> Any:
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
