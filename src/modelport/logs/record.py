"""Log records on their way to the store: the wire form between a worker and the log service, and the
degraded copy of a record that cannot be stored as it is. The values themselves are ``log_record.py``'s."""

from __future__ import annotations

import marshal
import operator
from dataclasses import fields, replace
from typing import Any

from ..log_record import Attempt, LogRecord


# The metadata key of a record stored degraded (``degraded``), naming why: filter on it to find them.
DEGRADED_KEY = "modelport_log_degraded"


def degraded(record: LogRecord, problem: str) -> LogRecord:
    """A copy of ``record`` without the parts callers and upstreams shape freely (metadata, headers,
    bodies, reported usage), for a record that cannot be encoded or stored as it is: the request stays
    visible, with its status, timing and path, and one bad record never holds up the ones behind it."""
    return replace(record, metadata={DEGRADED_KEY: problem}, request_headers={}, response_headers={},
                   request_body=None, response_body=None, usage=None, predictions=None, attempts=list(record.attempts))


# The wire form between a worker and the log service: each record a plain tuple of its fields in
# declaration order (attempts, the last field, as tuples too), a batch one ``marshal`` blob. Both ends
# are the same interpreter; marshal encodes a batch twice as fast as pickle (1.2 against 2.4 µs a
# record) and cannot run code on load; positional construction on the way back costs half of building
# keyword arguments. Derived from the dataclasses, so a new field travels without touching this code.
_WIRE_FIELDS = tuple(f.name for f in fields(LogRecord))[:-1]
assert fields(LogRecord)[-1].name == "attempts"
_record_values = operator.attrgetter(*_WIRE_FIELDS)
_attempt_values = operator.attrgetter(*(f.name for f in fields(Attempt)))


def records_to_wire(records: list[LogRecord]) -> bytes:
    """Raises ValueError if a field holds what marshal cannot encode (the caller spills instead)."""
    return marshal.dumps([_record_values(r) + (tuple(map(_attempt_values, r.attempts)),) for r in records])


def records_from_wire(data: bytes) -> list[LogRecord]:
    return [_record_from_values(values) for values in marshal.loads(data)]


def _record_from_values(values: tuple[Any, ...]) -> LogRecord:
    record = LogRecord(*values)
    record.attempts = [Attempt(*attempt) for attempt in values[-1]]
    return record


def header_dict(headers: Any) -> dict[str, str]:
    """Headers as the pipeline recorded them (raw byte pairs, to keep decoding off the request path) →
    a dict of lower-case ``str`` names (plain ``str``: aiohttp's case-insensitive names are a subclass
    orjson refuses as keys)."""
    if isinstance(headers, dict):
        return {str(name).lower(): str(value) for name, value in headers.items()}
    try:  # the usual shape: uvicorn's and aiohttp's (bytes, bytes) pairs, decoded in one pass
        return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
    except AttributeError:
        return {_text(name).lower(): _text(value) for name, value in headers}


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
