"""Ids the gateway makes per request: time-ordered, so the rows keyed by them append."""

from __future__ import annotations

import time
from random import getrandbits


def new_time_ordered_id(prefix: str = "") -> str:
    """32 hex digits, the first 16 the time in ns, so ids sort by time. Log rows are keyed and indexed
    by id and trace id: random keys dirtied a random index page per row, and every commit wrote those
    pages to the WAL again (the writes raised the gateway's p99 at c=1 from 1 to 3 ms). Time-ordered
    keys append. Not secrets: Python's PRNG (OS-seeded, reseeded after fork) needs no syscall. Not
    ``store.rows.new_record_id`` (ULIDs for keys and configs): it takes a lock, a getrandom syscall
    and a base-32 encoding per id, affordable per admin change but not per request."""
    return "%s%016x%016x" % (prefix, time.time_ns(), getrandbits(64))
